package schema

import (
	"encoding/binary"
	"math"
	"time"
)

// Value is one column's value in a decoded row, as [Schema.Decode] checked
// and converted it while walking the line, so that a sink storing columns
// (the Postgres sink) never parses JSON itself. Get it with [Record.Value];
// call the accessor of the column's type:
//
//	bigint, integer, smallint  Int
//	boolean                    Bool
//	double precision           Float
//	text                       Text
//	numeric                    Numeric
//	uuid                       UUID
//	jsonb                      JSON
//	timestamptz                Time
//
// Another accessor returns the zero value. Byte results alias the line
// Decode was given (or, for the unknown_fields: jsonb column, an object
// Decode built), except Text and Numeric of a string with escapes, which
// are unescaped into a new slice.
type Value struct {
	kind valueKind
	esc  bool   // b is the contents of a string that has escapes
	n, m uint64 // converted value; see slot
	b    []byte
}

type valueKind uint8

const (
	vNull valueKind = iota // absent or JSON null
	vInt
	vBool
	vFloat
	vString  // text, or numeric written as a string: b is the string's contents
	vNumber  // numeric written as a number: b is the number as written
	vUUID    // n, m are the 16 bytes, big-endian
	vJSON    // b is the raw JSON value
	vTime    // n is Unix seconds, m nanoseconds
	vUnknown // the unknown_fields: jsonb column: b is Record.unknown
)

// Null reports whether the column is absent from the row or null: SQL NULL.
func (v Value) Null() bool { return v.kind == vNull }

// Int is the value of a bigint, integer or smallint column, in its range.
func (v Value) Int() int64 {
	if v.kind != vInt {
		return 0
	}
	return int64(v.n)
}

// Bool is the value of a boolean column.
func (v Value) Bool() bool { return v.kind == vBool && v.n != 0 }

// Float is the value of a double precision column: finite, and not a
// non-zero number that underflowed to zero.
func (v Value) Float() float64 {
	if v.kind != vFloat {
		return 0
	}
	return math.Float64frombits(v.n)
}

// Text is the value of a text column, unescaped: valid UTF-8 without NUL.
func (v Value) Text() []byte {
	if v.kind != vString {
		return nil
	}
	return v.contents()
}

// Numeric is the value of a numeric column in PostgreSQL's numeric input
// syntax: the JSON number as written, or the string's contents ("12.50",
// "-1e-3", "NaN", "Infinity", "+Infinity", "-Infinity"). Its range is not
// checked: PostgreSQL's limits are the sink's business.
func (v Value) Numeric() []byte {
	if v.kind != vString && v.kind != vNumber {
		return nil
	}
	return v.contents()
}

// UUID is the value of a uuid column.
func (v Value) UUID() (u [16]byte) {
	if v.kind == vUUID {
		binary.BigEndian.PutUint64(u[:8], v.n)
		binary.BigEndian.PutUint64(u[8:], v.m)
	}
	return u
}

// JSON is the value of a jsonb column: the raw JSON value as in the row
// (its strings contain neither \u0000 nor an unpaired surrogate, which
// PostgreSQL refuses), or for the unknown_fields: jsonb column the object
// of the row's fields that are not columns, in row order.
func (v Value) JSON() []byte {
	if v.kind != vJSON && v.kind != vUnknown {
		return nil
	}
	return v.b
}

// Time is the value of a timestamptz column in UTC, per [ParseTime], to
// the nanosecond (PostgreSQL keeps microseconds: rounding is the sink's).
func (v Value) Time() time.Time {
	if v.kind != vTime {
		return time.Time{}
	}
	return time.Unix(int64(v.n), int64(v.m)).UTC()
}

func (v Value) contents() []byte {
	if v.esc {
		return unescape(make([]byte, 0, len(v.b)), v.b)
	}
	return v.b
}

// slot is a Value while a row is scanned: the bytes are a span of the row,
// so that it survives the row being copied (the loader moves Row into its
// batch buffer after Decode).
type slot struct {
	kind       valueKind
	esc        bool
	start, end uint32 // span in Row
	n, m       uint64
}

// slotSize is a slot's packed size in Record.vals: kind, esc, start, end,
// n, m.
const slotSize = 1 + 1 + 4 + 4 + 8 + 8

// put packs s into p[:slotSize].
func (s *slot) put(p []byte) {
	p = p[:slotSize]
	p[0] = byte(s.kind)
	p[1] = 0
	if s.esc {
		p[1] = 1
	}
	binary.LittleEndian.PutUint32(p[2:], s.start)
	binary.LittleEndian.PutUint32(p[6:], s.end)
	binary.LittleEndian.PutUint64(p[10:], s.n)
	binary.LittleEndian.PutUint64(p[18:], s.m)
}

// HasValues reports whether the record carries its column values, that is
// whether [Schema.Decode] or [Table.DecodeRow] made it. A Record built by
// hand has none: get them with Table.DecodeRow(rec.Row).
func (r *Record) HasValues() bool { return r.vals != "" }

// Value returns the value of column i, in [Table.ColumnList] order, of a
// record that [Record.HasValues]; otherwise, or for i out of range, a null
// Value.
func (r *Record) Value(i int) Value {
	off := i * slotSize
	if i < 0 || off+slotSize > len(r.vals) {
		return Value{}
	}
	p := r.vals[off : off+slotSize]
	v := Value{kind: valueKind(p[0]), esc: p[1] != 0}
	start := uint32(p[2]) | uint32(p[3])<<8 | uint32(p[4])<<16 | uint32(p[5])<<24
	end := uint32(p[6]) | uint32(p[7])<<8 | uint32(p[8])<<16 | uint32(p[9])<<24
	v.n = le64(p[10:18])
	v.m = le64(p[18:26])
	switch v.kind {
	case vUnknown:
		v.b = r.unknown
	case vString, vNumber, vJSON:
		if int(end) <= len(r.Row) && start <= end {
			v.b = r.Row[start:end:end]
		} else {
			return Value{} // Row was replaced by something shorter
		}
	}
	return v
}

func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// DecodeRow checks and converts a row object (a [Record.Row]) against t by
// the rules of [Schema.Decode], for a record that did not come from Decode
// (a tool, a test): the returned
// Record has Table, Row (row without surrounding whitespace), Key, ID, Time
// and the column values. t must come from [New]. Errors are *[Error], with
// offsets in row.
func (t *Table) DecodeRow(row []byte) (Record, error) {
	var rec Record
	if t.c == nil {
		return rec, &Error{Reason: ReasonUnknownTable, Offset: -1, Detail: "table " + quoteValue([]byte(t.Name)) + " is not part of a schema made by schema.New"}
	}
	sc := scanner{b: row}
	sc.ws()
	if sc.i == len(row) {
		return rec, classify(row, sc.errf("row is empty"))
	}
	if row[sc.i] != '{' {
		if se := validJSON(row); se != nil {
			return rec, classify(row, se)
		}
		return rec, &Error{Reason: ReasonRowNotObject, Field: "row", Offset: sc.i, Detail: "row is not a JSON object"}
	}
	err := scanRow(&sc, t, &rec)
	if err == nil {
		if sc.ws(); sc.i != len(row) {
			err = sc.errf("data after the row object")
		}
	}
	if err != nil {
		return Record{}, classify(row, err)
	}
	rec.Table = t
	return rec, nil
}
