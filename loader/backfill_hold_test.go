package loader

import (
	"context"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/testenv"
)

// holdLines writes one sealed stream of n lines of ~250 bytes, many times
// the span cache of batches of holdBatchBytes.
func holdLines(t *testing.T, n int) string {
	t.Helper()
	dir := writeSealed(t, t.TempDir(), "api", 4, n/4, 13)
	return dir
}

const holdBatchBytes = 16 << 10 // cache: 4 × 16 KiB, spans of 16 KiB

// In a backfill where one sink acknowledges slowly but steadily, the
// pipeline furthest ahead waits for room in the cache instead of evicting
// spans the slow sink has not taken, so every line is read and decoded
// once over a stream ~15 times the cache. The same backfill with HoldFor
// negative (the live loader's behaviour) evicts them and the slow sink
// reads and decodes again: the control shows the setup does outrun the
// cache. Its slow sink holds its batches until the fast one has every
// line (a 5 ms delay alone let it keep up on a loaded CI machine),
// so it is surely behind. No Kafka or PostgreSQL: in-memory sinks.
func TestBackfillSlowSinkTakesEverySpanFromTheCache(t *testing.T) {
	const n = 4000
	dir := holdLines(t, n)
	run := func(t *testing.T, holdFor time.Duration) StreamStats {
		fast := newMemSink(t, "fast", true)
		var slow *memSink
		slowSpec := SinkSpec{MaxInFlight: 4}
		if holdFor >= 0 {
			slow = newMemSink(t, "slow", false)
			// 20 ms a batch (2 s in all): 5 ms let the slow sink keep up
			// with the reader on a loaded CI machine, and nothing waited.
			slow.async, slow.delay = true, 20*time.Millisecond
			slowSpec.Sink = slow
		} else {
			gate := newGateSink(t, "slow")
			slow, slowSpec.Sink = gate.memSink, gate
			released := make(chan struct{})
			defer func() { <-released }()
			go func() {
				defer close(released)
				deadline := time.Now().Add(time.Minute)
				for fast.count() < n && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond) // a poll: the fast sink has no event to wait on
				}
				gate.release()
			}()
		}
		cfg := BackfillConfig{Streams: mustResolve(t, dir), Schema: testSchema(t), StateDir: t.TempDir(), HoldFor: holdFor,
			Batch: BatchConfig{MaxRecords: 40, MaxBytes: holdBatchBytes, Linger: time.Millisecond}}
		b, err := runBackfill(t, context.Background(), cfg, fast.spec(), slowSpec)
		if err != nil {
			t.Fatal(err)
		}
		checkExactlyOnceInOrder(t, "fast", fast.records(), n)
		checkExactlyOnceInOrder(t, "slow", slow.records(), n)
		st := b.Stats().Streams["api"]
		t.Logf("stats: %+v", st)
		if st.CachePeakBytes > st.CacheLimitBytes || st.CacheLimitBytes != 4*holdBatchBytes {
			t.Errorf("cache peak %d bytes over its bound %d (want 4 × %d)", st.CachePeakBytes, st.CacheLimitBytes, holdBatchBytes)
		}
		return st
	}
	t.Run("hold", func(t *testing.T) {
		st := run(t, 0) // DefaultHoldFor
		if st.LinesRead != n || st.LinesDecoded != n {
			t.Errorf("lines read %d, decoded %d; want %d each: the slow sink read spans again", st.LinesRead, st.LinesDecoded, n)
		}
		if st.PrivateReads != 0 || st.EvictedUntaken != 0 {
			t.Errorf("%d private reads, %d spans evicted untaken; want 0 while the slow sink progresses", st.PrivateReads, st.EvictedUntaken)
		}
		if st.RoomWaits == 0 || st.RoomWaited <= 0 {
			t.Errorf("the reader never waited for room (%d waits, %v): the slow sink did not fall a cache behind", st.RoomWaits, st.RoomWaited)
		}
	})
	t.Run("control", func(t *testing.T) {
		st := run(t, -1)
		if st.EvictedUntaken == 0 || st.PrivateReads == 0 || st.LinesDecoded <= n {
			t.Errorf("without HoldFor: %d spans evicted untaken, %d private reads, %d decodes of %d lines; want the slow sink to fall behind the cache",
				st.EvictedUntaken, st.PrivateReads, st.LinesDecoded, n)
		}
		if st.RoomWaits != 0 {
			t.Errorf("%d waits for room with HoldFor negative", st.RoomWaits)
		}
	})
}

// A sink that takes two batches and then never acknowledges holds the
// other back for no more than HoldFor: the other finishes every line
// while the stuck one has not, the spans it missed are evicted (it reads
// them from disk once released) and the cache stays within its bound. No
// Kafka or PostgreSQL: in-memory sinks.
func TestBackfillStuckSinkDoesNotHoldTheOthers(t *testing.T) {
	const n = 4000
	dir := holdLines(t, n)
	stuck := newGateSink(t, "stuck")
	fast := newMemSink(t, "fast", false)
	const holdFor = 300 * time.Millisecond
	cfg := BackfillConfig{Streams: mustResolve(t, dir), Schema: testSchema(t), StateDir: t.TempDir(), HoldFor: holdFor,
		Batch: BatchConfig{MaxRecords: 40, MaxBytes: holdBatchBytes, Linger: time.Millisecond}}
	b, err := NewBackfill(cfg, SinkSpec{Sink: stuck, MaxInFlight: 2}, fast.spec())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()

	testenv.Eventually(t, 60*time.Second, func() bool { return fast.count() == n },
		"the fast sink gets every line while the other is stuck (%d of %d)", fast.count(), n)
	if got := len(stuck.records()); got != 0 {
		t.Fatalf("the stuck sink stored %d records before it was released", got)
	}
	pr := b.Progress()
	if pr.Complete {
		t.Fatalf("backfill complete while a sink holds its batches: %+v", pr)
	}
	st := b.Stats().Streams["api"]
	t.Logf("stats while stuck: %+v", st)
	if st.CachePeakBytes > st.CacheLimitBytes {
		t.Errorf("cache peak %d bytes over its bound %d", st.CachePeakBytes, st.CacheLimitBytes)
	}
	if st.EvictedUntaken == 0 {
		t.Errorf("no span evicted before the stuck sink had it: the fast sink cannot have finished %d lines through a %d-byte cache", n, st.CacheLimitBytes)
	}

	stuck.release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the backfill did not finish within 60s of releasing the stuck sink")
	}
	checkExactlyOnceInOrder(t, "stuck", stuck.records(), n)
	checkExactlyOnceInOrder(t, "fast", fast.records(), n)
	if st := b.Stats().Streams["api"]; st.PrivateReads == 0 || st.LinesDecoded <= n {
		t.Errorf("the released sink read no span from disk (%d private reads, %d decodes of %d lines)", st.PrivateReads, st.LinesDecoded, n)
	}
}
