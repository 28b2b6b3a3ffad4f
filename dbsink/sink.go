package dbsink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
)

// Sink is the PostgreSQL sink. It implements [loader.Sink] and
// [loader.CheckpointOwner]. It is safe for concurrent use: the loader calls
// Submit from one goroutine per stream, and each call uses its own pooled
// connection.
type Sink struct {
	cfg  Config
	pool *pgxpool.Pool
	log  *slog.Logger
	sql  checkpointSQL

	// closeCtx is cancelled by Close; every Submit and Checkpoint watches
	// it, so that Close does not wait for a retry loop that waits for the
	// database.
	closeCtx    context.Context
	closeCancel context.CancelFunc
	closeOnce   sync.Once

	// Submitted batches are stored by goroutines the sink owns: subMu
	// orders Submit's admission against Close, running counts them for
	// Close to wait on, and last holds, per stream, the channel closed
	// once the newest batch was acknowledged, which the next batch of the
	// stream waits for.
	subMu   sync.Mutex
	running sync.WaitGroup
	last    map[string]chan struct{}

	mu     sync.Mutex
	tables map[*schema.Table]*tableInfo

	// hook is set only by tests: it runs at named points of a transaction
	// attempt ("begin", "commit", "committed"), and an error it returns
	// fails the attempt as if the database had returned it.
	hook func(ctx context.Context, point string) error
}

// New validates cfg and creates the sink and its connection pool. It does
// not connect: the database may be down when the loader starts, and the
// Kafka side must not wait for it. Call [Sink.Ping] or [Sink.Migrate] to
// check the connection.
func New(ctx context.Context, cfg Config) (*Sink, error) {
	cfg = cfg.withDefaults()
	pc, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	// Describe before every COPY instead of caching statement
	// descriptions per connection: COPY's binary format follows the column
	// types the description reports, and a cached one would go stale when
	// someone alters a column type, making every row look bad. The few
	// parameterised statements pass QueryExecModeExec (one round trip, no
	// cache) explicitly.
	pc.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeDescribeExec
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("dbsink: create pool: %w", err)
	}
	s := &Sink{
		cfg:    cfg,
		pool:   pool,
		log:    cfg.Logger.With("sink", cfg.Name),
		sql:    newCheckpointSQL(),
		tables: make(map[*schema.Table]*tableInfo),
		last:   make(map[string]chan struct{}),
	}
	s.closeCtx, s.closeCancel = context.WithCancel(context.Background())
	return s, nil
}

// Name returns the sink name (Config.Name), the key of its checkpoints.
func (s *Sink) Name() string { return s.cfg.Name }

// Ping checks that the database answers, for readiness probes.
func (s *Sink) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("dbsink: ping: %w", err)
	}
	return nil
}

// Close stops the sink: a batch or Checkpoint still retrying ends with
// [ErrClosed] (the batch's ack gets it), and Close waits until every
// submitted batch was acknowledged and every connection released, then
// closes the pool. It is idempotent.
func (s *Sink) Close() {
	s.closeOnce.Do(func() {
		s.subMu.Lock()
		s.closeCancel()
		s.subMu.Unlock()
		s.running.Wait()
		s.pool.Close()
	})
}

// watchClose derives a context that also ends, with cause ErrClosed, when
// the sink is closed.
func (s *Sink) watchClose(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(s.closeCtx, func() { cancel(ErrClosed) })
	return ctx, func() { stop(); cancel(nil) }
}

// Checkpoint returns this sink's checkpoint for stream: the position of
// the first line not yet committed. ok is false when the sink has never
// committed a batch of the stream. Like Submit it retries transient
// errors until ctx ends, so that a loader starting while the database is
// down waits for it instead of failing.
func (s *Sink) Checkpoint(ctx context.Context, stream string) (pos loader.Position, ok bool, err error) {
	ctx, cancel := s.watchClose(ctx)
	defer cancel()
	err = s.retry(ctx, "read checkpoint", []any{"stream", stream}, func(ctx context.Context) error {
		return s.withConn(ctx, func(conn *pgxpool.Conn) error {
			err := conn.QueryRow(ctx, s.sql.read, pgx.QueryExecModeExec, s.cfg.Name, stream).Scan(&pos.File, &pos.Offset)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				ok = false
				return nil
			case err != nil:
				return err
			}
			ok = true
			return nil
		})
	})
	if err != nil {
		return loader.Position{}, false, fmt.Errorf("dbsink: checkpoint of stream %s: %w", stream, err)
	}
	return pos, ok, nil
}
