package dbsink

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// retry runs fn until it succeeds, fails with an error that is not
// transient, or ctx ends. Each attempt gets AttemptTimeout; an attempt
// that runs out of it is retried like a transient error.
func (s *Sink) retry(ctx context.Context, what string, attrs []any, fn func(context.Context) error) error {
	for n := 1; ; n++ {
		actx, cancel := context.WithTimeout(ctx, s.cfg.AttemptTimeout)
		err := fn(actx)
		timedOut := actx.Err() != nil
		cancel()
		if err == nil {
			if n > 1 {
				s.log.Info("dbsink: succeeded after retrying", append(attrs, "op", what, "attempts", n)...)
			}
			return nil
		}
		if ctx.Err() != nil {
			// Cause is the caller's error, or ErrClosed after Close.
			return fmt.Errorf("%s: %w (last error: %v)", what, context.Cause(ctx), err)
		}
		if !timedOut && !Retryable(err) {
			return fmt.Errorf("%s: %w%s", what, err, hint(err))
		}
		d := s.backoff(n)
		s.log.Warn("dbsink: transient error, retrying", append(attrs, "op", what, "attempt", n, "backoff", d, "err", err)...)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w (last error: %v)", what, context.Cause(ctx), err)
		case <-t.C:
		}
	}
}

// backoff returns the wait before retry n (from 1): MinBackoff doubled
// n-1 times, capped at MaxBackoff, of which a random half is jitter so
// that many loaders reconnecting after an outage do not arrive in step.
func (s *Sink) backoff(n int) time.Duration {
	d := s.cfg.MinBackoff
	for i := 1; i < n && d < s.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.cfg.MaxBackoff)
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// withConn runs fn on a pooled connection. If the connection is closed
// afterwards, fn's error is marked as connection loss, which Retryable
// treats as transient whatever the error text says.
func (s *Sink) withConn(ctx context.Context, fn func(*pgxpool.Conn) error) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		if s.closeCtx.Err() != nil {
			return ErrClosed
		}
		return fmt.Errorf("acquire connection: %w", err)
	}
	defer conn.Release()
	err = fn(conn)
	if err != nil && conn.Conn().IsClosed() {
		err = &connLostError{err}
	}
	return err
}

// hint adds the likely remedy to errors an operator fixes, not the code.
func hint(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "42703") { // undefined table, column
		return " (does the database match the config? `ingest migrate` creates and checks the tables)"
	}
	return ""
}
