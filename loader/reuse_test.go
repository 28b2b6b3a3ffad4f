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
