package acktrace_test

import (
	"fmt"
	"strings"

	"github.com/dualwrite/ingest/internal/acktrace"
)

// A trace as `ingest run --trace-acks FILE` writes it, summarized per sink.
func ExampleReadSummaries() {
	trace := "db\t120000000\nkafka\t15000000\ndb\t80000000\nkafka\t9000000\nkafka\t21000000\n"
	sums, err := acktrace.ReadSummaries(strings.NewReader(trace))
	if err != nil {
		panic(err)
	}
	for _, s := range sums {
		fmt.Printf("%s: %d records, p50 %v, p99 %v, max %v\n", s.Sink, s.Count, s.P50, s.P99, s.Max)
	}
	// Output:
	// db: 2 records, p50 80ms, p99 120ms, max 120ms
	// kafka: 3 records, p50 15ms, p99 21ms, max 21ms
}
