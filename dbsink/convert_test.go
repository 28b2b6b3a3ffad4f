package dbsink

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"math"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/bytedance/sonic"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
)

func TestConverters(t *testing.T) {
	num := func(i int64, exp int32) pgtype.Numeric {
		return pgtype.Numeric{Int: big.NewInt(i), Exp: exp, Valid: true}
	}
	for _, tc := range []struct {
		typ  schema.Type
		raw  string
		want any    // nil: error expected
		err  string // fragment of the error
	}{
		{schema.Bigint, `-9223372036854775808`, int64(math.MinInt64), ""},
		{schema.Bigint, `9223372036854775807`, int64(math.MaxInt64), ""},
		{schema.Bigint, `9223372036854775808`, nil, "out of range for bigint"},
		{schema.Bigint, `-0`, int64(0), ""},
		{schema.Bigint, `12345678901234567890123`, nil, "out of range"},
		{schema.Bigint, `1.0`, nil, "not an integer"},
		{schema.Bigint, `1e3`, nil, "not an integer"},
		{schema.Bigint, `"1"`, nil, "not an integer"},
		{schema.Integer, `-2147483648`, int32(math.MinInt32), ""},
		{schema.Integer, `2147483648`, nil, "out of range for integer"},
		{schema.Smallint, `-32768`, int16(math.MinInt16), ""},
		{schema.Smallint, `32768`, nil, "out of range for smallint"},
		{schema.Boolean, `true`, true, ""},
		{schema.Boolean, `false`, false, ""},
		{schema.Boolean, `1`, nil, "not true or false"},
		{schema.Double, `0.1`, 0.1, ""},
		{schema.Double, `-1e-320`, -1e-320, ""}, // subnormal, not underflow
		{schema.Double, `1e400`, nil, "out of range"},
		{schema.Double, `1e-400`, nil, "out of range"},
		{schema.Double, `0e-400`, 0.0, ""},
		{schema.Double, `"1"`, nil, "not a number"},
		{schema.Numeric, `"12.50"`, num(1250, -2), ""},
		{schema.Numeric, `12.50`, num(1250, -2), ""},
		{schema.Numeric, `-1e-3`, num(-1, -3), ""},
		{schema.Numeric, `1.50E+1`, num(150, -1), ""},
		{schema.Numeric, `"+.5"`, num(5, -1), ""},
		{schema.Numeric, `"NaN"`, pgtype.Numeric{NaN: true, Valid: true}, ""},
		{schema.Numeric, `"+Infinity"`, pgtype.Numeric{InfinityModifier: pgtype.Infinity, Valid: true}, ""},
		{schema.Numeric, `"1e999999"`, nil, "out of range for numeric"},
		{schema.Numeric, `1e-16384`, nil, "out of range for numeric"},
		{schema.Numeric, `"1e99999999999999999999999"`, nil, "out of range for numeric"},
		{schema.Numeric, `"0e999999"`, num(0, 999999), ""},
		{schema.Numeric, `"1_000"`, nil, "not a number"},
		{schema.Numeric, `"."`, nil, "not a number"},
		{schema.Numeric, `true`, nil, "not a number"},
		{schema.UUID, `"bad3a155-585f-47cb-bc3e-51767d52c2a2"`, uuid("bad3a155585f47cbbc3e51767d52c2a2"), ""},
		{schema.UUID, `"{BAD3A155585F47CBBC3E51767D52C2A2}"`, uuid("bad3a155585f47cbbc3e51767d52c2a2"), ""},
		{schema.UUID, `"bad3a155-585f-47cb-bc3e-51767d52c2ag"`, nil, "not a UUID"},
		{schema.UUID, `"bad3a155+585f-47cb-bc3e-51767d52c2a2"`, nil, "not a UUID"},
		{schema.UUID, `"\u0062ad3a155585f47cbbc3e51767d52c2a2"`, uuid("bad3a155585f47cbbc3e51767d52c2a2"), ""},
		{schema.Text, `"a\"b\\c\/d\u00e9\ud83d\ude00"`, []byte("a\"b\\c/dé😀"), ""},
		{schema.Text, `"\ud83d"`, nil, "unpaired surrogate"},
		{schema.Text, `"\ude00x"`, nil, "unpaired surrogate"},
		{schema.Text, `"a\u0000"`, nil, `\u0000`},
		{schema.Text, `"\x"`, nil, "invalid escape"},
		{schema.Text, `5`, nil, "not a string"},
		{schema.JSONB, `{"a":[1]}`, []byte(`{"a":[1]}`), ""},
		{schema.Timestamptz, `1574948156`, time.Unix(1574948156, 0).UTC(), ""},
		{schema.Timestamptz, `1574948156123`, time.UnixMilli(1574948156123).UTC(), ""},
		{schema.Timestamptz, `"2019-11-28T14:35:56.1234567+01:00"`, time.Date(2019, 11, 28, 13, 35, 56, 123457000, time.UTC), ""},
		{schema.Timestamptz, `"tomorrow"`, nil, "not an epoch number or RFC 3339"},
	} {
		got, err := convertRaw(t, tc.typ, tc.raw)
		if tc.want == nil {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s %s: got %v, %v; want error with %q", tc.typ, tc.raw, got, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s %s: %v", tc.typ, tc.raw, err)
			continue
		}
		if !equalValue(got, tc.want) {
			t.Errorf("%s %s = %#v, want %#v", tc.typ, tc.raw, got, tc.want)
		}
	}
}

// convertRaw converts one raw JSON value of a column of type typ the way a
// row reaches COPY: schema's decoding (the one parse of the line), then the
// sink's converter.
func convertRaw(tb testing.TB, typ schema.Type, raw string) (any, error) {
	tb.Helper()
	tbl, ok := convTables.Load(typ)
	if !ok { // schema.New per call would be most of a fuzz run's time
		sch := mustSchema(tb, map[string]*schema.Table{"t": {Key: "k", Columns: map[string]string{"k": "text", "c": string(typ)}}})
		t, _ := sch.Lookup("t")
		tbl, _ = convTables.LoadOrStore(typ, t)
	}
	rec, err := tbl.(*schema.Table).DecodeRow([]byte(`{"k":"x","c":` + raw + `}`))
	if err != nil {
		return nil, err
	}
	conv, err := converterFor(typ)
	if err != nil {
		tb.Fatal(err)
	}
	return conv(rec.Value(0)) // "c" sorts before "k"
}

// convTables holds convertRaw's one-column table per type.
var convTables sync.Map

func uuid(s string) pgtype.UUID {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		panic(s)
	}
	return pgtype.UUID{Bytes: [16]byte(b), Valid: true}
}

func equalValue(a, b any) bool {
	switch x := a.(type) {
	case []byte:
		y, ok := b.([]byte)
		return ok && string(x) == string(y)
	case pgtype.Numeric:
		y, ok := b.(pgtype.Numeric)
		if !ok || x.NaN != y.NaN || x.InfinityModifier != y.InfinityModifier || x.Valid != y.Valid || x.Exp != y.Exp {
			return false
		}
		return (x.Int == nil) == (y.Int == nil) && (x.Int == nil || x.Int.Cmp(y.Int) == 0)
	case time.Time:
		y, ok := b.(time.Time)
		return ok && x.Equal(y)
	}
	return a == b
}

// FuzzJSONString checks text values, as schema decodes them for the sink,
// against encoding/json on every string encoding/json accepts.
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{`"abc"`, `"a\"b"`, `"\u00e9\ud83d\ude00"`, `"\ud83d"`, `"\\\/\b\f\n\r\t"`, `"\u0000"`, `""`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var want string
		// Rows reach the sink from schema.Decode, which refuses lines that
		// are not UTF-8 where encoding/json substitutes U+FFFD. Values come
		// without surrounding whitespace.
		if !utf8.ValidString(raw) || json.Unmarshal([]byte(raw), &want) != nil ||
			!strings.HasPrefix(raw, `"`) || !strings.HasSuffix(raw, `"`) {
			return
		}
		v, err := convertRaw(t, schema.Text, raw)
		if err != nil {
			// Refused on purpose: NUL, which PostgreSQL cannot store, and
			// unpaired surrogates (encoding/json turns them into U+FFFD).
			if strings.ContainsRune(want, 0) || strings.ContainsRune(want, utf8.RuneError) {
				return
			}
			t.Fatalf("text %s: %v; encoding/json gives %q", raw, err, want)
		}
		if got := v.([]byte); string(got) != want {
			t.Fatalf("text %s = %q, want %q", raw, got, want)
		}
	})
}

// BenchmarkConvert measures turning ~2 KB raw_item rows into COPY values,
// the sink's only per-row work before pgx encodes them.
func BenchmarkConvert(b *testing.B) {
	sch := rawItemSchema(b, "raw_item", true)
	lines := rawItemLines(1000, 1)
	recs := make([]loader.Record, len(lines))
	var size int64
	for i, l := range lines {
		r, err := sch.Decode([]byte(l), "")
		if err != nil {
			b.Fatal(err)
		}
		recs[i] = loader.Record{Record: r}
		size += int64(len(r.Row))
	}
	s := &Sink{tables: map[*schema.Table]*tableInfo{}}
	batch := loader.NewBatch("s", loader.Position{}, loader.Position{}, recs, nil)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.prepare(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/row")
}

// BenchmarkConvertSonicMap is the baseline BenchmarkConvert is measured
// against: what decoding each row into a map with sonic costs, before any
// conversion to column types.
func BenchmarkConvertSonicMap(b *testing.B) {
	sch := rawItemSchema(b, "raw_item", true)
	lines := rawItemLines(1000, 1)
	rows := make([][]byte, len(lines))
	var size int64
	for i, l := range lines {
		r, err := sch.Decode([]byte(l), "")
		if err != nil {
			b.Fatal(err)
		}
		rows[i] = r.Row
		size += int64(len(r.Row))
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		for _, row := range rows {
			var m map[string]any
			if err := sonic.Unmarshal(row, &m); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rows)), "ns/row")
}

// TestPrepareTakesDecodedValues checks that the sink converts the values
// the loader's Decode produced and parses no JSON itself: with the row's
// structure broken after Decode (no byte of a value touched), a decoded
// record still converts to the right values, while the same row in a record
// made without Decode is parsed, and dead-lettered as malformed. No
// PostgreSQL: prepare runs before any transaction.
func TestPrepareTakesDecodedValues(t *testing.T) {
	sch := mustSchema(t, map[string]*schema.Table{"t": {Key: "k", ID: "u", Columns: map[string]string{
		"k": "bigint", "u": "uuid", "s": "text", "n": "numeric", "ts": "timestamptz", "j": "jsonb"}}})
	tbl, _ := sch.Lookup("t")
	line := []byte(`{"table":"t","row":{"k":-7,"u":"bad3a155-585f-47cb-bc3e-51767d52c2a2","s":"a\/b","n":"12.50","ts":1574948156123,"j":{"x":[1]}}}`)
	decoded, err := sch.Decode(line, "")
	if err != nil {
		t.Fatal(err)
	}
	row := bytes.Clone(decoded.Row)
	row[0], row[len(row)-1] = '[', ']' // an array now: any parse refuses it
	decoded.Row = row
	recs := []loader.Record{
		{Record: decoded, Pos: loader.Position{Offset: 0}},
		rawRecord(tbl, loader.Position{Offset: 100}, string(row)),
	}
	dl := &loadertest.Rejects{}
	s := &Sink{tables: map[*schema.Table]*tableInfo{}, log: slog.New(slog.DiscardHandler)}
	st, err := s.prepare(t.Context(), loader.NewBatch("s", loader.Position{}, loader.Position{Offset: 200}, recs, dl.Reject))
	if err != nil {
		t.Fatal(err)
	}
	if got := dl.All(); len(got) != 1 || got[0].Pos.Offset != 100 || got[0].Reason != ReasonMalformedRow {
		t.Fatalf("rejected %+v, want only the record made without Decode, as %s", got, ReasonMalformedRow)
	}
	if len(st.groups) != 1 || len(st.groups[0].recs) != 1 {
		t.Fatalf("groups %+v, want one row", st.groups)
	}
	g := st.groups[0]
	got := map[string]any{}
	for c, col := range g.info.cols {
		got[col.Name] = g.row(0)[c]
	}
	want := map[string]any{
		"k": int64(-7), "u": uuid("bad3a155585f47cbbc3e51767d52c2a2"), "s": []byte("a/b"),
		"n": pgtype.Numeric{Int: big.NewInt(1250), Exp: -2, Valid: true}, "ts": time.UnixMilli(1574948156123).UTC(),
		"j": []byte(`{"x":[1]}`),
	}
	for name, w := range want {
		if !equalValue(got[name], w) {
			t.Errorf("%s = %#v, want %#v", name, got[name], w)
		}
	}
}
