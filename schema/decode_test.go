package schema

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testSchema has the raw_item table of examples/ and docs/config.md plus
// tables that exercise every
// column type, text keys, unknown_fields policies and a table without id.
func testSchema(tb testing.TB) *Schema {
	tb.Helper()
	s, err := New(map[string]*Table{
		"raw_item": {
			Key: "project_id", ID: "uuid", Time: "timestamp",
			Columns: map[string]string{"project_id": "bigint", "timestamp": "bigint", "body": "text",
				"version": "integer", "billable": "integer", "uuid": "uuid"},
		},
		"typed": {
			Key: "k", Time: "ts",
			Columns: map[string]string{"k": "text", "b": "bigint", "i": "int4", "s": "smallint", "t": "text",
				"bo": "bool", "d": "float8", "n": "numeric", "u": "uuid", "j": "jsonb", "ts": "timestamptz",
				"tz": "timestamptz"},
		},
		"strict": {
			Key: "acct", ID: "id", UnknownFields: "reject",
			Columns: map[string]string{"acct": "integer", "id": "text"},
		},
		"same": {Key: "k", ID: "k", Columns: map[string]string{"k": "bigint"}},
		"extra": {
			Key: "acct", UnknownFields: "jsonb:rest",
			Columns: map[string]string{"acct": "text", "rest": "jsonb", "v": "integer"},
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

const goodRow = `{"project_id":1,"timestamp":1574948156,"body":"eJyN","version":2,"billable":1,"uuid":"bad3a155-585f-47cb-bc3e-51767d52c2a2"}`

func TestDecodeSpecExample(t *testing.T) {
	s := testSchema(t)
	line := []byte(`{"table":"raw_item","row":` + goodRow + `,"counter":356}` + "\n")
	rec, err := s.Decode(line, "")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Table.Name != "raw_item" || rec.Key != "1" || rec.ID != "bad3a155-585f-47cb-bc3e-51767d52c2a2" {
		t.Errorf("got table %q key %q id %q", rec.Table.Name, rec.Key, rec.ID)
	}
	if want := time.Unix(1574948156, 0).UTC(); !rec.Time.Equal(want) || rec.Time.Location() != time.UTC {
		t.Errorf("time = %v, want %v UTC", rec.Time, want)
	}
	if string(rec.Row) != goodRow {
		t.Errorf("row = %s", rec.Row)
	}
	// Row must alias the line, not copy it.
	if &rec.Row[0] != &line[bytes.Index(line, []byte(goodRow))] {
		t.Error("Row is a copy, want a sub-slice of the line")
	}
}

func TestDecodeAccepts(t *testing.T) {
	s := testSchema(t)
	tests := []struct {
		name, line, def string
		table, key, id  string
		time            time.Time
	}{
		{name: "row before table", line: `{"row":` + goodRow + `,"table":"raw_item"}`, table: "raw_item", key: "1"},
		{name: "default table", line: `{"row":` + goodRow + `}`, def: "raw_item", table: "raw_item", key: "1"},
		{name: "null table uses default", line: `{"table":null,"row":` + goodRow + `}`, def: "raw_item", table: "raw_item", key: "1"},
		{name: "table beats default", line: `{"table":"raw_item","row":` + goodRow + `}`, def: "typed", table: "raw_item", key: "1"},
		{name: "no counter", line: `{"table":"raw_item","row":` + goodRow + `}`, table: "raw_item", key: "1"},
		{name: "odd counter and extra members", line: `{"x":[1,{"y":null}],"table":"raw_item","row":` + goodRow + `,"counter":"abc"}`, table: "raw_item", key: "1"},
		{name: "whitespace everywhere", line: " \t{ \"table\" : \"raw_item\" ,\r\n \"row\" : { \"project_id\" : 7 , \"uuid\" : \"bad3a155-585f-47cb-bc3e-51767d52c2a2\" } } \r\n", table: "raw_item", key: "7"},
		{name: "escaped member names", line: `{"t\u0061ble":"raw_\u0069tem","row":{"\u0070roject_id":5,"uu\u0069d":"bad3a155-585f-47cb-bc3e-51767d52c2a2"}}`, table: "raw_item", key: "5"},
		{name: "negative zero key", line: `{"table":"raw_item","row":{"project_id":-0,"uuid":"bad3a155-585f-47cb-bc3e-51767d52c2a2"}}`, table: "raw_item", key: "0"},
		{name: "max int64 key", line: `{"table":"raw_item","row":{"project_id":9223372036854775807,"uuid":"bad3a155-585f-47cb-bc3e-51767d52c2a2"}}`, table: "raw_item", key: "9223372036854775807"},
		{name: "min int64 key", line: `{"table":"raw_item","row":{"project_id":-9223372036854775808,"uuid":"bad3a155-585f-47cb-bc3e-51767d52c2a2"}}`, table: "raw_item", key: "-9223372036854775808"},
		{name: "nulls for plain columns", line: `{"table":"raw_item","row":{"project_id":1,"uuid":"BAD3A155585F47CBBC3E51767D52C2A2","timestamp":null,"body":null,"version":null}}`, table: "raw_item", key: "1", id: "BAD3A155585F47CBBC3E51767D52C2A2"},
		{name: "nested unknown fields", line: `{"table":"raw_item","row":{"project_id":1,"uuid":"bad3a155-585f-47cb-bc3e-51767d52c2a2","meta":{"a":[1,2,{"b":{"c":[[],{}]}}],"d":"\u00e9"}}}`, table: "raw_item", key: "1"},
		{name: "text key unescaped", line: `{"table":"typed","row":{"k":"a\"b\\c\u00e9\ud83d\ude00"}}`, table: "typed", key: "a\"b\\cé😀"},
		{name: "unicode text key", line: `{"table":"typed","row":{"k":"счёт-😀"}}`, table: "typed", key: "счёт-😀"},
		{name: "epoch millis time", line: `{"table":"raw_item","row":{"project_id":1,"uuid":"bad3a155-585f-47cb-bc3e-51767d52c2a2","timestamp":1574948156123}}`, table: "raw_item", key: "1", time: time.UnixMilli(1574948156123)},
		{name: "rfc3339 time", line: `{"table":"typed","row":{"k":"a","ts":"2019-11-28T14:35:56.5+01:00"}}`, table: "typed", key: "a", time: time.Date(2019, 11, 28, 13, 35, 56, 5e8, time.UTC)},
		{name: "fractional epoch time", line: `{"table":"typed","row":{"k":"a","ts":1574948156.25}}`, table: "typed", key: "a", time: time.Unix(1574948156, 25e7)},
		{name: "strict table with all fields known", line: `{"table":"strict","row":{"acct":1,"id":"x"}}`, table: "strict", key: "1", id: "x"},
		{name: "key is the id", line: `{"table":"same","row":{"k":-0}}`, table: "same", key: "0", id: "0"},
		{name: "escaped key and id", line: `{"table":"strict","row":{"acct":7,"id":"a\u00e9\/"}}`, table: "strict", key: "7", id: "aé/"},
		{name: "jsonb catch-all accepts unknown fields", line: `{"table":"extra","row":{"acct":"a","zzz":{"q":1},"v":3}}`, table: "extra", key: "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := s.Decode([]byte(tt.line), tt.def)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if rec.Table.Name != tt.table || rec.Key != tt.key {
				t.Errorf("table %q key %q, want %q %q", rec.Table.Name, rec.Key, tt.table, tt.key)
			}
			if tt.id != "" && rec.ID != tt.id {
				t.Errorf("id %q, want %q", rec.ID, tt.id)
			}
			if !tt.time.IsZero() && !rec.Time.Equal(tt.time) {
				t.Errorf("time %v, want %v", rec.Time, tt.time)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	s := testSchema(t)
	const u = `"uuid":"bad3a155-585f-47cb-bc3e-51767d52c2a2"`
	tests := []struct {
		name, line, def string
		reason          Reason
		field           string
	}{
		{"empty", "", "", ReasonEmptyLine, ""},
		{"only newline", "\n", "", ReasonEmptyLine, ""},
		{"only whitespace", " \t\r\n", "", ReasonEmptyLine, ""},
		{"invalid utf8 in string", "{\"table\":\"raw_item\",\"row\":{\"project_id\":1,\"body\":\"a\xffb\"," + u + "}}", "", ReasonInvalidUTF8, ""},
		{"invalid utf8 outside strings", "{\"table\":\"raw_item\"\xc3}", "", ReasonInvalidUTF8, ""},
		{"invalid utf8 after semantic error", "{\"table\":\"nope\",\"x\":\"\xed\xa0\x80\"}", "", ReasonInvalidUTF8, ""},
		{"truncated", `{"table":"raw_item","row":{"project_id":1,"bo`, "", ReasonMalformedJSON, ""},
		{"truncated after semantic error", `{"table":"nope","row":{`, "", ReasonMalformedJSON, ""},
		{"trailing comma", `{"table":"raw_item","row":{"project_id":1,` + u + `},}`, "", ReasonMalformedJSON, ""},
		{"two values", `{"table":"raw_item","row":{"project_id":1,` + u + `}} {}`, "", ReasonMalformedJSON, ""},
		{"raw control char", "{\"table\":\"raw_item\",\"row\":{\"project_id\":1,\"body\":\"a\tb\"," + u + "}}", "", ReasonMalformedJSON, ""},
		{"bad escape", `{"table":"raw_item","row":{"project_id":1,"body":"\x41",` + u + `}}`, "", ReasonMalformedJSON, ""},
		{"leading zero", `{"table":"raw_item","row":{"project_id":01,` + u + `}}`, "", ReasonMalformedJSON, ""},
		{"exponent without digits", `{"table":"raw_item","row":{"project_id":1,"extra":2e+,` + u + `}}`, "", ReasonMalformedJSON, ""},
		{"single quotes", `{'table':'raw_item'}`, "", ReasonMalformedJSON, ""},
		{"too deep", `{"table":"raw_item","row":{"project_id":1,` + u + `,"x":` + strings.Repeat("[", 2000) + strings.Repeat("]", 2000) + `}}`, "", ReasonMalformedJSON, ""},
		{"array", `[1,2]`, "", ReasonNotObject, ""},
		{"string", `"raw_item"`, "", ReasonNotObject, ""},
		{"number", `42`, "", ReasonNotObject, ""},
		{"missing table", `{"row":` + goodRow + `}`, "", ReasonMissingTable, "table"},
		{"null table no default", `{"table":null,"row":` + goodRow + `}`, "", ReasonMissingTable, "table"},
		{"unknown table", `{"table":"nope","row":` + goodRow + `}`, "", ReasonUnknownTable, "table"},
		{"table not string", `{"table":5,"row":` + goodRow + `}`, "", ReasonUnknownTable, "table"},
		{"unknown default table", `{"row":` + goodRow + `}`, "nope", ReasonUnknownTable, "table"},
		{"missing row", `{"table":"raw_item","counter":1}`, "", ReasonMissingRow, "row"},
		{"empty object", `{}`, "raw_item", ReasonMissingRow, "row"},
		{"row array", `{"table":"raw_item","row":[1]}`, "", ReasonRowNotObject, "row"},
		{"row null", `{"table":"raw_item","row":null}`, "", ReasonRowNotObject, "row"},
		{"row string", `{"table":"raw_item","row":"{}"}`, "", ReasonRowNotObject, "row"},
		{"duplicate table", `{"table":"raw_item","table":"raw_item","row":` + goodRow + `}`, "", ReasonDuplicateField, "table"},
		{"duplicate row", `{"table":"raw_item","row":` + goodRow + `,"row":` + goodRow + `}`, "", ReasonDuplicateField, "row"},
		{"duplicate key column", `{"table":"raw_item","row":{"project_id":1,"project_id":2,` + u + `}}`, "", ReasonDuplicateField, "row.project_id"},
		{"duplicate escaped column", `{"table":"raw_item","row":{"project_id":1,"pr\u006fject_id":2,` + u + `}}`, "", ReasonDuplicateField, "row.project_id"},
		{"duplicate via deferred row", `{"row":{"project_id":1,"version":1,"version":2,` + u + `},"table":"raw_item"}`, "", ReasonDuplicateField, "row.version"},
		{"missing key", `{"table":"raw_item","row":{` + u + `}}`, "", ReasonMissingKey, "row.project_id"},
		{"missing key empty row", `{"table":"typed","row":{}}`, "", ReasonMissingKey, "row.k"},
		{"null key", `{"table":"raw_item","row":{"project_id":null,` + u + `}}`, "", ReasonBadKey, "row.project_id"},
		{"float key", `{"table":"raw_item","row":{"project_id":1.5,` + u + `}}`, "", ReasonBadKey, "row.project_id"},
		{"exponent key", `{"table":"raw_item","row":{"project_id":1e3,` + u + `}}`, "", ReasonBadKey, "row.project_id"},
		{"bool key", `{"table":"raw_item","row":{"project_id":true,` + u + `}}`, "", ReasonBadKey, "row.project_id"},
		{"object key", `{"table":"raw_item","row":{"project_id":{"a":1},` + u + `}}`, "", ReasonBadKey, "row.project_id"},
		{"string key in bigint column", `{"table":"raw_item","row":{"project_id":"1",` + u + `}}`, "", ReasonBadKey, "row.project_id"},
		{"key out of range", `{"table":"raw_item","row":{"project_id":9223372036854775808,` + u + `}}`, "", ReasonBadKey, "row.project_id"},
		{"empty text key", `{"table":"typed","row":{"k":""}}`, "", ReasonBadKey, "row.k"},
		{"integer in text key column", `{"table":"typed","row":{"k":1}}`, "", ReasonBadKey, "row.k"},
		{"missing id", `{"table":"raw_item","row":{"project_id":1}}`, "", ReasonMissingID, "row.uuid"},
		{"null id", `{"table":"raw_item","row":{"project_id":1,"uuid":null}}`, "", ReasonMissingID, "row.uuid"},
		{"bad id", `{"table":"raw_item","row":{"project_id":1,"uuid":"nope"}}`, "", ReasonBadID, "row.uuid"},
		{"empty id", `{"table":"strict","row":{"acct":1,"id":""}}`, "", ReasonBadID, "row.id"},
		{"time string in bigint column", `{"table":"raw_item","row":{"project_id":1,` + u + `,"timestamp":"2019-11-28T13:35:56Z"}}`, "", ReasonBadTime, "row.timestamp"},
		{"time not rfc3339", `{"table":"typed","row":{"k":"a","ts":"28/11/2019"}}`, "", ReasonBadTime, "row.ts"},
		{"time out of range", `{"table":"typed","row":{"k":"a","ts":1e20}}`, "", ReasonBadTime, "row.ts"},
		{"bad column", `{"table":"raw_item","row":{"project_id":1,` + u + `,"version":"2"}}`, "", ReasonBadColumn, "row.version"},
		{"bad column in deferred row", `{"row":{"project_id":1,` + u + `,"version":2147483648},"table":"raw_item"}`, "", ReasonBadColumn, "row.version"},
		{"unknown column rejected", `{"table":"strict","row":{"acct":1,"id":"x","other":1}}`, "", ReasonUnknownColumn, "row.other"},
		{"catch-all column in row", `{"table":"extra","row":{"acct":"a","rest":{}}}`, "", ReasonBadColumn, "row.rest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Decode([]byte(tt.line), tt.def)
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("Decode error = %v, want *schema.Error", err)
			}
			if de.Reason != tt.reason || de.Field != tt.field {
				t.Fatalf("got reason %q field %q (%v), want %q %q", de.Reason, de.Field, err, tt.reason, tt.field)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, string(tt.reason)) || !strings.Contains(msg, tt.field) {
				t.Errorf("message %q does not name reason %q and field %q", msg, tt.reason, tt.field)
			}
		})
	}
}

// TestDecodeColumnTypes pins the accept/reject boundary of every type.
func TestDecodeColumnTypes(t *testing.T) {
	s := testSchema(t)
	tests := []struct {
		col, value string
		ok         bool
	}{
		{"b", "9223372036854775807", true},
		{"b", "-9223372036854775808", true},
		{"b", "9223372036854775808", false},
		{"b", "-9223372036854775809", false},
		{"b", "123456789012345678901234", false},
		{"b", "-0", true},
		{"b", "1e3", false}, // integer types take integer syntax only, like PostgreSQL's int input
		{"b", "1.0", false},
		{"b", `"1"`, false},
		{"b", "true", false},
		{"b", "null", true},
		{"i", "2147483647", true},
		{"i", "2147483648", false},
		{"i", "-2147483648", true},
		{"i", "-2147483649", false},
		{"s", "32767", true},
		{"s", "32768", false},
		{"s", "-32768", true},
		{"s", "-32769", false},
		{"t", `""`, true},
		{"t", `"héllo wörld 😀"`, true},
		{"t", `"\ud83d\ude00 \n\t\"\\\/"`, true},
		{"t", `"nul \u0000 inside"`, false}, // PostgreSQL text cannot hold NUL
		{"t", `"lone \ud800 surrogate"`, false},
		{"t", `"lone \udc00 low"`, false},
		{"t", `"reversed \udc00\ud800"`, false},
		{"t", "1", false},
		{"t", "[]", false},
		{"bo", "true", true},
		{"bo", "false", true},
		{"bo", "1", false},
		{"bo", `"true"`, false},
		{"d", "1.5e300", true},
		{"d", "-0.0", true},
		{"d", "0e-400", true},
		{"d", "4.9e-324", true},
		{"d", "1e309", false},
		{"d", "1e-400", false},
		{"d", `"1.5"`, false},
		{"n", "1e1000", true},
		{"n", "-12.50", true},
		{"n", `"12.50"`, true},
		{"n", `".5"`, true},
		{"n", `"+1e-3"`, true},
		{"n", `"NaN"`, true},
		{"n", `"-Infinity"`, true},
		{"n", `"abc"`, false},
		{"n", `""`, false},
		{"n", `"1e"`, false},
		{"n", `"1e+"`, false},
		{"n", `"2E+07"`, true},
		{"n", "-2.5E-3", true},
		{"n", `" 1"`, false},
		{"n", "true", false},
		{"u", `"bad3a155-585f-47cb-bc3e-51767d52c2a2"`, true},
		{"u", `"BAD3A155-585F-47CB-BC3E-51767D52C2A2"`, true},
		{"u", `"bad3a155585f47cbbc3e51767d52c2a2"`, true},
		{"u", `"{bad3a155-585f-47cb-bc3e-51767d52c2a2}"`, true},
		{"u", `"\u0062ad3a155-585f-47cb-bc3e-51767d52c2a2"`, true},
		{"u", `"bad3a155-585f-47cb-bc3e-51767d52c2a"`, false},
		{"u", `"bad3a155-585f47cb-bc3e-51767d52c2a2a"`, false},
		{"u", `"gad3a155-585f-47cb-bc3e-51767d52c2a2"`, false},
		{"u", "1", false},
		{"j", `{"a":[1,2.5,{"b":null,"c":"\u00e9"}],"d":true}`, true},
		{"j", `[]`, true},
		{"j", `"s"`, true},
		{"j", `3`, true},
		{"j", `{"a":"\u0000"}`, false},
		{"j", `{"\u0000":1}`, false},
		{"tz", "1574948156", true},
		{"tz", "1574948156000", true},
		{"tz", `"2019-11-28T13:35:56Z"`, true},
		{"tz", `"2019-11-28T13:35:56.123456789-07:00"`, true},
		{"tz", `"2019-11-28"`, false},
		{"tz", `"2019-11-28 13:35:56Z"`, false},
		{"tz", "1e30", false},
		{"tz", "true", false},
		{"tz", "null", true},
	}
	for _, tt := range tests {
		t.Run(tt.col+"="+tt.value, func(t *testing.T) {
			line := `{"table":"typed","row":{"k":"acct","` + tt.col + `":` + tt.value + `}}`
			_, err := s.Decode([]byte(line), "")
			if tt.ok && err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if !tt.ok {
				var de *Error
				if !errors.As(err, &de) || de.Reason != ReasonBadColumn || de.Field != "row."+tt.col {
					t.Fatalf("err = %v, want bad_column on row.%s", err, tt.col)
				}
			}
		})
	}
}

func TestDecodeLargeLine(t *testing.T) {
	s := testSchema(t)
	body := strings.Repeat("eJyN0123456789+/", 10<<20/16)
	line := []byte(`{"table":"raw_item","row":{"project_id":42,"body":"` + body + `","uuid":"bad3a155-585f-47cb-bc3e-51767d52c2a2"}}` + "\n")
	rec, err := s.Decode(line, "")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Key != "42" || len(rec.Row) < 10<<20 {
		t.Fatalf("key %q row %d bytes", rec.Key, len(rec.Row))
	}
	// The same line with one bad byte at the very end of the body.
	bad := bytes.Clone(line)
	bad[bytes.LastIndex(bad, []byte(`","uuid"`))-1] = 0x01
	_, err = s.Decode(bad, "")
	var de *Error
	if !errors.As(err, &de) || de.Reason != ReasonMalformedJSON {
		t.Fatalf("err = %v, want malformed_json", err)
	}
	if de.Offset < 10<<20 {
		t.Errorf("offset %d, want near the end", de.Offset)
	}
}

func TestDecodeErrorMessage(t *testing.T) {
	s := testSchema(t)
	_, err := s.Decode([]byte(`{"table":"typed","row":{"k":"a","i":2147483648}}`), "")
	want := `bad_column: row.i: "2147483648" is out of range for integer (at byte 36)`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}

// valueString renders a Value through the accessor of its column's type,
// in the JSON form of the value, so that tests can compare with the row.
func valueString(typ Type, v Value) string {
	if v.Null() {
		return "<null>"
	}
	switch typ {
	case Bigint, Integer, Smallint:
		return strconv.FormatInt(v.Int(), 10)
	case Boolean:
		return strconv.FormatBool(v.Bool())
	case Double:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case Text:
		return strconv.Quote(string(v.Text()))
	case Numeric:
		return string(v.Numeric())
	case UUID:
		u := v.UUID()
		return fmt.Sprintf("%x", u[:])
	case JSONB:
		return string(v.JSON())
	case Timestamptz:
		return v.Time().Format(time.RFC3339Nano)
	}
	return "?"
}

// TestValues checks the column values Decode carries for the Postgres
// sink: every column in ColumnList order, null for absent and null ones,
// and for unknown_fields: jsonb the unknown fields as one object of raw
// bytes in row order. The values must survive the row being copied, as the
// loader does.
func TestValues(t *testing.T) {
	s := testSchema(t)
	tests := []struct {
		table, row string
		want       map[string]string // column -> valueString; absent = null
	}{
		{"raw_item", goodRow, map[string]string{"billable": "1", "body": `"eJyN"`, "project_id": "1",
			"timestamp": "1574948156", "uuid": "bad3a155585f47cbbc3e51767d52c2a2", "version": "2"}},
		{"raw_item", `{"project_id":1,"body":null,"x":{"y":1},"uuid":"bad3a155585f47cbbc3e51767d52c2a2"}`,
			map[string]string{"project_id": "1", "uuid": "bad3a155585f47cbbc3e51767d52c2a2"}},
		{"extra", `{"acct":"a","z":[1],"v":3,"\u0079":"q"}`, map[string]string{"acct": `"a"`, "v": "3", "rest": `{"z":[1],"\u0079":"q"}`}},
		{"extra", `{"acct":"a"}`, map[string]string{"acct": `"a"`}},
		{"typed", `{"k":"a\u00e9\/","b":-9223372036854775808,"i":-2147483648,"s":32767,"t":"x\ud83d\ude00","bo":false,` +
			`"d":-1e-320,"n":"1.50\u0030","u":"{BAD3A155585F47CBBC3E51767D52C2A2}","j":{"a":[1,"\u00e9"]},` +
			`"ts":"2019-11-28T14:35:56.123456789+01:00","tz":1574948156123}`,
			map[string]string{"k": `"aé/"`, "b": "-9223372036854775808", "i": "-2147483648", "s": "32767", "t": `"x😀"`,
				"bo": "false", "d": "-1e-320", "n": "1.500", "u": "bad3a155585f47cbbc3e51767d52c2a2", "j": `{"a":[1,"\u00e9"]}`,
				"ts": "2019-11-28T13:35:56.123456789Z", "tz": "2019-11-28T13:35:56.123Z"}},
		{"typed", `{"k":"a","n":-1.5e3,"bo":true,"d":0,"ts":null}`, map[string]string{"k": `"a"`, "n": "-1.5e3", "bo": "true", "d": "0"}},
	}
	for _, tt := range tests {
		t.Run(tt.table+tt.row, func(t *testing.T) {
			line := []byte(`{"table":"` + tt.table + `","row":` + tt.row + `}`)
			rec, err := s.Decode(line, "")
			if err != nil {
				t.Fatal(err)
			}
			// The loader moves Row into its batch buffer and reuses the line.
			rec.Row = bytes.Clone(rec.Row)
			clear(line)
			check := func(how string, rec Record) {
				if !rec.HasValues() {
					t.Fatalf("%s: no values", how)
				}
				for i, c := range rec.Table.ColumnList() {
					want, ok := tt.want[c.Name]
					if !ok {
						want = "<null>"
					}
					if got := valueString(c.Type, rec.Value(i)); got != want {
						t.Errorf("%s: %s = %s, want %s", how, c.Name, got, want)
					}
				}
			}
			check("Decode", rec)
			tbl, _ := s.Lookup(tt.table)
			again, err := tbl.DecodeRow(append([]byte(" "), rec.Row...))
			if err != nil {
				t.Fatal(err)
			}
			check("DecodeRow", again)
			if again.Key != rec.Key || again.ID != rec.ID || !again.Time.Equal(rec.Time) || !bytes.Equal(again.Row, rec.Row) {
				t.Errorf("DecodeRow: key %q id %q time %v row %s; Decode: %q %q %v %s", again.Key, again.ID, again.Time, again.Row, rec.Key, rec.ID, rec.Time, rec.Row)
			}
		})
	}
	var none Record
	if none.HasValues() || !none.Value(0).Null() {
		t.Error("a Record not made by Decode has values")
	}
}

// TestDecodeRowErrors checks that DecodeRow rejects what Decode rejects in
// a row, with the same reasons, and offsets in the row.
func TestDecodeRowErrors(t *testing.T) {
	s := testSchema(t)
	tbl, _ := s.Lookup("typed")
	for _, tt := range []struct {
		row    string
		reason Reason
		field  string
	}{
		{`{"k":"a","i":2147483648}`, ReasonBadColumn, "row.i"},
		{`{"k":"a","t":"a\u0000"}`, ReasonBadColumn, "row.t"},
		{`{"k":"a","t":`, ReasonMalformedJSON, ""},
		{`{"k":"a"} x`, ReasonMalformedJSON, ""},
		{`{"k":"a","t":"` + "\xff" + `"}`, ReasonInvalidUTF8, ""},
		{`[1]`, ReasonRowNotObject, "row"},
		{`{"i":1}`, ReasonMissingKey, "row.k"},
		{`{"k":"a","k":"b"}`, ReasonDuplicateField, "row.k"},
	} {
		_, err := tbl.DecodeRow([]byte(tt.row))
		var de *Error
		if !errors.As(err, &de) || de.Reason != tt.reason || de.Field != tt.field {
			t.Errorf("DecodeRow(%s) = %v, want %s on %q", tt.row, err, tt.reason, tt.field)
		}
	}
	if _, err := (&Table{Name: "x"}).DecodeRow([]byte(`{}`)); err == nil {
		t.Error("DecodeRow on a table outside a schema succeeded")
	}
}

func TestParseTime(t *testing.T) {
	tests := []struct {
		raw  string
		want time.Time
		ok   bool
	}{
		{"0", time.Unix(0, 0), true},
		{"1574948156", time.Unix(1574948156, 0), true},
		{"99999999999", time.Unix(99999999999, 0), true},
		{"100000000000", time.UnixMilli(100000000000), true},
		{"1574948156123", time.UnixMilli(1574948156123), true},
		{"-1", time.Unix(-1, 0), true},
		{"1574948156.5", time.Unix(1574948156, 5e8), true},
		{"1574948156123.5", time.UnixMilli(1574948156123).Add(500 * time.Microsecond), true},
		{`"2019-11-28T13:35:56Z"`, time.Date(2019, 11, 28, 13, 35, 56, 0, time.UTC), true},
		{`"2019-11-28T13:35:56\u002B01:00"`, time.Date(2019, 11, 28, 12, 35, 56, 0, time.UTC), true},
		{"253402300799999", time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC), true},
		{"253402300800000", time.Time{}, false},
		{"9223372036854775808", time.Time{}, false},
		{"1e400", time.Time{}, false},
		{`"yesterday"`, time.Time{}, false},
		{"null", time.Time{}, false},
		{"", time.Time{}, false},
		{`"unterminated`, time.Time{}, false},
		{"12x", time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			got, err := ParseTime([]byte(tt.raw))
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if tt.ok && (!got.Equal(tt.want) || got.Location() != time.UTC) {
				t.Errorf("got %v, want %v in UTC", got, tt.want)
			}
		})
	}
}

// TestDecodeConcurrent checks that a Schema is safe for concurrent use (run
// with -race).
func TestDecodeConcurrent(t *testing.T) {
	s := testSchema(t)
	lines := benchLines(64, true)
	done := make(chan error)
	for g := 0; g < 4; g++ {
		go func() {
			for _, l := range lines {
				if _, err := s.Decode(l, ""); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// TestDecodeAllocs pins the allocation budget: Key, ID and the column
// values share one allocation, nothing else is allocated per line.
func TestDecodeAllocs(t *testing.T) {
	s := testSchema(t)
	lines := benchLines(8, true)
	i := 0
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := s.Decode(lines[i%len(lines)], ""); err != nil {
			t.Fatal(err)
		}
		i++
	})
	if allocs > 1 {
		t.Errorf("Decode allocates %.1f times per line, want 1", allocs)
	}
}
