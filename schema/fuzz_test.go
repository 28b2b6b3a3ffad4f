package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/bytedance/sonic"
)

// FuzzDecode checks that Decode never panics, that its reasons agree with
// independent validators (encoding/json, sonic, unicode/utf8), and that what
// it accepts and extracts (key, column values) is what encoding/json sees
// in the same line; DecodeRow must agree on the row.
// Seeds live in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"table":"raw_item","row":` + goodRow + `,"counter":356}`))
	f.Add([]byte(`{"table":"typed","row":{"k":"a\u00e9","b":1,"i":2,"s":3,"t":"x","bo":true,"d":1.5,"n":"1.5","u":"bad3a155585f47cbbc3e51767d52c2a2","j":{"a":[]},"ts":"2019-11-28T13:35:56Z","tz":1574948156}}`))
	f.Add([]byte(`{"row":{"acct":"a","zz":1},"table":"extra"}`))
	s := testSchema(f)
	f.Fuzz(func(t *testing.T, line []byte) {
		for _, def := range []string{"", "raw_item"} {
			rec, err := s.Decode(line, def)
			if err != nil {
				var de *Error
				if !errors.As(err, &de) {
					t.Fatalf("error is not *Error: %v", err)
				}
				if (de.Reason == ReasonInvalidUTF8) != !utf8.Valid(line) {
					t.Fatalf("reason %s but utf8.Valid = %v", de.Reason, utf8.Valid(line))
				}
				if !json.Valid(line) {
					switch de.Reason {
					case ReasonEmptyLine, ReasonMalformedJSON, ReasonInvalidUTF8:
					default:
						t.Fatalf("encoding/json rejects the line but reason is %s (%v)", de.Reason, err)
					}
				} else if de.Reason == ReasonMalformedJSON && !strings.Contains(de.Detail, "too deep") {
					t.Fatalf("encoding/json accepts the line but Decode says %v", err)
				}
				continue
			}
			if !json.Valid(line) || !sonic.Valid(line) || !utf8.Valid(line) {
				t.Fatalf("accepted a line that encoding/json (%v), sonic (%v) or utf8 (%v) rejects",
					json.Valid(line), sonic.Valid(line), utf8.Valid(line))
			}
			var top map[string]json.RawMessage
			if err := json.Unmarshal(line, &top); err != nil {
				t.Fatalf("encoding/json: %v", err)
			}
			if !bytes.Equal(top["row"], rec.Row) {
				t.Fatalf("Row = %s, encoding/json row = %s", rec.Row, top["row"])
			}
			var row map[string]any
			if err := oracleDecode(rec.Row, &row); err != nil {
				t.Fatalf("row is not an object for encoding/json: %v", err)
			}
			want := ""
			switch v := row[rec.Table.Key].(type) {
			case string:
				want = v
			case json.Number:
				if want = v.String(); want == "-0" {
					want = "0"
				}
			default:
				t.Fatalf("key %q is %T in encoding/json", rec.Table.Key, v)
			}
			if rec.Key != want || rec.Key == "" {
				t.Fatalf("Key = %q, encoding/json has %q", rec.Key, want)
			}
			checkValues(t, rec, row)
			again, err := rec.Table.DecodeRow(rec.Row)
			if err != nil {
				t.Fatalf("DecodeRow of an accepted row: %v", err)
			}
			checkValues(t, again, row)
		}
	})
}

// oracleDecode decodes data with encoding/json, the fuzz tests' oracle,
// keeping numbers as json.Number so that no digit is lost before comparing.
func oracleDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(v)
}

// checkValues compares every column value of rec with the row as
// encoding/json decoded it (numbers as json.Number).
func checkValues(t *testing.T, rec Record, row map[string]any) {
	t.Helper()
	for i, c := range rec.Table.ColumnList() {
		v := rec.Value(i)
		if c.Name == rec.Table.unknownColumn() {
			var want map[string]any
			for k, x := range row {
				if _, isCol := rec.Table.Columns[k]; !isCol {
					if want == nil {
						want = map[string]any{}
					}
					want[k] = x
				}
			}
			var got map[string]any
			if !v.Null() {
				if err := oracleDecode(v.JSON(), &got); err != nil {
					t.Fatalf("%s: unknown fields %s: %v", c.Name, v.JSON(), err)
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: unknown fields %v, encoding/json has %v", c.Name, got, want)
			}
			continue
		}
		x := row[c.Name]
		if x == nil {
			if !v.Null() {
				t.Fatalf("%s: encoding/json has null or nothing, Decode has a value", c.Name)
			}
			continue
		}
		var got, want string
		switch c.Type {
		case Bigint, Integer, Smallint:
			got, want = strconv.FormatInt(v.Int(), 10), strings.TrimPrefix(x.(json.Number).String(), "-")
			if v.Int() < 0 {
				want = "-" + want
			}
		case Boolean:
			got, want = strconv.FormatBool(v.Bool()), strconv.FormatBool(x.(bool))
		case Double:
			f, err := x.(json.Number).Float64()
			if err != nil {
				t.Fatalf("%s: Decode accepted %v, encoding/json: %v", c.Name, x, err)
			}
			got, want = strconv.FormatFloat(v.Float(), 'g', -1, 64), strconv.FormatFloat(f, 'g', -1, 64)
		case Text:
			got, want = string(v.Text()), x.(string)
		case Numeric:
			got = string(v.Numeric())
			if n, ok := x.(json.Number); ok {
				want = n.String()
			} else {
				want = x.(string)
			}
		case UUID:
			u := v.UUID()
			got, want = fmt.Sprintf("%x", u[:]), strings.ToLower(strings.Trim(strings.ReplaceAll(x.(string), "-", ""), "{}"))
		case JSONB:
			var j any
			if err := oracleDecode(v.JSON(), &j); err != nil {
				t.Fatalf("%s: %s: %v", c.Name, v.JSON(), err)
			}
			if !reflect.DeepEqual(j, x) {
				t.Fatalf("%s: Decode has %v, encoding/json %v", c.Name, j, x)
			}
			continue
		case Timestamptz:
			raw, _ := json.Marshal(x)
			tm, err := ParseTime(raw)
			if err != nil {
				t.Fatalf("%s: Decode accepted %s: %v", c.Name, raw, err)
			}
			got, want = v.Time().Format(time.RFC3339Nano), tm.Format(time.RFC3339Nano)
		}
		if got != want {
			t.Fatalf("%s (%s): Decode has %q, encoding/json %q", c.Name, c.Type, got, want)
		}
	}
}

// unknownColumn is the unknown_fields: jsonb column, or "".
func (t *Table) unknownColumn() string {
	if t.c.extra < 0 {
		return ""
	}
	return t.c.cols[t.c.extra].Name
}
