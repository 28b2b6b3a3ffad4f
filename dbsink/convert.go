package dbsink

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/dualwrite/ingest/schema"
)

// convFunc turns one column's raw JSON value (never null: nulls are nil
// before conversion) into the Go value that pgx's binary COPY encodes for
// the column type. The rules are those of schema.Decode, which normally
// validated the row already; converting again is cheap and makes the sink
// safe for records that did not come through Decode (tools, tests, a
// schema changed by a reload).
//
// Values are chosen so that pgx encodes them without reflection or a
// text round trip: int64/int32/int16, []byte for text and jsonb (aliasing
// the row when the string has no escapes), pgtype.UUID, pgtype.Numeric,
// time.Time.
type convFunc func(raw []byte) (any, error)

func converterFor(t schema.Type) (convFunc, error) {
	switch t {
	case schema.Bigint:
		return func(raw []byte) (any, error) { return convInt(raw, math.MinInt64, math.MaxInt64, t) }, nil
	case schema.Integer:
		return func(raw []byte) (any, error) {
			v, err := convInt(raw, math.MinInt32, math.MaxInt32, t)
			if err != nil {
				return nil, err
			}
			return int32(v.(int64)), nil
		}, nil
	case schema.Smallint:
		return func(raw []byte) (any, error) {
			v, err := convInt(raw, math.MinInt16, math.MaxInt16, t)
			if err != nil {
				return nil, err
			}
			return int16(v.(int64)), nil
		}, nil
	case schema.Text:
		return convText, nil
	case schema.Boolean:
		return convBool, nil
	case schema.Double:
		return convDouble, nil
	case schema.Numeric:
		return convNumeric, nil
	case schema.UUID:
		return convUUID, nil
	case schema.JSONB:
		return convJSONB, nil
	case schema.Timestamptz:
		return convTime, nil
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

func convInt(raw []byte, lo, hi int64, t schema.Type) (any, error) {
	v, ok, isInt := parseJSONInt(raw)
	switch {
	case !isInt:
		return nil, fmt.Errorf("%s is not a JSON integer (%s)", quote(raw), t)
	case !ok || v < lo || v > hi:
		return nil, fmt.Errorf("%s is out of range for %s", quote(raw), t)
	}
	return v, nil
}

// parseJSONInt parses a JSON integer (optional '-', digits; no fraction or
// exponent, which PostgreSQL's integer input refuses too). isInt is false
// when raw is not of that form, ok false when it does not fit in int64.
// Hand-written because strconv wants a string, which would cost a copy.
func parseJSONInt(raw []byte) (v int64, ok, isInt bool) {
	b := raw
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 {
		return 0, false, false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false, false
		}
	}
	if len(b) > 19 { // 19 digits cannot overflow uint64; 20 may
		return 0, false, true
	}
	var u uint64
	for _, c := range b {
		u = u*10 + uint64(c-'0')
	}
	if neg {
		if u > 1<<63 {
			return 0, false, true
		}
		return int64(-u), true, true
	}
	if u > math.MaxInt64 {
		return 0, false, true
	}
	return int64(u), true, true
}

func convText(raw []byte) (any, error) {
	s, err := jsonString(raw)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func convBool(raw []byte) (any, error) {
	switch string(raw) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return nil, fmt.Errorf("%s is not true or false (boolean)", quote(raw))
}

func convDouble(raw []byte) (any, error) {
	if len(raw) == 0 || raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return nil, fmt.Errorf("%s is not a number (double precision)", quote(raw))
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return nil, fmt.Errorf("%s is not a number (double precision)", quote(raw))
	}
	if math.IsInf(f, 0) || f == 0 && nonZeroMantissa(raw) {
		// PostgreSQL's float8 input refuses both overflow and underflow.
		return nil, fmt.Errorf("%s is out of range for double precision", quote(raw))
	}
	return f, nil
}

// nonZeroMantissa reports whether a number has a non-zero digit before its
// exponent, i.e. whether a zero result from ParseFloat is an underflow.
func nonZeroMantissa(raw []byte) bool {
	for _, c := range raw {
		if c == 'e' || c == 'E' {
			return false
		}
		if c >= '1' && c <= '9' {
			return true
		}
	}
	return false
}

// PostgreSQL numeric limits: up to 131072 digits before the decimal point
// and 16383 after it.
const (
	numericMaxIntDigits  = 131072
	numericMaxFracDigits = 16383
)

// convNumeric accepts a JSON number or a numeric string ("12.50", "-1e-3",
// "NaN", "Infinity"). The scale is kept as written, as PostgreSQL's own
// input does: "12.50" stays 12.50, "1.5e1" is 15.
func convNumeric(raw []byte) (any, error) {
	s := raw
	if len(raw) > 0 && raw[0] == '"' {
		var err error
		if s, err = jsonString(raw); err != nil {
			return nil, err
		}
		switch string(s) {
		case "NaN":
			return pgtype.Numeric{NaN: true, Valid: true}, nil
		case "Infinity", "+Infinity":
			return pgtype.Numeric{InfinityModifier: pgtype.Infinity, Valid: true}, nil
		case "-Infinity":
			return pgtype.Numeric{InfinityModifier: pgtype.NegativeInfinity, Valid: true}, nil
		}
	}
	n, form, inRange := parseDecimal(s)
	switch {
	case !form:
		return nil, fmt.Errorf("%s is not a number or numeric string (numeric)", quote(raw))
	case !inRange:
		return nil, fmt.Errorf("%s is out of range for numeric", quote(raw))
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

func convUUID(raw []byte) (any, error) {
	s, err := jsonString(raw)
	if err != nil {
		return nil, err
	}
	u, ok := parseUUID(s)
	if !ok {
		return nil, fmt.Errorf("%s is not a UUID", quote(raw))
	}
	return u, nil
}

// parseUUID accepts 32 hex digits, plain or hyphenated 8-4-4-4-12, either
// case, optionally in braces: the forms schema.Decode accepts.
func parseUUID(b []byte) (pgtype.UUID, bool) {
	if len(b) >= 2 && b[0] == '{' && b[len(b)-1] == '}' {
		b = b[1 : len(b)-1]
	}
	var hex [32]byte
	switch len(b) {
	case 32:
		copy(hex[:], b)
	case 36:
		if b[8] != '-' || b[13] != '-' || b[18] != '-' || b[23] != '-' {
			return pgtype.UUID{}, false
		}
		n := copy(hex[:], b[:8])
		n += copy(hex[n:], b[9:13])
		n += copy(hex[n:], b[14:18])
		n += copy(hex[n:], b[19:23])
		copy(hex[n:], b[24:])
	default:
		return pgtype.UUID{}, false
	}
	var u pgtype.UUID
	for i := range u.Bytes {
		hi, lo := unhex(hex[2*i]), unhex(hex[2*i+1])
		if hi > 15 || lo > 15 {
			return pgtype.UUID{}, false
		}
		u.Bytes[i] = hi<<4 | lo
	}
	u.Valid = true
	return u, true
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	}
	return 255
}

// convJSONB passes the raw JSON through: PostgreSQL parses it, and the
// schema's scanner already checked its syntax while locating it.
func convJSONB(raw []byte) (any, error) {
	return raw, nil
}

func convTime(raw []byte) (any, error) {
	t, err := schema.ParseTime(raw)
	if err != nil {
		return nil, fmt.Errorf("%s is not an epoch number or RFC 3339 string (timestamptz): %w", quote(raw), err)
	}
	// timestamptz has microseconds. PostgreSQL's text input rounds, pgx's
	// binary encoding truncates; round here so that a value stores the
	// same whichever way it arrives.
	return t.Round(time.Microsecond), nil
}

// jsonString returns the contents of the JSON string raw (with its quotes),
// unescaped. Without a backslash, the common case for bodies, the result
// aliases raw. \u0000 and unpaired surrogates are refused: PostgreSQL
// cannot store the first, and the second is not valid UTF-8.
func jsonString(raw []byte) ([]byte, error) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return nil, fmt.Errorf("%s is not a string", quote(raw))
	}
	s := raw[1 : len(raw)-1]
	i := bytes.IndexByte(s, '\\')
	if i < 0 {
		return s, nil
	}
	out := make([]byte, 0, len(s))
	for {
		out = append(out, s[:i]...)
		s = s[i:]
		if len(s) < 2 {
			return nil, fmt.Errorf("%s has a truncated escape", quote(raw))
		}
		n := 2
		switch c := s[1]; c {
		case '"', '\\', '/':
			out = append(out, c)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(s[2:])
			if !ok {
				return nil, fmt.Errorf("%s has a bad \\u escape", quote(raw))
			}
			n = 6
			if utf16.IsSurrogate(r) {
				var r2 rune = -1
				if len(s) >= 12 && s[6] == '\\' && s[7] == 'u' {
					r2, _ = hex4(s[8:])
				}
				r = utf16.DecodeRune(r, r2)
				if r == utf8.RuneError {
					return nil, fmt.Errorf("%s has an unpaired surrogate escape", quote(raw))
				}
				n = 12
			}
			if r == 0 {
				return nil, fmt.Errorf("%s contains \\u0000, which PostgreSQL cannot store", quote(raw))
			}
			out = utf8.AppendRune(out, r)
		default:
			return nil, fmt.Errorf("%s has an invalid escape", quote(raw))
		}
		s = s[n:]
		if i = bytes.IndexByte(s, '\\'); i < 0 {
			return append(out, s...), nil
		}
	}
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		d := unhex(c)
		if d > 15 {
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}
