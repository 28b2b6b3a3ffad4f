package schema

import (
	"encoding/json"
	"testing"

	"github.com/bytedance/sonic"
	"github.com/bytedance/sonic/ast"
)

// BenchmarkAlternatives measures other ways to get the same result on the
// same lines as BenchmarkDecode, to keep the choice of a hand-written
// tokenizer honest (see doc.go). None of them does all Decode does.
func BenchmarkAlternatives(b *testing.B) {
	lines := benchLines(1024, false)
	b.Run("sonic_Valid", func(b *testing.B) { // validation only
		for i := 0; b.Loop(); i++ {
			if !sonic.Valid(lines[i%len(lines)]) {
				b.Fatal("invalid")
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
	})
	b.Run("sonic_Searcher_key", func(b *testing.B) { // one field, no validation of the rest
		for i := 0; b.Loop(); i++ {
			n, err := ast.NewSearcher(string(lines[i%len(lines)])).GetByPath("row", "project_id")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := n.Int64(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
	})
	b.Run("sonic_Unmarshal_struct", func(b *testing.B) { // typed decode of every field
		type row struct {
			ProjectID int64  `json:"project_id"`
			Timestamp int64  `json:"timestamp"`
			Body      string `json:"body"`
			Version   int32  `json:"version"`
			Billable  int32  `json:"billable"`
			UUID      string `json:"uuid"`
		}
		var v struct {
			Table   string          `json:"table"`
			Row     json.RawMessage `json:"row"`
			Counter int64           `json:"counter"`
		}
		var r row
		for i := 0; b.Loop(); i++ {
			if err := sonic.Unmarshal(lines[i%len(lines)], &v); err != nil {
				b.Fatal(err)
			}
			if err := sonic.Unmarshal(v.Row, &r); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
	})
}
