package dbsink

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/loader"
)

// SetCheckpoint moves a stream's checkpoint backwards (a replay: the
// next batch loads lines behind the old checkpoint again) and forwards
// (the next batch skips what lies before it).
func TestSetCheckpointRepositionsStream(t *testing.T) {
	t.Parallel()
	e := newSinkEnv(t, seqSchema(t), true)
	sch, s, conn, ctx := e.sch, e.sink, e.conn, e.ctx
	f := newLineFile("000001", seqLines(30, "z"))
	if err := submit(t, ctx, s, f.batch(t, sch, "s", 0, 10)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetCheckpoint(ctx, "s", f.pos[5]); err != nil {
		t.Fatal(err)
	}
	if cp := checkpointOf(t, s, "s"); cp != f.pos[5] {
		t.Fatalf("checkpoint %v after SetCheckpoint, want %v", cp, f.pos[5])
	}
	if err := submit(t, ctx, s, f.batch(t, sch, "s", 0, 10)); err != nil {
		t.Fatal(err)
	}
	// Lines 5-9 loaded again (plain has no id: a replay repeats them).
	if n := queryInt(t, conn, `SELECT count(*) FROM plain WHERE seq BETWEEN 5 AND 9`); n != 2*3 {
		t.Errorf("plain rows of lines 5-9: %d, want 6 (3 lines, loaded twice)", n)
	}
	if err := s.SetCheckpoint(ctx, "s", f.pos[20]); err != nil {
		t.Fatal(err)
	}
	if err := submit(t, ctx, s, f.batch(t, sch, "s", 10, 30)); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, conn, `SELECT count(*) FROM plain WHERE seq BETWEEN 10 AND 19`); n != 0 {
		t.Errorf("plain rows of lines 10-19, before the checkpoint set forward: %d, want 0", n)
	}
	if cp := checkpointOf(t, s, "s"); cp != f.pos[30] {
		t.Fatalf("checkpoint %v, want %v", cp, f.pos[30])
	}
	// A stream never seen gets its row.
	if err := s.SetCheckpoint(ctx, "new", loader.Position{Offset: 42}); err != nil {
		t.Fatal(err)
	}
	if cp := checkpointOf(t, s, "new"); cp != (loader.Position{Offset: 42}) {
		t.Fatalf("checkpoint of a new stream %v, want offset 42", cp)
	}
}

// After a batch abandoned by its context, Drain returns once the sink
// forgot it, and the stream's next batch loads instead of failing behind
// the abandoned one.
func TestDrainAfterAbandonedBatch(t *testing.T) {
	t.Parallel()
	e := newSinkEnv(t, seqSchema(t), true)
	sch, s, ctx := e.sch, e.sink, e.ctx
	var failing atomic.Bool
	failing.Store(true)
	var attempts atomic.Int32
	s.hook = func(ctx context.Context, point string) error {
		if point == "begin" && failing.Load() {
			attempts.Add(1)
			return io.ErrUnexpectedEOF // transient: retried until ctx ends
		}
		return nil
	}
	f := newLineFile("000001", seqLines(20, "d"))
	bctx, cancel := context.WithCancel(ctx)
	acks := make(chan error, 1)
	if err := s.Submit(bctx, f.batch(t, sch, "s", 0, 10), func(err error) { acks <- err }); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() bool { return attempts.Load() >= 2 }, "the batch retries")
	cancel()
	if err := <-acks; !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned batch acked with %v, want context.Canceled", err)
	}
	if err := s.Drain(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	failing.Store(false)
	if err := submit(t, ctx, s, f.batch(t, sch, "s", 0, 20)); err != nil {
		t.Fatalf("batch after Drain: %v", err)
	}
	if cp := checkpointOf(t, s, "s"); cp != f.pos[20] {
		t.Fatalf("checkpoint %v, want %v", cp, f.pos[20])
	}
}
