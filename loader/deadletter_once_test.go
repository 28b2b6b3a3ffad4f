package loader

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/testenv"
)

// Bad lines are dead-lettered once per line, although the stream reads
// them again: after a sink failure (the pipeline replays from its
// checkpoint, several times) and after a restart from an old checkpoint.
// No Kafka or PostgreSQL: an in-memory sink that fails on demand.
func TestDeadLettersWrittenOncePerLine(t *testing.T) {
	spool := t.TempDir()
	dir := filepath.Join(spool, "api")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	good, bad := 0, 0
	for i := range 300 {
		if i%30 == 7 {
			b.WriteString(`{"table":"ev","row":{"account":1,` + "\n") // malformed
			bad++
			continue
		}
		b.WriteString(evLine(1, good, "dl") + "\n")
		good++
	}
	if err := os.WriteFile(filepath.Join(dir, "0000000000000001-20261206T000000.000Z.ndjson"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	cfg := Config{Dir: spool, StateDir: state, Schema: testSchema(t), PollInterval: 5 * time.Millisecond,
		Batch: BatchConfig{MaxRecords: 25, Linger: time.Millisecond}}

	// Run 1: the sink fails its batches for a while, so the pipeline
	// replays the first lines (and their bad ones) several times.
	sink := newMemSink(t, "mem", false) // the loader's file store keeps its checkpoint
	sink.failing.Store(true)
	l, stop := runLoader(t, cfg, sink.spec())
	failed := func() float64 { return counterValue(t, l.metrics.batchFailed.WithLabelValues("api", "mem")) }
	testenv.Eventually(t, 30*time.Second, func() bool { return failed() >= 3 }, "three failed batches (%v)", failed())
	sink.failing.Store(false)
	testenv.Eventually(t, 30*time.Second, func() bool { return sink.count() == good }, "every good line once the sink works (%d of %d)", sink.count(), good)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnceInOrder(t, "mem", sink.records(), good)
	checkOnce(t, state, bad, "after replays")

	// Run 2: the checkpoint is lost (as after a crash before any save), so
	// every line is read again.
	if err := os.RemoveAll(filepath.Join(state, "checkpoints")); err != nil {
		t.Fatal(err)
	}
	again := newMemSink(t, "mem", false)
	_, stop = runLoader(t, cfg, again.spec())
	testenv.Eventually(t, 30*time.Second, func() bool { return again.count() == good }, "every good line after the restart (%d of %d)", again.count(), good)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkOnce(t, state, bad, "after a restart from an old checkpoint")
}

func checkOnce(t *testing.T, state string, want int, when string) {
	t.Helper()
	dls, err := ReadDeadLetters(state, "api")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, d := range dls {
		seen[fmt.Sprintf("%s:%d", d.File, d.Offset)]++
	}
	for k, n := range seen {
		if n > 1 {
			t.Errorf("%s: dead letter %s written %d times", when, k, n)
		}
	}
	if len(seen) != want {
		t.Errorf("%s: %d lines dead-lettered, want %d", when, len(seen), want)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
