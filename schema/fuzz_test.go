package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/bytedance/sonic"
)

// FuzzDecode checks that Decode never panics, that its reasons agree with
// independent validators (encoding/json, sonic, unicode/utf8), and that what
// it accepts and extracts is what encoding/json sees in the same line.
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
			dec := json.NewDecoder(bytes.NewReader(rec.Row))
			dec.UseNumber()
			var row map[string]any
			if err := dec.Decode(&row); err != nil {
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
		}
	})
}
