package dbsink

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dualwrite/ingest/loader"
)

// The methods in this file serve callers that feed the sink from a source
// other than the file loader (`ingest consume`, internal/consume): they
// hand over and take back streams (a Kafka partition moving between
// consumers), and reposition them on request (a replay). The file loader
// never calls them.

// Drain waits until every batch submitted for stream so far has been
// acknowledged and the sink keeps no state for it, or ctx ends. A caller
// that gives a stream up (a Kafka partition revoked) calls Drain before
// handing it on, so that no transaction of its own for the stream is
// still running or queued. It puts the batches it submits after taking
// the stream back in a new [loader.Epoch], which the abandoned ones did
// not void.
func (s *Sink) Drain(ctx context.Context, stream string) error {
	select {
	case <-s.acked(stream):
		return nil
	case <-ctx.Done():
		return fmt.Errorf("dbsink: drain stream %s: %w", stream, context.Cause(ctx))
	}
}

// acked returns a channel closed once the newest batch submitted for
// stream has been acknowledged: already closed when the sink holds none.
func (s *Sink) acked(stream string) <-chan struct{} {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if last, ok := s.last[stream]; ok {
		return last
	}
	return closedChan
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// SetCheckpoint sets this sink's checkpoint for stream to pos, backwards
// as well as forwards, for an operator's replay (`ingest consume --reset`).
// It takes the same row lock as a batch, so it waits for a batch of the
// stream in flight, which must not be running concurrently with a reset
// the caller means (stop the stream's writers first). It retries
// transient errors like Submit.
func (s *Sink) SetCheckpoint(ctx context.Context, stream string, pos loader.Position) error {
	ctx, cancel := s.watchClose(ctx)
	defer cancel()
	err := s.retry(ctx, "set checkpoint", []any{"stream", stream}, func(ctx context.Context) error {
		return s.withConn(ctx, func(conn *pgxpool.Conn) error {
			return pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{BeginQuery: beginSQL}, func(tx pgx.Tx) error {
				if _, err := s.lockCheckpoint(ctx, tx, stream); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, s.sql.save, pgx.QueryExecModeExec, s.cfg.Name, stream, pos.File, pos.Offset); err != nil {
					return fmt.Errorf("save checkpoint: %w", err)
				}
				return nil
			})
		})
	})
	if err != nil {
		return fmt.Errorf("dbsink: set checkpoint of stream %s: %w", stream, err)
	}
	return nil
}
