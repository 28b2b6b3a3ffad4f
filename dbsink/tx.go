package dbsink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dualwrite/ingest/loader"
)

// beginSQL starts every batch transaction. READ COMMITTED is what the
// checkpoint lock relies on (see lockCheckpoint), stated so that a
// database default of SERIALIZABLE does not change it. Deferred
// constraints are made immediate so that a constraint violation fails the
// statement that loaded the row, inside the savepoint that lets the sink
// isolate it, rather than the COMMIT.
const beginSQL = "BEGIN ISOLATION LEVEL READ COMMITTED; SET CONSTRAINTS ALL IMMEDIATE"

// attempt runs the batch's transaction once.
func (s *Sink) attempt(ctx context.Context, st *batchState) error {
	return s.withConn(ctx, func(conn *pgxpool.Conn) error {
		tx, err := conn.BeginTx(ctx, pgx.TxOptions{BeginQuery: beginSQL})
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		defer func() {
			// No-op after Commit. A Rollback that fails closes the
			// connection, which the pool then discards: nothing to report.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = tx.Rollback(rctx)
		}()

		cp, err := s.lockCheckpoint(ctx, tx, st.b.Stream)
		if err != nil {
			return err
		}
		if !cp.Before(st.b.End) {
			// Already committed: by an attempt whose COMMIT reply was
			// lost, or by a process that crashed before it could ack.
			s.log.Info("dbsink: batch already committed, skipping", "stream", st.b.Stream, "seq", st.b.Seq, "end", st.b.End.String(), "checkpoint", cp.String())
			return nil
		}
		if err := s.runHook(ctx, "begin"); err != nil {
			return err
		}
		for k, g := range st.groups {
			if err := s.loadGroup(ctx, tx, st, k, g, cp); err != nil {
				return err
			}
		}
		tag, err := tx.Exec(ctx, s.sql.save, pgx.QueryExecModeExec, s.cfg.Name, st.b.Stream, st.b.End.File, st.b.End.Offset)
		if err != nil {
			return fmt.Errorf("save checkpoint: %w", err)
		}
		if tag.RowsAffected() != 1 { // cannot happen while we hold the row lock
			return fmt.Errorf("save checkpoint: updated %d rows, want 1", tag.RowsAffected())
		}
		if err := s.runHook(ctx, "commit"); err != nil {
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return s.runHook(ctx, "committed")
	})
}

func (s *Sink) runHook(ctx context.Context, point string) error {
	if s.hook == nil {
		return nil
	}
	if err := s.hook(ctx, point); err != nil {
		return fmt.Errorf("test hook at %s: %w", point, err)
	}
	return nil
}

// lockCheckpoint reads this sink's checkpoint for stream and locks its row
// until the transaction ends. The lock makes every transaction for the
// stream see the outcome of the one before it, even one whose client
// vanished while its COMMIT was in flight: in READ COMMITTED, SELECT ...
// FOR UPDATE waits for that transaction and then returns the row as it
// committed. The caller skips every record before the returned position,
// so a batch replayed over committed lines adds nothing, with or without
// an id column. A missing row is created first (and its creation waits
// the same way on a concurrent first insert), so that there is a row to
// lock.
func (s *Sink) lockCheckpoint(ctx context.Context, tx pgx.Tx, stream string) (loader.Position, error) {
	var pos loader.Position
	for range 2 {
		err := tx.QueryRow(ctx, s.sql.lock, pgx.QueryExecModeExec, s.cfg.Name, stream).Scan(&pos.File, &pos.Offset)
		if err == nil {
			return pos, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return pos, fmt.Errorf("lock checkpoint: %w", err)
		}
		if _, err := tx.Exec(ctx, s.sql.seed, pgx.QueryExecModeExec, s.cfg.Name, stream); err != nil {
			return pos, fmt.Errorf("create checkpoint row: %w", err)
		}
	}
	return pos, fmt.Errorf("lock checkpoint: row for sink %q stream %q vanished", s.cfg.Name, stream)
}
