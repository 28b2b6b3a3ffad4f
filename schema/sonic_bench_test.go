package schema

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"unicode/utf8"
	"unsafe"

	"github.com/bytedance/sonic"
	"github.com/bytedance/sonic/ast"
)

// This file holds the sonic-based decoder that production could use instead
// of the hand-written tokenizer, kept so that BenchmarkDecodeSonic can show
// why it is not used (see doc.go and docs/benchmarks.md, "JSON decoding").
// It uses sonic's fastest APIs that fit: the JIT decoder with raw-message
// fields for the line (this validates the whole line, UTF-8 included, and
// locates "table" and "row" without copying), then the lazy ast.Node pair
// iterator over the row, whose values come back as raw spans for our own
// per-column type checks. It does the minimum a replacement must do on the
// benchmark's columns (integers, text, uuid) and no more, so its figures are
// a lower bound for a complete sonic decoder.

// sonicAPI validates strings (UTF-8, control characters) like
// encoding/json, and matches member names exactly: sonic's default, like
// encoding/json's, would take "Table" for "table".
var sonicAPI = sonic.Config{ValidateString: true, CaseSensitive: true}.Froze()

type sonicLine struct {
	Table sonic.NoCopyRawMessage `json:"table"`
	Row   sonic.NoCopyRawMessage `json:"row"`
}

func decodeSonic(s *Schema, line []byte, defaultTable string) (Record, error) {
	var rec Record
	// sonic checks UTF-8 only in the strings it decodes, not in skipped
	// values (TestDecodeSonicAgrees), so the line is checked whole.
	if !utf8.Valid(line) {
		return rec, &Error{Reason: ReasonInvalidUTF8, Offset: invalidUTF8At(line), Detail: "line is not valid UTF-8"}
	}
	var l sonicLine
	if err := sonicAPI.UnmarshalFromString(unsafe.String(unsafe.SliceData(line), len(line)), &l); err != nil {
		return rec, &Error{Reason: ReasonMalformedJSON, Offset: -1, Detail: err.Error()}
	}
	name := defaultTable
	if len(l.Table) > 0 && string(l.Table) != "null" {
		if l.Table[0] != '"' {
			return rec, &Error{Reason: ReasonUnknownTable, Field: "table", Offset: -1, Detail: "table must be a string"}
		}
		name = string(l.Table[1 : len(l.Table)-1])
	}
	t, ok := s.tables[name]
	if !ok {
		return rec, &Error{Reason: ReasonUnknownTable, Field: "table", Offset: -1, Detail: "no such table"}
	}
	if len(l.Row) == 0 || l.Row[0] != '{' {
		return rec, &Error{Reason: ReasonRowNotObject, Field: "row", Offset: -1, Detail: "row is not a JSON object"}
	}
	c := t.c
	root := ast.NewRaw(unsafe.String(unsafe.SliceData(l.Row), len(l.Row)))
	it, err := root.Properties()
	if err != nil {
		return rec, &Error{Reason: ReasonMalformedJSON, Offset: -1, Detail: err.Error()}
	}
	var (
		seen  uint64
		ids   roleValues
		p     ast.Pair
		slots [16]slot
	)
	rowAt := uintptr(unsafe.Pointer(unsafe.SliceData(l.Row)))
	for it.Next(&p) {
		col := c.lookup(unsafe.Slice(unsafe.StringData(p.Key), len(p.Key)))
		if col < 0 {
			continue
		}
		if seen&(1<<col) != 0 {
			return rec, &Error{Reason: ReasonDuplicateField, Field: "row." + p.Key, Offset: -1, Detail: "field appears more than once"}
		}
		seen |= 1 << col
		rs, err := p.Value.Raw()
		if err != nil {
			return rec, &Error{Reason: ReasonMalformedJSON, Offset: -1, Detail: err.Error()}
		}
		raw := unsafe.Slice(unsafe.StringData(rs), len(rs))
		v := &slots[col]
		switch c.kinds[col] {
		case kBigint, kInteger, kSmallint:
			if len(raw) == 0 || raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') || bytes.ContainsAny(raw, ".eE") {
				return rec, &Error{Reason: ReasonBadColumn, Field: "row." + p.Key, Offset: -1, Detail: "not an integer"}
			}
			x, ok := parseInt(raw)
			if !ok {
				return rec, &Error{Reason: ReasonBadColumn, Field: "row." + p.Key, Offset: -1, Detail: "out of range"}
			}
			v.kind, v.n = vInt, uint64(x)
			if col == c.time {
				if rec.Time, err = epochTime(x); err != nil {
					return rec, &Error{Reason: ReasonBadTime, Field: "row." + p.Key, Offset: -1, Detail: err.Error()}
				}
			}
		case kText, kUUID:
			if raw[0] != '"' {
				return rec, &Error{Reason: ReasonBadColumn, Field: "row." + p.Key, Offset: -1, Detail: "not a string"}
			}
			raw = raw[1 : len(raw)-1]
			esc := bytes.IndexByte(raw, '\\') >= 0
			if esc && bytes.Contains(raw, []byte(`\u0000`)) {
				return rec, &Error{Reason: ReasonBadColumn, Field: "row." + p.Key, Offset: -1, Detail: `contains \u0000`}
			}
			if c.kinds[col] == kUUID {
				hi, lo, ok := parseUUID(raw)
				if !ok {
					return rec, &Error{Reason: ReasonBadColumn, Field: "row." + p.Key, Offset: -1, Detail: "not a UUID"}
				}
				v.kind, v.n, v.m = vUUID, hi, lo
			} else {
				start := uint32(uintptr(unsafe.Pointer(unsafe.SliceData(raw))) - rowAt)
				v.kind, v.esc, v.start, v.end = vString, esc, start, start+uint32(len(raw))
			}
			if col == c.key {
				ids.keyEsc = esc
			}
			if col == c.id {
				ids.idEsc = esc
			}
		default:
			return rec, errors.New("the sonic benchmark decoder covers the benchmark's column types only")
		}
		if col == c.key {
			ids.key = raw
		}
		if col == c.id {
			ids.id = raw
		}
	}
	if ids.key == nil {
		return rec, &Error{Reason: ReasonMissingKey, Offset: -1, Detail: "row has no account key"}
	}
	ids.set(&rec, c.key == c.id, slots[:len(c.cols)], 0)
	rec.Table, rec.Row = t, l.Row
	return rec, nil
}

// TestDecodeSonicAgrees keeps the benchmark honest: on the benchmark lines
// the sonic decoder extracts what Decode extracts.
func TestDecodeSonicAgrees(t *testing.T) {
	s := benchSchema(t)
	for _, php := range []bool{false, true} {
		for i, line := range benchLines(64, php) {
			want, err := s.Decode(line, "")
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeSonic(s, line, "")
			if err != nil {
				t.Fatalf("line %d: %v", i, err)
			}
			if fmt.Sprint(got.Table.Name, got.Key, got.ID, got.Time) != fmt.Sprint(want.Table.Name, want.Key, want.ID, want.Time) || !bytes.Equal(got.Row, want.Row) {
				t.Fatalf("line %d: sonic %s %s %s %v, Decode %s %s %s %v", i, got.Table.Name, got.Key, got.ID, got.Time, want.Table.Name, want.Key, want.ID, want.Time)
			}
			for j, c := range want.Table.ColumnList() {
				if g, w := valueString(c.Type, got.Value(j)), valueString(c.Type, want.Value(j)); g != w {
					t.Fatalf("line %d: %s: sonic %s, Decode %s", i, c.Name, g, w)
				}
			}
		}
	}
	// The properties the benchmark relies on: sonic as configured rejects
	// what Decode rejects for syntax and UTF-8, and does not match "Table".
	for _, bad := range []string{
		`{"table":"raw_item","row":` + goodRow + `,"x":"` + "\xff" + `"}`,
		`{"table":"raw_item","row":` + goodRow + `,"x":[1,}`,
		`{"Table":"nope","row":` + goodRow + `}`,
	} {
		if _, err := decodeSonic(s, []byte(bad), ""); err == nil {
			t.Errorf("sonic decoder accepted %q", bad)
		}
	}
}

// BenchmarkDecodeSonic runs the sonic decoder on BenchmarkDecode's lines;
// run all of them together and compare side by side:
//
//	go test -run XXX -bench 'Decode' -count 6 ./schema/
//
// BenchmarkDecodeSonic/struct is the floor of any sonic decoder: the JIT
// decoder fills a struct of raw-message fields for the benchmark's six
// columns, with no type check, no duplicate detection (sonic keeps the last
// of two equal members silently) and no UTF-8 check of skipped values.
func BenchmarkDecodeSonic(b *testing.B) {
	type row struct {
		ProjectID sonic.NoCopyRawMessage `json:"project_id"`
		Timestamp sonic.NoCopyRawMessage `json:"timestamp"`
		Body      sonic.NoCopyRawMessage `json:"body"`
		Version   sonic.NoCopyRawMessage `json:"version"`
		Billable  sonic.NoCopyRawMessage `json:"billable"`
		UUID      sonic.NoCopyRawMessage `json:"uuid"`
	}
	floor := func(_ *Schema, line []byte, _ string) (Record, error) {
		var l sonicLine
		if err := sonicAPI.UnmarshalFromString(unsafe.String(unsafe.SliceData(line), len(line)), &l); err != nil {
			return Record{}, err
		}
		var r row
		err := sonicAPI.UnmarshalFromString(unsafe.String(unsafe.SliceData(l.Row), len(l.Row)), &r)
		return Record{Row: l.Row}, err
	}
	for _, dec := range []struct {
		name string
		fn   func(*Schema, []byte, string) (Record, error)
	}{{"ast", decodeSonic}, {"struct", floor}} {
		for _, php := range []bool{false, true} {
			name := dec.name + "/plain"
			if php {
				name = dec.name + "/php_escaped_slashes"
			}
			b.Run(name, func(b *testing.B) { benchDecodeLines(b, php, dec.fn) })
		}
	}
}
