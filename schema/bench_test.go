package schema

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchLines returns n realistic offline lines of the raw_item table that
// `ingest gen` writes and examples/ configure: a ~2 KB
// base64 body (zlib output is incompressible, so random bytes are a fair
// stand-in), varying accounts and uuids. With phpEscapes the slashes in the
// body are written as \/ the way PHP's json_encode does by default.
func benchLines(n int, phpEscapes bool) [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	lines := make([][]byte, n)
	raw := make([]byte, 1536) // 2048 base64 characters
	for i := range lines {
		for j := range raw {
			raw[j] = byte(r.Uint32())
		}
		body := base64.StdEncoding.EncodeToString(raw)
		if phpEscapes {
			body = string(bytes.ReplaceAll([]byte(body), []byte("/"), []byte(`\/`)))
		}
		lines[i] = fmt.Appendf(nil,
			`{"table":"raw_item","row":{"project_id":%d,"timestamp":%d,"body":"%s","version":2,"billable":1,"uuid":"%08x-%04x-4%03x-b%03x-%012x"},"counter":%d}`+"\n",
			r.IntN(100000), 1574948156+i, body, r.Uint32(), r.Uint32()&0xffff, r.Uint32()&0xfff, r.Uint32()&0xfff, r.Uint64()&0xffffffffffff, i)
	}
	return lines
}

func benchSchema(tb testing.TB) *Schema {
	s, err := New(map[string]*Table{"raw_item": {
		Key: "project_id", ID: "uuid", Time: "timestamp",
		Columns: map[string]string{"project_id": "bigint", "timestamp": "bigint", "body": "text",
			"version": "integer", "billable": "integer", "uuid": "uuid"},
	}})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// BenchmarkDecode measures Decode on ~2.2 KB lines; lines/s is the figure
// that matters (target: 500,000 on one core, go test -bench Decode -cpu 1).
func BenchmarkDecode(b *testing.B) {
	for _, php := range []bool{false, true} {
		name := "plain"
		if php {
			name = "php_escaped_slashes"
		}
		b.Run(name, func(b *testing.B) { benchDecodeLines(b, php, (*Schema).Decode) })
	}
}

// benchDecodeLines times decode over benchLines' lines (with PHP's
// escaped slashes when php is set) and reports bytes, allocations, CPU
// and lines/s, so that every decoder compared with Decode is timed the
// same way.
func benchDecodeLines(b *testing.B, php bool, decode func(*Schema, []byte, string) (Record, error)) {
	s := benchSchema(b)
	lines := benchLines(1024, php)
	var total int
	for _, l := range lines {
		total += len(l)
	}
	b.SetBytes(int64(total / len(lines)))
	b.ReportAllocs()
	cpu := startCPU()
	for i := 0; b.Loop(); i++ {
		if _, err := decode(s, lines[i%len(lines)], ""); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}
