package loader

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/rotatefile"
)

// With two sinks keeping pace, each line is read from disk and decoded
// once, and both sinks get every record in order. The lines are appended
// while the loader tails, in several bursts, so the pipelines meet at the
// end of the active file again and again. The whole stream fits in the
// cache, so however the scheduler runs the two pipelines neither falls
// behind it: "keeping pace" holds by construction, and any second read
// or decode is the bug this test is about. No Kafka or PostgreSQL: two
// in-memory sinks, one keeping its own checkpoint, one in the file store.
func TestTwoSinksReadAndDecodeEachLineOnce(t *testing.T) {
	spool, w := openWriter(t, rotatefile.Options{})
	a, b := newMemSink(t, "a", true), newMemSink(t, "b", false)
	b.async = true
	l, stop := runLoader(t, Config{Dir: spool, Schema: testSchema(t), PollInterval: 5 * time.Millisecond,
		Batch: BatchConfig{MaxRecords: 64, Linger: time.Millisecond}}, a.spec(), b.spec())
	const n, bursts = 6000, 6
	for i := range n {
		if err := w.Append([]byte(evLine(i%13, i, "once"))); err != nil {
			t.Fatal(err)
		}
		if (i+1)%(n/bursts) == 0 {
			seen := i + 1
			testenv.Eventually(t, 60*time.Second, func() bool { return a.count() >= seen && b.count() >= seen },
				"both sinks have the first %d lines (a %d, b %d)", seen, a.count(), b.count())
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnceInOrder(t, "a", a.records(), n)
	checkExactlyOnceInOrder(t, "b", b.records(), n)
	st := l.Stats().Streams["api"]
	t.Logf("stats: %+v", st)
	if st.LinesRead != n || st.LinesDecoded != n {
		t.Fatalf("lines read from disk %d, decoded %d; want %d each (once for both sinks)", st.LinesRead, st.LinesDecoded, n)
	}
	if st.SegmentsShared == 0 || st.LinesShared != n {
		t.Fatalf("segments shared %d holding %d lines; want every one of the %d lines taken from the cache by the second sink", st.SegmentsShared, st.LinesShared, n)
	}
	if st.PrivateReads != 0 {
		t.Fatalf("%d spans read outside the cache, want 0 while both keep pace", st.PrivateReads)
	}
	if st.CacheBytes != 0 {
		t.Fatalf("the cache still holds %d bytes that both sinks have had", st.CacheBytes)
	}
}

// gateSink holds every batch without acknowledging it until opened; then it
// stores what it holds, in order, and acks it, and every later batch at once.
type gateSink struct {
	*memSink // what it stored
	gate     sync.Mutex
	open     bool
	held     []heldBatch
}

func newGateSink(tb testing.TB, name string) *gateSink {
	return &gateSink{memSink: newMemSink(tb, name, false)}
}

type heldBatch struct {
	b   *Batch
	ack func(error)
}

func (s *gateSink) Submit(_ context.Context, b *Batch, ack func(error)) error {
	s.gate.Lock()
	if !s.open {
		s.held = append(s.held, heldBatch{b, ack})
		s.gate.Unlock()
		return nil
	}
	s.store(b.Stream, b.End, b.Records)
	s.gate.Unlock()
	ack(nil)
	return nil
}

// release stores the held batches before any later one can arrive (the
// acks below let the pipeline submit more), then acknowledges them.
func (s *gateSink) release() {
	s.gate.Lock()
	s.open = true
	held := s.held
	s.held = nil
	for _, h := range held {
		s.store(h.b.Stream, h.b.End, h.b.Records)
	}
	s.gate.Unlock()
	for _, h := range held {
		h.ack(nil)
	}
}

func (s *gateSink) heldBatches() int {
	s.gate.Lock()
	defer s.gate.Unlock()
	return len(s.held)
}

// One sink never acknowledges while the other loads a stream many times
// the cache's bound: the other gets everything, the cache never holds more
// than its bound, and the bad lines are dead-lettered at once although the
// stuck sink is the first one (which alone wrote dead letters before).
// Released, the stuck sink re-reads from disk what the cache evicted and
// gets everything too; no dead letter is written twice. No Kafka or
// PostgreSQL: in-memory sinks.
func TestBlockedSinkDoesNotHoldBackTheOther(t *testing.T) {
	spool := t.TempDir()
	data, good, bad := evLinesWithBad(6000, 500, 250, 11, strings.Repeat("x", 150))
	writeStreamFile(t, spool, "api", firstFile, data)
	state := t.TempDir()
	stuck := newGateSink(t, "stuck")
	fast := newMemSink(t, "fast", false)
	const maxBytes = 16 << 10
	l, stop := runLoader(t, Config{Dir: spool, StateDir: state, Schema: testSchema(t), PollInterval: 5 * time.Millisecond,
		Batch: BatchConfig{MaxRecords: 40, MaxBytes: maxBytes, Linger: time.Millisecond}},
		SinkSpec{Sink: stuck, MaxInFlight: 2}, fast.spec())

	testenv.Eventually(t, 60*time.Second, func() bool { return fast.count() == good },
		"the fast sink gets every good line while the other is stuck (%d of %d)", fast.count(), good)
	st := l.Stats().Streams["api"]
	t.Logf("stuck: %+v", st)
	if int64(len(data)) < 10*int64(st.CacheLimitBytes) {
		t.Fatalf("the stream (%d bytes) should be many times the cache bound (%d)", len(data), st.CacheLimitBytes)
	}
	if st.CacheLimitBytes != cacheBatches*maxBytes || st.CachePeakBytes > st.CacheLimitBytes || st.CachePeakBytes == 0 {
		t.Fatalf("cache peak %d bytes, bound %d; want 0 < peak <= bound = %d", st.CachePeakBytes, st.CacheLimitBytes, cacheBatches*maxBytes)
	}
	if h := stuck.heldBatches(); h > 2 {
		t.Fatalf("the stuck sink holds %d batches, more than its MaxInFlight 2", h)
	}
	if n := len(readDeadLetters(t, state, "api")); n != bad {
		t.Fatalf("%d dead letters while the first sink is stuck, want %d", n, bad)
	}

	stuck.release()
	testenv.Eventually(t, 60*time.Second, func() bool { return len(stuck.records()) >= good },
		"the released sink catches up (%d of %d)", len(stuck.records()), good)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnceInOrder(t, "fast", fast.records(), good)
	checkExactlyOnceInOrder(t, "stuck", stuck.records(), good)
	st = l.Stats().Streams["api"]
	t.Logf("after: %+v", st)
	if st.PrivateReads == 0 || st.LinesRead <= int64(good+bad) {
		t.Fatalf("the released sink should have re-read evicted spans from disk: %+v", st)
	}
	if st.CachePeakBytes > st.CacheLimitBytes {
		t.Fatalf("cache peak %d bytes over its bound %d", st.CachePeakBytes, st.CacheLimitBytes)
	}
	if n := len(readDeadLetters(t, state, "api")); n != bad {
		t.Fatalf("%d dead letters after the re-read, want %d (once each)", n, bad)
	}
}

// snapshotSink keeps every batch it was given and, only when it acks (from
// its own goroutine, a while after Submit returned), checks that the
// records still hold the bytes they had at Submit. The loader reuses a
// batch's memory once the batch is acked; reusing it any earlier would
// change bytes a sink is still sending.
type snapshotSink struct {
	name    string
	mu      sync.Mutex
	changed []string
	lines   int
	pending chan func()
	delay   time.Duration // between Submit and the check and ack
	done    chan struct{}
}

func (s *snapshotSink) Name() string { return s.name }

func (s *snapshotSink) Submit(_ context.Context, b *Batch, ack func(error)) error {
	want := make([][]byte, len(b.Records))
	for i, r := range b.Records {
		want[i] = bytes.Clone(r.Line)
	}
	s.pending <- func() {
		time.Sleep(s.delay) // the loader fills the next batches meanwhile
		s.mu.Lock()
		for i, r := range b.Records {
			if !bytes.Equal(r.Line, want[i]) || !bytes.Contains(r.Line, r.Row) {
				s.changed = append(s.changed, fmt.Sprintf("batch %d record %d at %s", b.Seq, i, r.Pos))
			}
		}
		s.lines += len(b.Records)
		s.mu.Unlock()
		ack(nil)
	}
	return nil
}

func (s *snapshotSink) run() {
	defer close(s.done)
	for f := range s.pending {
		f()
	}
}

// With two sinks the lines' memory (a segment both pipelines' batches
// point into) is reused only once both have acked: the sinks ack at
// different paces, so a count that let go after the first ack would show.
func TestBatchMemoryReusedOnlyAfterAck(t *testing.T) {
	for _, sinks := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d sinks", sinks), func(t *testing.T) { testBatchMemoryReused(t, sinks) })
	}
}

func testBatchMemoryReused(t *testing.T, nsinks int) {
	spool, w := openWriter(t, rotatefile.Options{})
	// Lines of ~20 KB: a 1 MiB arena chunk holds about 50, so every batch
	// spans several chunks and the spare list is used and refilled all
	// along.
	const n = 1500
	pad := strings.Repeat("p", 20<<10)
	for i := range n {
		if err := w.Append([]byte(evLine(i%7, i, pad[:len(pad)-i%1000]))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var sinks []*snapshotSink
	var specs []SinkSpec
	for i := range nsinks {
		s := &snapshotSink{name: fmt.Sprintf("snap%d", i), pending: make(chan func(), 16), done: make(chan struct{}), delay: time.Duration(2+3*i) * time.Millisecond}
		go s.run()
		defer func() { close(s.pending); <-s.done }()
		sinks = append(sinks, s)
		specs = append(specs, SinkSpec{Sink: s, MaxInFlight: 4})
	}
	_, stop := runLoader(t, Config{Dir: spool, Schema: testSchema(t), Batch: BatchConfig{MaxRecords: 100, Linger: time.Millisecond}}, specs...)
	for _, s := range sinks {
		testenv.Eventually(t, 60*time.Second, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.lines >= n }, "all %d lines acked by %s", n, s.name)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, s := range sinks {
		s.mu.Lock()
		if len(s.changed) > 0 {
			t.Errorf("%s: %d records changed between Submit and ack, e.g. %v", s.name, len(s.changed), s.changed[:min(3, len(s.changed))])
		}
		s.mu.Unlock()
	}
}
