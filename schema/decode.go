package schema

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// Record is one decoded offline line. Row aliases the line passed to
// [Schema.Decode]: copy it before reusing the line's buffer. Key and ID are
// independent strings. The column values ([Record.Value]) are kept as
// offsets into Row, so they follow Row when it is re-pointed at a copy of
// the same bytes.
type Record struct {
	// Table is the destination, from the schema passed to Decode.
	Table *Table
	// Row is the raw JSON object of "row", exactly as in the line (no
	// re-encoding), so the Kafka value is byte-for-byte what the API wrote.
	Row []byte
	// Key is the account key in its string form: a JSON string unescaped,
	// an integer in decimal ("-0" becomes "0"). Never empty.
	Key string
	// ID is the record id in the same form, or "" when the table has none.
	ID string
	// Time is the event time in UTC, or the zero Time when the table has no
	// time field or the row's value is null.
	Time time.Time

	// vals packs the column values ([Record.Value]) in the same allocation
	// as Key and ID; unknown is the unknown_fields: jsonb object.
	vals    string
	unknown []byte
}

// Decode parses and validates one offline line
//
//	{"table":"raw_item","row":{...},"counter":356}
//
// against the schema. Members may come in any order; "counter" and any other
// top-level member are validated as JSON and otherwise ignored. When "table"
// is absent (or null), defaultTable is used; "" means the line must name its
// table. Trailing JSON whitespace (the '\n') is allowed.
//
// On failure the error is an *[Error] whose Reason says why. The checks, from
// most to least fundamental (the first that fails is reported, so a
// truncated line is malformed_json, not missing_key):
//
//   - the line is valid UTF-8 and one well-formed JSON object;
//   - it names a known table and has a "row" object;
//   - the row has the key field, a non-empty string or an integer that
//     fits the key's column type (not null, float, bool, object);
//   - if the table has an id field, the row has it, under the same rules;
//   - every configured column present in the row converts to its type;
//     null is accepted for any column but the key and id:
//     bigint/integer/smallint: a JSON integer (no fraction, no exponent:
//     1e3 and 1.0 are rejected, as PostgreSQL's integer input rejects
//     them) within int64/int32/int16 range;
//     text: a string; boolean: true or false (not 0/1 or "true");
//     double precision: a number that is finite and does not underflow
//     to zero; numeric: a number, or a string such as "12.50", "-1e-3",
//     "NaN" or "Infinity"; uuid: a string of 32 hex digits, optionally
//     hyphenated 8-4-4-4-12 and/or in braces; jsonb: any JSON value;
//     timestamptz: anything [ParseTime] accepts.
//     Strings in text and jsonb values must not contain \u0000 or an
//     unpaired surrogate escape: PostgreSQL cannot store either;
//   - the time field, if configured and not null, parses with [ParseTime];
//   - a configured column appears at most once (duplicate keys are valid
//     JSON, but consumers disagree on which one wins, so the account key
//     could differ between Kafka and Postgres);
//   - with unknown_fields: reject, the row has no other fields.
//
// Decode walks the line once with a validating tokenizer and converts every
// column on the way, so that the record carries what each sink needs: Row,
// Key, ID and Time for Kafka, the column values ([Record.Value]) for
// PostgreSQL. It allocates once per line (Key, ID and the values share the
// allocation), plus the unknown_fields: jsonb object when there is one.
func (s *Schema) Decode(line []byte, defaultTable string) (Record, error) {
	rec, err := s.decode(line, defaultTable)
	if err != nil {
		return Record{}, classify(line, err)
	}
	return rec, nil
}

// classify ranks errors: a line that is not valid UTF-8 or not valid JSON is
// reported as such even when decode gave up earlier for a semantic reason.
func classify(line []byte, err error) error {
	var se *syntaxError
	if de, ok := err.(*Error); ok && de.Reason == ReasonEmptyLine {
		return err
	}
	if !errors.As(err, &se) {
		se = validJSON(line)
		if se == nil {
			return err // a semantic *Error on a well-formed line
		}
	}
	if se.utf8 || !utf8.Valid(line) {
		off := se.off
		if !se.utf8 {
			off = invalidUTF8At(line)
		}
		return &Error{Reason: ReasonInvalidUTF8, Offset: off, Detail: "line is not valid UTF-8"}
	}
	return &Error{Reason: ReasonMalformedJSON, Offset: se.off, Detail: se.msg}
}

func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}

func (s *Schema) decode(line []byte, defaultTable string) (Record, error) {
	var rec Record
	sc := scanner{b: line}
	sc.ws()
	if sc.i == len(line) {
		return rec, &Error{Reason: ReasonEmptyLine, Offset: -1, Detail: "line is empty"}
	}
	if line[sc.i] != '{' {
		return rec, &Error{Reason: ReasonNotObject, Offset: sc.i, Detail: "line is not a JSON object"}
	}
	sc.i++
	var (
		tbl                *Table
		tableSeen, rowSeen bool
		rowAt              = -1 // start of a row seen before its table was known
		kbuf               [16]byte
	)
	for more := sc.first('}'); more; {
		ks, ke, esc, err := sc.key()
		if err != nil {
			return rec, err
		}
		name := line[ks:ke]
		if esc {
			name = unescape(kbuf[:0], name)
		}
		if sc.i >= len(line) {
			return rec, sc.errf("unexpected end of input")
		}
		switch string(name) {
		case "table":
			if tableSeen {
				return rec, &Error{Reason: ReasonDuplicateField, Field: "table", Offset: ks - 1, Detail: `"table" appears more than once`}
			}
			tableSeen = true
			switch line[sc.i] {
			case 'n':
				if err := sc.lit("null"); err != nil {
					return rec, err
				}
			case '"':
				vs, ve, esc, err := sc.str()
				if err != nil {
					return rec, err
				}
				tn := line[vs:ve]
				if esc {
					tn = unescape(nil, tn)
				}
				t, ok := s.tables[string(tn)]
				if !ok {
					return rec, &Error{Reason: ReasonUnknownTable, Field: "table", Offset: vs - 1, Detail: fmt.Sprintf("no table %s is configured", quoteValue(tn))}
				}
				tbl = t
			default:
				return rec, &Error{Reason: ReasonUnknownTable, Field: "table", Offset: sc.i, Detail: "table must be a string"}
			}
		case "row":
			if rowSeen {
				return rec, &Error{Reason: ReasonDuplicateField, Field: "row", Offset: ks - 1, Detail: `"row" appears more than once`}
			}
			rowSeen = true
			if line[sc.i] != '{' {
				return rec, &Error{Reason: ReasonRowNotObject, Field: "row", Offset: sc.i, Detail: "row is not a JSON object"}
			}
			if tbl != nil {
				if err := scanRow(&sc, tbl, &rec); err != nil {
					return rec, err
				}
			} else {
				// The table comes later or from the default: check the
				// syntax now, the columns once the table is known.
				rowAt = sc.i
				if err := sc.value(1); err != nil {
					return rec, err
				}
			}
		default:
			if err := sc.value(1); err != nil {
				return rec, err
			}
		}
		if more, err = sc.next('}'); err != nil {
			return rec, err
		}
	}
	if sc.ws(); sc.i != len(line) {
		return rec, sc.errf("data after the JSON object")
	}
	if !rowSeen {
		return rec, &Error{Reason: ReasonMissingRow, Field: "row", Offset: -1, Detail: `line has no "row"`}
	}
	if tbl == nil {
		if defaultTable == "" {
			return rec, &Error{Reason: ReasonMissingTable, Field: "table", Offset: -1, Detail: `line has no "table" and the stream has no default_table`}
		}
		t, ok := s.tables[defaultTable]
		if !ok {
			return rec, &Error{Reason: ReasonUnknownTable, Field: "table", Offset: -1, Detail: fmt.Sprintf("default table %q is not configured", defaultTable)}
		}
		tbl = t
	}
	if rowAt >= 0 {
		rs := scanner{b: line, i: rowAt}
		if err := scanRow(&rs, tbl, &rec); err != nil {
			return rec, err
		}
	}
	rec.Table = tbl
	return rec, nil
}

// scanRow walks the row object at sc.i once, checking every configured
// column against its type and filling rec's Row, Key, ID and Time.
func scanRow(sc *scanner, t *Table, rec *Record) error {
	c := t.c
	line := sc.b
	start := sc.i
	sc.i++
	var (
		seenBuf [4]uint64
		seen    = seenBuf[:]
		nbuf    [64]byte
		ids     roleValues
		slotBuf [16]slot
		slots   []slot
	)
	if n := (len(c.cols) + 63) / 64; n > len(seen) {
		seen = make([]uint64, n)
	}
	if len(c.cols) <= len(slotBuf) {
		slots = slotBuf[:len(c.cols)]
	} else {
		slots = make([]slot, len(c.cols))
	}
	for more := sc.first('}'); more; {
		ks, ke, esc, err := sc.key()
		if err != nil {
			return err
		}
		name := line[ks:ke]
		if esc {
			name = unescape(nbuf[:0], name)
		}
		if col := c.lookup(name); col < 0 {
			if c.unknown == unknownReject {
				return &Error{Reason: ReasonUnknownColumn, Field: "row." + string(name), Offset: ks - 1, Detail: "field is not a column and unknown_fields is reject"}
			}
			vs := sc.i
			if err := sc.value(2); err != nil {
				return err
			}
			if c.extra >= 0 {
				// The sink stores the unknown fields as one object, raw
				// bytes in row order.
				if rec.unknown == nil {
					rec.unknown = append(rec.unknown, '{')
				} else {
					rec.unknown = append(rec.unknown, ',')
				}
				rec.unknown = append(rec.unknown, line[ks-1:ke+1]...)
				rec.unknown = append(rec.unknown, ':')
				rec.unknown = append(rec.unknown, line[vs:sc.i]...)
			}
		} else {
			if seen[col>>6]&(1<<(col&63)) != 0 {
				return &Error{Reason: ReasonDuplicateField, Field: "row." + string(name), Offset: ks - 1, Detail: "field appears more than once"}
			}
			seen[col>>6] |= 1 << (col & 63)
			if col == c.extra {
				return &Error{Reason: ReasonBadColumn, Field: "row." + string(name), Offset: ks - 1, Detail: "column is reserved for unknown fields (unknown_fields: jsonb)"}
			}
			if err := scanColumn(sc, c, col, rec, &ids, &slots[col]); err != nil {
				return err
			}
		}
		if more, err = sc.next('}'); err != nil {
			return err
		}
	}
	rec.Row = line[start:sc.i]
	if ids.key == nil {
		return &Error{Reason: ReasonMissingKey, Field: "row." + c.cols[c.key].Name, Offset: start, Detail: "row has no account key"}
	}
	if c.id >= 0 && ids.id == nil {
		return &Error{Reason: ReasonMissingID, Field: "row." + c.cols[c.id].Name, Offset: start, Detail: "row has no id (or it is null)"}
	}
	if rec.unknown != nil {
		rec.unknown = append(rec.unknown, '}')
		slots[c.extra].kind = vUnknown
	}
	ids.set(rec, c.key == c.id, slots, start)
	return nil
}

// roleValues collects the key and id while a row is scanned, so that both
// strings can be made with one allocation at the end: the allocations were
// a tenth of the decoding time.
type roleValues struct {
	key, id       []byte // raw: JSON string contents or integer text; nil if absent
	keyEsc, idEsc bool   // the raw string has escapes
}

// set makes the one allocation of a decoded line: the packed column values
// (spans made relative to the row at rowStart), then Key, then ID.
func (r *roleValues) set(rec *Record, same bool, slots []slot, rowStart int) {
	var buf [512]byte
	nv := len(slots) * slotSize
	b := buf[:0]
	if nv > len(buf) {
		b = make([]byte, 0, nv+len(r.key)+len(r.id))
	}
	b = b[:nv]
	for i := range slots {
		s := &slots[i]
		switch s.kind {
		case vString, vNumber, vJSON:
			s.start -= uint32(rowStart)
			s.end -= uint32(rowStart)
		}
		s.put(b[i*slotSize:])
	}
	b = appendRole(b, r.key, r.keyEsc)
	n := len(b)
	if r.id != nil && !same {
		b = appendRole(b, r.id, r.idEsc)
	}
	all := string(b)
	rec.vals = all[:nv]
	rec.Key = all[nv:n]
	rec.ID = all[n:]
	if same {
		rec.ID = rec.Key
	}
}

func appendRole(dst, raw []byte, esc bool) []byte {
	switch {
	case esc:
		return unescape(dst, raw)
	case string(raw) == "-0":
		return append(dst, '0')
	}
	return append(dst, raw...)
}

// scanColumn scans the value at sc.i for column col, checks it and converts
// it into v (spans are offsets in the line until set makes them relative to
// the row).
func scanColumn(sc *scanner, c *compiled, col int, rec *Record, ids *roleValues, v *slot) error {
	line := sc.b
	typ := c.cols[col].Type
	vs := sc.i
	if vs >= len(line) {
		return sc.errf("unexpected end of input")
	}
	ch := line[vs]
	reason := ReasonBadColumn
	switch col {
	case c.key:
		reason = ReasonBadKey
	case c.id:
		reason = ReasonBadID
	case c.time:
		reason = ReasonBadTime
	}
	// fail reports value [vs, sc.i) as not converting. When the value was
	// not scanned yet (wrong first byte), it is skipped first so the detail
	// can quote it, and so a syntax error after it still wins.
	fail := func(why string) error {
		if sc.i == vs {
			if err := sc.value(2); err != nil {
				return err
			}
		}
		return &Error{Reason: reason, Field: "row." + c.cols[col].Name, Offset: vs,
			Detail: fmt.Sprintf("%s %s", quoteValue(line[vs:sc.i]), why)}
	}
	if ch == 'n' {
		if err := sc.lit("null"); err != nil {
			return err
		}
		switch col {
		case c.key:
			return fail("is null; the account key is required")
		case c.id:
			return &Error{Reason: ReasonMissingID, Field: "row." + c.cols[col].Name, Offset: vs, Detail: "id is null"}
		}
		return nil
	}
	var (
		isString, esc bool
		cs, ce        int // contents of a string value, or bounds of a number
	)
	switch k := c.kinds[col]; k {
	case kBigint, kInteger, kSmallint:
		if ch != '-' && (ch < '0' || ch > '9') {
			return fail("is not an integer (" + string(typ) + ")")
		}
		s, e, isInt, err := sc.num()
		if err != nil {
			return err
		}
		if !isInt {
			return fail("is not an integer (" + string(typ) + " accepts no fraction or exponent)")
		}
		x, ok := parseInt(line[s:e])
		switch {
		case !ok:
			return fail("is out of range for bigint")
		case k == kInteger && (x < math.MinInt32 || x > math.MaxInt32):
			return fail("is out of range for integer")
		case k == kSmallint && (x < math.MinInt16 || x > math.MaxInt16):
			return fail("is out of range for smallint")
		}
		cs, ce = s, e
		v.kind, v.n = vInt, uint64(x)
		if col == c.time {
			t, err := epochTime(x)
			if err != nil {
				return fail(err.Error())
			}
			rec.Time = t
		}
	case kText, kUUID:
		if ch != '"' {
			return fail("is not a string (" + string(typ) + ")")
		}
		sc.pgUnsafe = false
		s, e, es, err := sc.str()
		if err != nil {
			return err
		}
		isString, esc, cs, ce = true, es, s, e
		if sc.pgUnsafe {
			return fail(`contains \u0000 or an unpaired surrogate, which PostgreSQL cannot store`)
		}
		if k == kUUID {
			raw := line[s:e]
			if esc {
				raw = unescape(nil, raw)
			}
			hi, lo, ok := parseUUID(raw)
			if !ok {
				return fail("is not a UUID")
			}
			v.kind, v.n, v.m = vUUID, hi, lo
		} else {
			v.kind, v.esc, v.start, v.end = vString, es, uint32(s), uint32(e)
		}
	case kBoolean:
		switch ch {
		case 't':
			if err := sc.lit("true"); err != nil {
				return err
			}
			v.kind, v.n = vBool, 1
		case 'f':
			v.kind = vBool
			if err := sc.lit("false"); err != nil {
				return err
			}
		default:
			return fail("is not true or false (boolean)")
		}
	case kDouble:
		if ch != '-' && (ch < '0' || ch > '9') {
			return fail("is not a number (double precision)")
		}
		s, e, _, err := sc.num()
		if err != nil {
			return err
		}
		f, ok := parseFloat(line[s:e])
		if !ok {
			return fail("is out of range for double precision")
		}
		v.kind, v.n = vFloat, math.Float64bits(f)
	case kNumeric:
		switch {
		case ch == '-' || ch >= '0' && ch <= '9':
			s, e, _, err := sc.num()
			if err != nil {
				return err
			}
			v.kind, v.start, v.end = vNumber, uint32(s), uint32(e)
		case ch == '"':
			s, e, es, err := sc.str()
			if err != nil {
				return err
			}
			raw := line[s:e]
			if es {
				raw = unescape(nil, raw)
			}
			if !isNumericString(raw) {
				return fail("is not a number or numeric string (numeric)")
			}
			v.kind, v.esc, v.start, v.end = vString, es, uint32(s), uint32(e)
		default:
			return fail("is not a number or numeric string (numeric)")
		}
	case kJSONB:
		sc.pgUnsafe = false
		if err := sc.value(2); err != nil {
			return err
		}
		if sc.pgUnsafe {
			return fail(`contains \u0000 or an unpaired surrogate, which PostgreSQL cannot store`)
		}
		v.kind, v.start, v.end = vJSON, uint32(vs), uint32(sc.i)
	case kTimestamptz:
		if ch != '"' && ch != '-' && (ch < '0' || ch > '9') {
			return fail("is not an epoch number or RFC 3339 string (timestamptz)")
		}
		if err := sc.value(2); err != nil {
			return err
		}
		if col != c.time { // the time field is parsed below, once
			t, err := ParseTime(line[vs:sc.i])
			if err != nil {
				return fail("is not an epoch number or RFC 3339 string (timestamptz)")
			}
			v.setTime(t)
		}
	}

	switch col {
	case c.key, c.id:
		if isString && ce == cs {
			return fail("is empty")
		}
		// Integers were range-checked above; other types never get here
		// (Validate allows only integer, text and uuid key and id columns).
		if col == c.key {
			ids.key, ids.keyEsc = line[cs:ce], esc
		}
		if col == c.id { // key and id may be the same field
			ids.id, ids.idEsc = line[cs:ce], esc
		}
	}
	if col == c.time && rec.Time.IsZero() {
		t, err := ParseTime(line[vs:sc.i])
		if err != nil {
			return fail(err.Error())
		}
		rec.Time = t
		if c.kinds[col] == kTimestamptz {
			v.setTime(t)
		}
	}
	return nil
}

func (v *slot) setTime(t time.Time) {
	v.kind, v.n, v.m = vTime, uint64(t.Unix()), uint64(t.Nanosecond())
}

// parseInt parses a JSON integer already validated by num, reporting false
// if it does not fit in int64. Hand-written because strconv needs a string.
func parseInt(b []byte) (int64, bool) {
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) > 19 {
		return 0, false
	}
	var u uint64
	for _, c := range b {
		u = u*10 + uint64(c-'0') // 19 digits cannot overflow uint64
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return int64(^u + 1), true
	}
	if u > math.MaxInt64 {
		return 0, false
	}
	return int64(u), true
}

// parseFloat converts a JSON number, reporting false unless it is a finite
// float64 that did not underflow to zero; PostgreSQL's float8 input rejects
// both cases.
func parseFloat(b []byte) (float64, bool) {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, false
	}
	if math.IsInf(f, 0) {
		return 0, false
	}
	if f == 0 {
		for _, c := range b {
			if c == 'e' || c == 'E' {
				break
			}
			if c >= '1' && c <= '9' {
				return 0, false // non-zero mantissa underflowed
			}
		}
	}
	return f, true
}

// isNumericString accepts the PostgreSQL numeric input forms that are
// unambiguous: [+-]digits[.digits][e[+-]digits], [+-].digits[...], and
// NaN/Infinity. Whitespace, underscores and hex (PostgreSQL 16) are refused
// so that older servers accept every value that passes.
func isNumericString(b []byte) bool {
	switch string(b) {
	case "NaN", "Infinity", "+Infinity", "-Infinity":
		return true
	}
	i := 0
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		i++
	}
	digits := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
		digits++
	}
	if i < len(b) && b[i] == '.' {
		i++
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			digits++
		}
	}
	if digits == 0 {
		return false
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		var ok bool
		if i, ok = exponentEnd(b, i+1); !ok {
			return false
		}
	}
	return i == len(b)
}

// parseUUID accepts 32 hex digits, either plain or hyphenated 8-4-4-4-12, in
// either case, optionally in braces: forms PostgreSQL's uuid input accepts
// and that other consumers commonly do too. hi and lo are the 16 bytes,
// big-endian.
func parseUUID(b []byte) (hi, lo uint64, ok bool) {
	if len(b) >= 2 && b[0] == '{' && b[len(b)-1] == '}' {
		b = b[1 : len(b)-1]
	}
	var d [32]byte
	switch len(b) {
	case 32:
		copy(d[:], b)
	case 36:
		if b[8] != '-' || b[13] != '-' || b[18] != '-' || b[23] != '-' {
			return 0, 0, false
		}
		n := copy(d[:], b[:8])
		n += copy(d[n:], b[9:13])
		n += copy(d[n:], b[14:18])
		n += copy(d[n:], b[19:23])
		copy(d[n:], b[24:])
	default:
		return 0, 0, false
	}
	// OR-ing table entries avoids a branch per character.
	var bad uint8
	for i, c := range d {
		x := hexVal[c]
		bad |= x
		if i < 16 {
			hi = hi<<4 | uint64(x&0xf)
		} else {
			lo = lo<<4 | uint64(x&0xf)
		}
	}
	return hi, lo, bad&0x80 == 0
}

// hexVal[c] is the value of hex digit c, or 0x80 for any other byte.
var hexVal = func() (t [256]uint8) {
	for i := range t {
		switch {
		case i >= '0' && i <= '9':
			t[i] = uint8(i - '0')
		case i >= 'a' && i <= 'f':
			t[i] = uint8(i - 'a' + 10)
		case i >= 'A' && i <= 'F':
			t[i] = uint8(i - 'A' + 10)
		default:
			t[i] = 0x80
		}
	}
	return t
}()
