package dbsink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dualwrite/ingest/loader"
)

// Submit hands the batch to a goroutine of the sink, which stores it and
// then calls ack, and returns, so that a loader running this sink with
// MaxInFlight 2 reads and decodes the next batch while PostgreSQL loads
// this one (`ingest backfill`; `ingest run` keeps 1, which waits for each
// ack, because a batch queued behind a commit adds to every line's
// latency). Batches of one stream are stored one at a time, in Submit
// order, each after the previous one's ack, so this sink's checkpoint
// never moves back whatever MaxInFlight is; batches of different streams
// are stored concurrently, on their own connections. A batch whose epoch
// an earlier failed batch voided ([loader.Batch.Err]) is acknowledged
// with that error, wrapping [loader.ErrEpochCancelled], and not stored:
// its checkpoint would pass the failed batch's lines. The sink keeps no
// failures of its own between batches: a caller building batches with
// [loader.NewBatch] puts a stream's batches in one [loader.Epoch] and
// fails it in ack, as the loader does.
//
// One transaction loads the rows of every table in the batch and moves
// this sink's checkpoint for b.Stream to b.End, so a crash at any point
// leaves either all or none of it. Rows of a table with an id column
// are copied straight in while no id is a duplicate; otherwise they go
// through a temporary staging table and INSERT ... ON CONFLICT (id) DO
// NOTHING, so that an overlapping backfill adds no duplicates.
//
// A row whose value does not convert to its column type is rejected with
// reason "bad_column"; a row PostgreSQL refuses (SQLSTATE class 22 or 23)
// is isolated by splitting the batch and rejected with "db_rejected"; the
// rest commits. A transient failure (see [Retryable]) retries the whole
// transaction with exponential backoff and jitter until it succeeds or
// ctx ends; ack then gets ctx's error (or [ErrClosed] after Close). Any
// other failure, or a failure to write a dead letter, is passed to ack.
//
// Submit returns an error, without calling ack, only when the sink is
// closed or b or ack is nil.
func (s *Sink) Submit(ctx context.Context, b *loader.Batch, ack func(error)) error {
	if b == nil || ack == nil {
		return errors.New("dbsink: Submit needs a batch and an ack function")
	}
	done := make(chan struct{})
	s.subMu.Lock()
	if s.closeCtx.Err() != nil {
		s.subMu.Unlock()
		return ErrClosed
	}
	prev := s.last[b.Stream]
	s.last[b.Stream] = done
	s.running.Add(1)
	s.subMu.Unlock()
	go func() {
		defer s.running.Done()
		if prev != nil {
			<-prev
		}
		// The batch before this one has been acknowledged, and a failed
		// ack has already voided the rest of its epoch (the loader fails
		// the epoch inside ack), so Err is final for what came before.
		err := b.Err()
		if err != nil {
			err = fmt.Errorf("dbsink: stream %s batch %d: not stored: %w", b.Stream, b.Seq, err)
		} else {
			err = s.submit(ctx, b)
		}
		ack(err)
		s.subMu.Lock()
		if s.last[b.Stream] == done {
			delete(s.last, b.Stream) // the stream is idle: keep no entry
		}
		s.subMu.Unlock()
		close(done)
	}()
	return nil
}

func (s *Sink) submit(ctx context.Context, b *loader.Batch) error {
	ctx, cancel := s.watchClose(ctx)
	defer cancel()
	start := time.Now()
	st, err := s.prepare(ctx, b)
	if err != nil {
		return fmt.Errorf("dbsink: stream %s batch %d: %w", b.Stream, b.Seq, err)
	}
	attrs := []any{"stream", b.Stream, "seq", b.Seq, "start", b.Start.String(), "end", b.End.String()}
	if err := s.retry(ctx, "store batch", attrs, func(ctx context.Context) error { return s.attempt(ctx, st) }); err != nil {
		return fmt.Errorf("dbsink: stream %s batch %d: %w", b.Stream, b.Seq, err)
	}
	s.log.Debug("dbsink: batch stored", append(attrs, "records", len(b.Records), "took", time.Since(start))...)
	return nil
}
