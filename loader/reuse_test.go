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

// snapshotSink keeps every batch it was given and, only when it acks (from
// its own goroutine, a while after Submit returned), checks that the
// records still hold the bytes they had at Submit. The loader reuses a
// batch's memory once the batch is acked; reusing it any earlier would
// change bytes a sink is still sending.
type snapshotSink struct {
	mu      sync.Mutex
	changed []string
	lines   int
	pending chan func()
	done    chan struct{}
}

func (s *snapshotSink) Name() string { return "snap" }

func (s *snapshotSink) Submit(_ context.Context, b *Batch, ack func(error)) error {
	want := make([][]byte, len(b.Records))
	for i, r := range b.Records {
		want[i] = bytes.Clone(r.Line)
	}
	s.pending <- func() {
		time.Sleep(2 * time.Millisecond) // the loader fills the next batches meanwhile
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

func TestBatchMemoryReusedOnlyAfterAck(t *testing.T) {
	spool := t.TempDir()
	w, err := rotatefile.Open(rotatefile.Options{Dir: spool, Stream: "api"})
	if err != nil {
		t.Fatal(err)
	}
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
	s := &snapshotSink{pending: make(chan func(), 16), done: make(chan struct{})}
	go s.run()
	defer func() { close(s.pending); <-s.done }()
	_, stop := runLoader(t, Config{Dir: spool, Schema: testSchema(t), Batch: BatchConfig{MaxRecords: 100, Linger: time.Millisecond}},
		SinkSpec{Sink: s, MaxInFlight: 4})
	testenv.Eventually(t, 60*time.Second, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.lines >= n }, "all %d lines acked", n)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.changed) > 0 {
		t.Fatalf("%d records changed between Submit and ack, e.g. %v", len(s.changed), s.changed[:min(3, len(s.changed))])
	}
}
