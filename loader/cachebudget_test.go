package loader

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/testenv"
)

// Six streams share Config.CacheBytes: with one sink stuck (so every
// stream's cache fills to its bound) and the other taking everything,
// each stream's cache stays within an equal share and all of them
// together within the budget, where each alone used to keep 4 ×
// Batch.MaxBytes whatever the number of streams. No Kafka or PostgreSQL:
// in-memory sinks.
func TestCacheBudgetIsSharedByStreams(t *testing.T) {
	spool := t.TempDir()
	const streams, lines, maxBytes = 6, 1000, 16 << 10
	const budget = streams * maxBytes // a quarter of the 4 batches each stream would keep
	pad := strings.Repeat("c", 150)
	streamBytes := writeStreams(t, spool, streams, lines, pad)
	stuck := newGateSink(t, "stuck")
	fast := newMemSink(t, "fast", false)
	l, stop := runLoader(t, Config{Dir: spool, Schema: testSchema(t), PollInterval: 5 * time.Millisecond, CacheBytes: budget,
		Batch: BatchConfig{MaxRecords: 40, MaxBytes: maxBytes, Linger: time.Millisecond}},
		SinkSpec{Sink: stuck, MaxInFlight: 2}, fast.spec())

	testenv.Eventually(t, 60*time.Second, func() bool { return fast.count() == streams*lines },
		"the fast sink gets every line of every stream while the other is stuck (%d of %d)", fast.count(), streams*lines)
	stats := l.Stats().Streams
	if len(stats) != streams {
		t.Fatalf("%d streams in Stats, want %d", len(stats), streams)
	}
	share, sum := budget/streams, 0
	if streamBytes < 10*share {
		t.Fatalf("a stream (%d bytes) should be many times its share (%d)", streamBytes, share)
	}
	for name, st := range stats {
		if st.CacheLimitBytes != share || st.CachePeakBytes > share || st.CachePeakBytes == 0 {
			t.Errorf("stream %s: cache peak %d bytes, bound %d; want 0 < peak <= bound = %d (Config.CacheBytes %d / %d streams)",
				name, st.CachePeakBytes, st.CacheLimitBytes, share, budget, streams)
		}
		sum += st.CachePeakBytes
	}
	if sum > budget {
		t.Errorf("the streams' cache peaks add up to %d bytes, over Config.CacheBytes %d", sum, budget)
	}

	stuck.release()
	testenv.Eventually(t, 60*time.Second, func() bool { return len(stuck.records()) >= streams*lines },
		"the released sink catches up (%d of %d)", len(stuck.records()), streams*lines)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestCacheBudgetHeap measures the Go heap in use of a loader with 8
// streams of 40 MB, one sink stuck and the other taking everything, under
// the default Config.CacheBytes and under the former bound (each stream
// 4 × Batch.MaxBytes, i.e. CacheBytes = 8 × 16 MiB), alternating, three
// rounds. A measurement, not a check: it runs only with INGEST_BENCH=1
// and logs RESULT lines (docs/benchmarks.md, memory). No Kafka or
// PostgreSQL: a counting sink and a sink that holds its batches.
func TestCacheBudgetHeap(t *testing.T) {
	if os.Getenv("INGEST_BENCH") != "1" {
		t.Skip("a measurement: run with INGEST_BENCH=1")
	}
	spool := t.TempDir()
	const streams, lines = 8, 20000
	pad := strings.Repeat("m", 1900)
	writeStreams(t, spool, streams, lines, pad)
	run := func(cacheBytes int) (cached int, heap uint64) {
		stuck := newGateSink(t, "stuck")
		fast := &countSink{name: "fast"}
		state := t.TempDir()
		l, stop := runLoader(t, Config{Dir: spool, StateDir: state, Schema: testSchema(t), CacheBytes: cacheBytes},
			SinkSpec{Sink: stuck, MaxInFlight: 2}, SinkSpec{Sink: fast, MaxInFlight: 4})
		testenv.Eventually(t, 120*time.Second, func() bool { return fast.n.Load() == streams*lines },
			"the counting sink gets every line (%d of %d)", fast.n.Load(), streams*lines)
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		for _, st := range l.Stats().Streams {
			cached += st.CacheBytes
		}
		stuck.release()
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		return cached, ms.HeapInuse
	}
	for round := range 3 {
		for _, c := range []struct {
			name  string
			bytes int
		}{{"budget (default CacheBytes)", 0}, {"former per-stream bound", streams * cacheBatches * DefaultMaxBytes}} {
			cached, heap := run(c.bytes)
			t.Logf("RESULT round %d, %s: caches hold %.1f MiB, heap in use %.1f MiB", round+1, c.name, float64(cached)/(1<<20), float64(heap)/(1<<20))
		}
	}
}

// writeStreams writes streams sealed files of lines lines each (stream
// directories sa, sb, ...) and returns one file's size.
func writeStreams(t *testing.T, spool string, streams, lines int, pad string) (fileBytes int) {
	t.Helper()
	data := evLines(0, lines, 1, pad)
	for s := range streams {
		writeStreamFile(t, spool, "s"+string(rune('a'+s)), firstFile, data)
	}
	return len(data)
}
