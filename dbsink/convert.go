package dbsink

import (
	"bytes"
	"fmt"
	"math/big"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/dualwrite/ingest/schema"
)

// convFunc turns one column's value, as schema.Decode checked and converted
// it while parsing the line (never null: nulls are skipped before
// conversion), into the Go value that pgx's binary COPY encodes for the
// column type. The sink does no JSON parsing of its own: the one parse of
// a line feeds both sinks. What is left here is PostgreSQL's business:
// narrowing integers to the column's Go type, numeric's limits and binary
// form, timestamptz's microseconds.
//
// Values are chosen so that pgx encodes them without reflection or a
// text round trip: int64/int32/int16, []byte for text and jsonb (aliasing
// the row when the string has no escapes), pgtype.UUID, pgtype.Numeric,
// time.Time. Only numeric can fail (a number beyond PostgreSQL's limits).
type convFunc func(v schema.Value) (any, error)

func converterFor(t schema.Type) (convFunc, error) {
	switch t {
	case schema.Bigint:
		return func(v schema.Value) (any, error) { return v.Int(), nil }, nil
	case schema.Integer:
		// Decode checked the range.
		return func(v schema.Value) (any, error) { return int32(v.Int()), nil }, nil
	case schema.Smallint:
		return func(v schema.Value) (any, error) { return int16(v.Int()), nil }, nil
	case schema.Text:
		return func(v schema.Value) (any, error) { return v.Text(), nil }, nil
	case schema.Boolean:
		return func(v schema.Value) (any, error) { return v.Bool(), nil }, nil
	case schema.Double:
		return func(v schema.Value) (any, error) { return v.Float(), nil }, nil
	case schema.Numeric:
		return func(v schema.Value) (any, error) { return convNumeric(v.Numeric()) }, nil
	case schema.UUID:
		return func(v schema.Value) (any, error) { return pgtype.UUID{Bytes: v.UUID(), Valid: true}, nil }, nil
	case schema.JSONB:
		// PostgreSQL parses it; Decode checked its syntax and that it has
		// nothing PostgreSQL refuses (\u0000, unpaired surrogates).
		return func(v schema.Value) (any, error) { return v.JSON(), nil }, nil
	case schema.Timestamptz:
		// timestamptz has microseconds. PostgreSQL's text input rounds,
		// pgx's binary encoding truncates; round here so that a value
		// stores the same whichever way it arrives.
		return func(v schema.Value) (any, error) { return v.Time().Round(time.Microsecond), nil }, nil
	}
	return nil, fmt.Errorf("unsupported column type %q", t)
}

// quote renders a short prefix of a raw value for a dead-letter detail:
// enough to recognise it, never a whole 2 KB body.
func quote(raw []byte) string {
	const max = 40
	if len(raw) > max {
		return strconv.Quote(string(raw[:max])) + "..."
	}
	return strconv.Quote(string(raw))
}

// PostgreSQL numeric limits: up to 131072 digits before the decimal point
// and 16383 after it.
const (
	numericMaxIntDigits  = 131072
	numericMaxFracDigits = 16383
)

// convNumeric turns a numeric value (schema.Value.Numeric: "12.50",
// "-1e-3", "NaN", "Infinity") into pgx's binary form. The scale is kept as
// written, as PostgreSQL's own input does: "12.50" stays 12.50, "1.5e1" is
// 15.
func convNumeric(s []byte) (any, error) {
	switch string(s) {
	case "NaN":
		return pgtype.Numeric{NaN: true, Valid: true}, nil
	case "Infinity", "+Infinity":
		return pgtype.Numeric{InfinityModifier: pgtype.Infinity, Valid: true}, nil
	case "-Infinity":
		return pgtype.Numeric{InfinityModifier: pgtype.NegativeInfinity, Valid: true}, nil
	}
	n, form, inRange := parseDecimal(s)
	switch {
	case !form:
		return nil, fmt.Errorf("%s is not a number or numeric string (numeric)", quote(s))
	case !inRange:
		return nil, fmt.Errorf("%s is out of range for numeric", quote(s))
	}
	return n, nil
}

// parseDecimal parses [+-]digits[.digits][e[+-]digits] (at least one digit
// in the mantissa). form is false for another form, inRange false for a
// number beyond PostgreSQL's numeric limits.
func parseDecimal(s []byte) (n pgtype.Numeric, form, inRange bool) {
	i := 0
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	// digits collects the mantissa without the point; frac counts digits
	// after it.
	var digits []byte
	var stack [40]byte
	digits = stack[:0]
	frac := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		digits = append(digits, s[i])
		i++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			digits = append(digits, s[i])
			frac++
			i++
		}
	}
	if len(digits) == 0 {
		return pgtype.Numeric{}, false, false
	}
	var exp int64
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		eneg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			eneg = s[i] == '-'
			i++
		}
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			if exp < 1<<40 { // saturate; the range check below rejects it
				exp = exp*10 + int64(s[i]-'0')
			}
			i++
		}
		if i == start {
			return pgtype.Numeric{}, false, false
		}
		if eneg {
			exp = -exp
		}
	}
	if i != len(s) {
		return pgtype.Numeric{}, false, false
	}
	e := exp - int64(frac)
	sig := len(bytes.TrimLeft(digits, "0"))
	if e < -numericMaxFracDigits || sig > 0 && int64(sig)+e > numericMaxIntDigits {
		return pgtype.Numeric{}, true, false
	}
	mant := new(big.Int)
	mant.SetString(string(digits), 10) // only ASCII digits: cannot fail
	if neg {
		mant.Neg(mant)
	}
	return pgtype.Numeric{Int: mant, Exp: int32(e), Valid: true}, true, true
}
