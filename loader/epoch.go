package loader

import (
	"errors"
	"fmt"
	"sync"
)

// ErrEpochCancelled is what [Batch.Err] wraps once a batch submitted before
// the batch, in the same epoch, failed.
var ErrEpochCancelled = errors.New("an earlier batch of the stream failed")

// Epoch is the run of one pipeline's batches (one stream, one sink) between
// two rewinds: Batch.Seq counts within it from 1. When a batch fails, the
// loader replays the stream from the sink's checkpoint, so every later batch
// of the epoch is void: the loader fails the epoch inside that batch's ack
// func, before the ack returns, and a sink learns it through [Batch.Err]
// instead of tracking failures between batches itself. A sink that makes a
// stream's batches durable in order checks Err after the batch before it
// has finished, and fails the batch instead of storing it.
//
// The loader makes the epochs of its batches; [NewEpoch] and [Batch.InEpoch]
// are for sink tests and tools that build batches with [NewBatch].
type Epoch struct {
	mu     sync.Mutex
	done   chan struct{}
	failed uint64 // the lowest Seq that failed; 0: none
	stream string
	err    error
}

// NewEpoch returns an epoch no batch has failed in.
func NewEpoch() *Epoch { return &Epoch{done: make(chan struct{})} }

// Fail records that batch seq of the epoch failed with err: every batch of
// the epoch with a higher Seq is void from now on. It is what the loader does
// when a sink acknowledges a batch with an error; calling it again keeps the
// lowest seq.
func (e *Epoch) Fail(seq uint64, stream string, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failed != 0 && e.failed <= seq {
		return
	}
	first := e.failed == 0
	e.failed, e.stream, e.err = seq, stream, err
	if first {
		close(e.done)
	}
}

// err returns the error for the batch numbered seq, nil while no batch
// before it failed.
func (e *Epoch) errFor(seq uint64) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failed == 0 || e.failed >= seq {
		return nil
	}
	return fmt.Errorf("%w: batch %d of stream %s failed (the loader replays from the checkpoint): %w", ErrEpochCancelled, e.failed, e.stream, e.err)
}

// InEpoch puts b, built with [NewBatch], into e as batch number seq, so that
// a test can fail an earlier batch through e.Fail. It returns b.
func (b *Batch) InEpoch(e *Epoch, seq uint64) *Batch {
	b.epoch, b.Seq = e, seq
	return b
}

// Cancelled returns a channel closed once some batch of b's epoch failed.
// The failed batch may come after b, which is then still wanted: call
// [Batch.Err] to know.
func (b *Batch) Cancelled() <-chan struct{} {
	if b.epoch == nil {
		return nil
	}
	return b.epoch.done
}

// Err returns an error wrapping [ErrEpochCancelled] (and the failed batch's
// error) once a batch submitted before b in its epoch has failed: the loader
// will not count b and replays its lines after a rewind, so the sink must
// not make b durable if it has not yet (a sink that keeps its own checkpoint
// would otherwise move it past the failed lines) and should fail b
// quickly. It returns nil while b is still wanted.
func (b *Batch) Err() error {
	if b.epoch == nil {
		return nil
	}
	return b.epoch.errFor(b.Seq)
}
