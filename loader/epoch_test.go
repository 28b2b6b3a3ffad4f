package loader

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dualwrite/ingest/rotatefile"
)

// handSink hands every batch to the test, which acknowledges it.
type handSink struct{ got chan heldBatch }

func (s *handSink) Name() string { return "hand" }

func (s *handSink) Submit(ctx context.Context, b *Batch, ack func(error)) error {
	select {
	case s.got <- heldBatch{b, ack}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *handSink) next(t *testing.T) heldBatch {
	t.Helper()
	select {
	case h := <-s.got:
		return h
	case <-time.After(30 * time.Second):
		t.Fatal("no batch within 30 s")
		return heldBatch{}
	}
}

// TestFailedAckVoidsLaterBatchesOfItsEpoch: the loader fails the epoch
// inside the failed batch's ack, so a sink holding a later batch sees it
// void as soon as that ack returns, an earlier batch stays wanted, and the
// replay after the rewind is a new epoch. (No Kafka or PostgreSQL: an
// in-process sink the test drives.)
func TestFailedAckVoidsLaterBatchesOfItsEpoch(t *testing.T) {
	spool, w := openWriter(t, rotatefile.Options{})
	appendEv(t, w, 0, 40, 1, "epoch")
	sink := &handSink{got: make(chan heldBatch, 16)}
	cfg := Config{Dir: spool, Schema: testSchema(t), Batch: BatchConfig{MaxRecords: 10, Linger: time.Millisecond}}
	_, stop := runLoader(t, cfg, SinkSpec{Sink: sink, MaxInFlight: 4})

	b1, b2, b3 := sink.next(t), sink.next(t), sink.next(t)
	if b1.b.Seq != 1 || b2.b.Seq != 2 || b3.b.Seq != 3 {
		t.Fatalf("seqs %d %d %d, want 1 2 3", b1.b.Seq, b2.b.Seq, b3.b.Seq)
	}
	select {
	case <-b3.b.Cancelled():
		t.Fatal("epoch cancelled before any batch failed")
	default:
	}
	if err := b3.b.Err(); err != nil {
		t.Fatalf("batch 3 void before any failure: %v", err)
	}
	boom := errors.New("boom")
	b2.ack(boom)
	// Synchronously: no poll, the ack has returned.
	if err := b3.b.Err(); !errors.Is(err, ErrEpochCancelled) || !errors.Is(err, boom) {
		t.Fatalf("batch 3 after batch 2 failed: Err() = %v, want ErrEpochCancelled wrapping boom", err)
	}
	select {
	case <-b3.b.Cancelled():
	default:
		t.Fatal("Cancelled() not closed after batch 2 failed")
	}
	if err := b1.b.Err(); err != nil {
		t.Fatalf("batch 1, before the failed one, is still wanted: Err() = %v", err)
	}
	b1.ack(nil)
	b3.ack(b3.b.Err())
	// The loader waits for what is in flight, then replays from the
	// checkpoint (batch 1's end) in a new epoch.
	var replay heldBatch
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		h := sink.next(t)
		if h.b.Seq == 1 {
			replay = h
			break
		}
		h.ack(nil) // batches submitted before the failure was seen
	}
	if replay.b == nil {
		t.Fatal("no replay (Seq 1) within 30 s")
	}
	if replay.b.Start != b2.b.Start {
		t.Fatalf("replay starts at %s, want batch 2's start %s", replay.b.Start, b2.b.Start)
	}
	if err := replay.b.Err(); err != nil {
		t.Fatalf("replayed batch is void: %v", err)
	}
	replay.ack(nil)
	go func() {
		for h := range sink.got {
			h.ack(nil)
		}
	}()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	close(sink.got)
}

func TestNewEpochFailVoidsOnlyLaterBatches(t *testing.T) {
	e := NewEpoch()
	b := func(seq uint64) *Batch { return NewBatch("s", Position{}, Position{}, nil, nil).InEpoch(e, seq) }
	b1, b2, b3 := b(1), b(2), b(3)
	e.Fail(2, "s", errors.New("two"))
	e.Fail(3, "s", errors.New("three")) // later failure: the lowest stays
	if b1.Err() != nil || b2.Err() != nil {
		t.Fatalf("batches 1 and 2 voided: %v, %v", b1.Err(), b2.Err())
	}
	if err := b3.Err(); !errors.Is(err, ErrEpochCancelled) {
		t.Fatalf("batch 3: %v", err)
	}
	e.Fail(1, "s", errors.New("one"))
	if err := b2.Err(); !errors.Is(err, ErrEpochCancelled) {
		t.Fatalf("batch 2 after batch 1 failed: %v", err)
	}
	if NewBatch("s", Position{}, Position{}, nil, nil).Err() != nil {
		t.Fatal("a fresh NewBatch is void")
	}
}
