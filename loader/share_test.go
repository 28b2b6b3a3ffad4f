package loader

import (
	"context"
	"os"
	"path/filepath"
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
	spool := t.TempDir()
	w, err := rotatefile.Open(rotatefile.Options{Dir: spool, Stream: "api"})
	if err != nil {
		t.Fatal(err)
	}
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
	name string
	mu   sync.Mutex
	open bool
	held []heldBatch
	recs []got
}

type heldBatch struct {
	b   *Batch
	ack func(error)
}

func (s *gateSink) Name() string { return s.name }

func (s *gateSink) Submit(_ context.Context, b *Batch, ack func(error)) error {
	s.mu.Lock()
	if !s.open {
		s.held = append(s.held, heldBatch{b, ack})
		s.mu.Unlock()
		return nil
	}
	s.storeLocked(b)
	s.mu.Unlock()
	ack(nil)
	return nil
}

func (s *gateSink) storeLocked(b *Batch) {
	for _, r := range b.Records {
		s.recs = append(s.recs, parseGot(r))
	}
}

// release stores the held batches before any later one can arrive (the
// acks below let the pipeline submit more), then acknowledges them.
func (s *gateSink) release() {
	s.mu.Lock()
	s.open = true
	held := s.held
	s.held = nil
	for _, h := range held {
		s.storeLocked(h.b)
	}
	s.mu.Unlock()
	for _, h := range held {
		h.ack(nil)
	}
}

func (s *gateSink) records() []got {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]got(nil), s.recs...)
}

func (s *gateSink) heldBatches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
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
	dir := filepath.Join(spool, "api")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	good, bad := 0, 0
	pad := strings.Repeat("x", 150)
	for i := range 6000 {
		if i%500 == 250 {
			sb.WriteString(`{"table":"ev","row":{"account":` + "\n") // malformed
			bad++
			continue
		}
		sb.WriteString(evLine(good%11, good, pad) + "\n")
		good++
	}
	if err := os.WriteFile(filepath.Join(dir, "0000000000000001-20261206T000000.000Z.ndjson"), []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	stuck := &gateSink{name: "stuck"}
	fast := newMemSink(t, "fast", false)
	const maxBytes = 16 << 10
	l, stop := runLoader(t, Config{Dir: spool, StateDir: state, Schema: testSchema(t), PollInterval: 5 * time.Millisecond,
		Batch: BatchConfig{MaxRecords: 40, MaxBytes: maxBytes, Linger: time.Millisecond}},
		SinkSpec{Sink: stuck, MaxInFlight: 2}, fast.spec())

	testenv.Eventually(t, 60*time.Second, func() bool { return fast.count() == good },
		"the fast sink gets every good line while the other is stuck (%d of %d)", fast.count(), good)
	st := l.Stats().Streams["api"]
	t.Logf("stuck: %+v", st)
	if int64(len(sb.String())) < 10*int64(st.CacheLimitBytes) {
		t.Fatalf("the stream (%d bytes) should be many times the cache bound (%d)", len(sb.String()), st.CacheLimitBytes)
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
