package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/testenv"
)

// `ingest run --trace-acks` times every record gen wrote, for each sink,
// and `ingest dev latency-report` summarizes the trace
// (scripts/bench-latency's method).
func TestRunTraceAcksAndLatencyReport(t *testing.T) {
	e := newE2EEnv(t, 2)
	e.configure(t, e.config("all"))
	trace := filepath.Join(e.dir, "acks.tsv")
	run, _ := start(t, "run", "--config", e.cfgPath, "--trace-acks", trace)

	const lines = 1500
	ingestOK(t, "gen", "--dir", e.spool, "--rate", "3000", "--count", strconv.Itoa(lines), "--accounts", "50", "--size", "300")
	testenv.Eventually(t, 60*time.Second, func() bool { return statusLag(t, e.cfgPath) == 0 }, "both sinks caught up")
	stop(t, run)

	data, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), "\n"); n != 2*lines {
		t.Errorf("trace has %d lines, want one per record and sink: %d", n, 2*lines)
	}
	out, code := ingest(t, "dev", "latency-report", trace)
	if code != 0 {
		t.Fatalf("latency-report: %d %s", code, out)
	}
	rows := strings.Split(strings.TrimSpace(out), "\n")
	if len(rows) != 3 || !strings.HasPrefix(rows[0], "SINK") {
		t.Fatalf("latency-report:\n%s", out)
	}
	for i, sink := range []string{"db", "kafka"} {
		f := strings.Fields(rows[i+1])
		if len(f) != 6 || f[0] != sink || f[1] != strconv.Itoa(lines) {
			t.Fatalf("row for %s: %q (want %s, %d records)", sink, rows[i+1], sink, lines)
		}
		p50, _ := strconv.ParseFloat(f[2], 64)
		maxMS, _ := strconv.ParseFloat(f[5], 64)
		if !(p50 > 0 && p50 <= maxMS && maxMS < 60_000) {
			t.Errorf("%s: p50 %v ms, max %v ms: not a latency", sink, p50, maxMS)
		}
	}
	if out, code := ingest(t, "dev", "latency-report", filepath.Join(e.dir, "missing")); code == 0 {
		t.Errorf("latency-report of a missing file exits 0: %s", out)
	}
}
