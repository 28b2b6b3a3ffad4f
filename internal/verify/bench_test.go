package verify_test

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/backfill"
	"github.com/dualwrite/ingest/internal/dbtest"
	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/internal/verify"
)

// TestVerifyThroughput times a verify of a whole topic (no window), the
// read that one-batch fetches could slow down most. It only runs with
// INGEST_BENCH=1; docs/benchmarks.md has the figures and the A/B method:
//
//	INGEST_BENCH=1 go test -run TestVerifyThroughput -v -timeout 30m ./internal/verify/
//
// VERIFY_BENCH_MESSAGES (default 200000) sets the topic's size,
// VERIFY_BENCH_BATCH the producer's batch.num.messages (default: the
// sink's, 10,000 per batch and linger.ms=10), VERIFY_BENCH_RUNS (3) how
// many verifies to time. Real broker: throughput on the mock would say
// nothing about fetching from a broker.
func TestVerifyThroughput(t *testing.T) {
	if os.Getenv("INGEST_BENCH") == "" {
		t.Skip("set INGEST_BENCH=1 to time a verify of a whole topic")
	}
	n, runs := loadertest.EnvInt(t, "VERIFY_BENCH_MESSAGES", 200000), loadertest.EnvInt(t, "VERIFY_BENCH_RUNS", 3)
	e := &env{pg: testenv.Postgres(t), spool: t.TempDir()}
	e.bootstrap, e.topic = realTopic(t)
	props := ""
	if b := os.Getenv("VERIFY_BENCH_BATCH"); b != "" {
		props = fmt.Sprintf("batch.num.messages: %q", b)
	}
	cfg := e.configWith(t, "all", "", props)
	dbtest.Migrate(t, e.pg.URL(), cfg)
	rnd := make([]byte, 750) // ~1 KB rows that lz4 cannot shrink much
	rand.Read(rnd)
	e.body = base64.StdEncoding.EncodeToString(rnd)
	e.archive = e.writeLines(t, "api", t0, n, 100, 0)
	start := time.Now()
	if _, err := backfill.Run(testenv.Context(t, 20*time.Minute), cfg, backfill.Options{Paths: []string{e.archive}}); err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded %d rows into both sinks in %v", n, time.Since(start).Round(time.Millisecond))

	var rates []float64
	for i := range runs {
		rep, err := verify.Run(testenv.Context(t, 20*time.Minute), cfg, verify.Options{Table: "raw_item"})
		if err != nil || !rep.OK || rep.Messages != int64(n) {
			t.Fatalf("run %d: err %v, ok %v, %d messages read of %d", i+1, err, rep != nil && rep.OK, rep.Messages, n)
		}
		var fetched int64
		for _, p := range rep.Reads {
			fetched += p.Fetched
		}
		rate := float64(n) / rep.Elapsed.Seconds()
		rates = append(rates, rate)
		t.Logf("run %d: %d messages in %v: %.0f messages/s (fetched %d)", i+1, n, rep.Elapsed.Round(time.Millisecond), rate, fetched)
	}
	slices.Sort(rates)
	median := (rates[(len(rates)-1)/2] + rates[len(rates)/2]) / 2
	t.Logf("verify of %d messages (batch.num.messages %q): median %.0f messages/s of %d runs %.0f", n, os.Getenv("VERIFY_BENCH_BATCH"), median, runs, rates)
}
