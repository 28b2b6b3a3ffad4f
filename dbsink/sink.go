package dbsink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
	// Close to wait on, and last holds, per stream, the done channel of
	// the newest batch, which the next batch of the stream waits for.
	subMu   sync.Mutex
	running sync.WaitGroup
	last    map[string]*link

	mu     sync.Mutex
	tables map[*schema.Table]*tableInfo

	// hook is set only by tests: it runs at named points of a transaction
	// attempt ("begin", "commit", "committed"), and an error it returns
	// fails the attempt as if the database had returned it.
	hook func(ctx context.Context, point string) error
}

// beginSQL starts every batch transaction. READ COMMITTED is what the
// checkpoint lock relies on (see lockCheckpoint), stated so that a
// database default of SERIALIZABLE does not change it. Deferred
// constraints are made immediate so that a constraint violation fails the
// statement that loaded the row, inside the savepoint that lets the sink
// isolate it, rather than the COMMIT.
const beginSQL = "BEGIN ISOLATION LEVEL READ COMMITTED; SET CONSTRAINTS ALL IMMEDIATE"

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
		last:   make(map[string]*link),
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

// Submit hands the batch to a goroutine of the sink, which stores it and
// then calls ack, and returns, so that a loader running this sink with
// MaxInFlight 2 reads and decodes the next batch while PostgreSQL loads
// this one (`ingest backfill`; `ingest run` keeps 1, which waits for each
// ack, because a batch queued behind a commit adds to every line's
// latency). Batches of one stream
// are stored one at a time, in Submit order, each after the previous one's
// ack, so this sink's checkpoint never moves back whatever MaxInFlight is;
// batches of different streams are stored concurrently, on their own
// connections.
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
	cur := &link{done: make(chan struct{})}
	s.subMu.Lock()
	if s.closeCtx.Err() != nil {
		s.subMu.Unlock()
		return ErrClosed
	}
	prev := s.last[b.Stream]
	s.last[b.Stream] = cur
	s.running.Add(1)
	s.subMu.Unlock()
	go func() {
		defer s.running.Done()
		var err error
		if prev != nil {
			<-prev.done
			if prev.err != nil {
				// Storing this batch would move the checkpoint over the
				// lines of the failed one: the loader replays both.
				err = fmt.Errorf("dbsink: stream %s batch %d: not stored: %w", b.Stream, b.Seq, errEarlierFailed)
			}
		}
		if err == nil {
			err = s.submit(ctx, b)
		}
		cur.err = err
		ack(err)
		s.subMu.Lock()
		if s.last[b.Stream] == cur {
			delete(s.last, b.Stream) // the stream is idle: keep no entry
		}
		s.subMu.Unlock()
		close(cur.done)
	}()
	return nil
}

// link is a submitted batch as the next batch of its stream sees it: done
// is closed once it was acknowledged, with err.
type link struct {
	done chan struct{}
	err  error
}

// errEarlierFailed fails a batch queued behind a failed batch of its stream.
var errEarlierFailed = errors.New("an earlier batch of the stream failed")

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

// hint adds the likely remedy to errors an operator fixes, not the code.
func hint(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "42703") { // undefined table, column
		return " (does the database match the config? `ingest migrate` creates and checks the tables)"
	}
	return ""
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

// batchState is one Submit's work: the converted rows grouped by table,
// and which records were dead-lettered, which survives retries so that a
// row is rejected at most once per Submit.
type batchState struct {
	b        *loader.Batch
	groups   []*group
	rejected []bool // by record index
}

// group is the rows of one table in a batch. vals holds len(recs) rows of
// len(info.cols) values, flat, so a batch costs one allocation per table
// rather than one per row.
type group struct {
	info *tableInfo
	recs []int // record indexes into b.Records
	vals []any
}

func (g *group) row(j int) []any {
	n := len(g.info.cols)
	return g.vals[j*n : (j+1)*n : (j+1)*n]
}

// prepare converts every record to column values, rejecting those that do
// not convert. It runs once per Submit, before any transaction, so that
// retries reuse the values.
func (s *Sink) prepare(ctx context.Context, b *loader.Batch) (*batchState, error) {
	st := &batchState{b: b, rejected: make([]bool, len(b.Records))}
	for i := range b.Records {
		r := &b.Records[i]
		if r.Table == nil {
			if err := s.reject(ctx, st, i, string(schema.ReasonUnknownTable), "record has no table"); err != nil {
				return nil, err
			}
			continue
		}
		g, err := st.group(s, r.Table, len(b.Records))
		if err != nil {
			return nil, err
		}
		// The loader's Decode converted the values; a record made another
		// way (a tool, a test) gets them from the same code now.
		rec := &r.Record
		if !rec.HasValues() {
			dec, err := r.Table.DecodeRow(r.Row)
			if err != nil {
				reason, detail := rowRejection(err)
				if err := s.reject(ctx, st, i, reason, detail); err != nil {
					return nil, err
				}
				continue
			}
			rec = &dec
		}
		base := len(g.vals)
		n := len(g.info.cols)
		g.vals = append(g.vals, make([]any, n)...)
		var bad error
		for c := range n {
			v := rec.Value(c)
			if v.Null() {
				continue // SQL NULL: the column is absent or null
			}
			x, err := g.info.conv[c](v)
			if err != nil {
				bad = fmt.Errorf("%s: %w", g.info.cols[c].Name, err)
				break
			}
			g.vals[base+c] = x
		}
		if bad != nil {
			clear(g.vals[base:])
			g.vals = g.vals[:base]
			if err := s.reject(ctx, st, i, ReasonBadColumn, bad.Error()); err != nil {
				return nil, err
			}
			continue
		}
		g.recs = append(g.recs, i)
	}
	return st, nil
}

// rowRejection is the dead-letter reason and detail for a row that
// schema.Table.DecodeRow refused: malformed_json naming "row" when it is not
// a well-formed object, otherwise bad_column naming the field.
func rowRejection(err error) (reason, detail string) {
	var de *schema.Error
	if !errors.As(err, &de) {
		return ReasonMalformedRow, "row: " + err.Error()
	}
	switch de.Reason {
	case schema.ReasonMalformedJSON, schema.ReasonInvalidUTF8, schema.ReasonEmptyLine, schema.ReasonNotObject, schema.ReasonRowNotObject:
		return ReasonMalformedRow, "row: " + de.Error()
	}
	field := strings.TrimPrefix(de.Field, "row.")
	if field == "" {
		field = "row"
	}
	return ReasonBadColumn, field + ": " + de.Detail + " (" + string(de.Reason) + ")"
}

// group returns the batch's group for table t, creating it.
func (st *batchState) group(s *Sink, t *schema.Table, sizeHint int) (*group, error) {
	for _, g := range st.groups {
		if g.info.t == t {
			return g, nil
		}
	}
	info, err := s.tableInfo(t)
	if err != nil {
		return nil, err
	}
	g := &group{info: info}
	if len(st.groups) == 0 { // most batches hold one table: size for it
		g.vals = make([]any, 0, sizeHint*len(info.cols))
	}
	st.groups = append(st.groups, g)
	return g, nil
}

// reject dead-letters record i and remembers it. A failure to write the
// dead letter fails the batch: the row could otherwise be lost.
func (s *Sink) reject(ctx context.Context, st *batchState, i int, reason, detail string) error {
	rec := &st.b.Records[i]
	if err := st.b.Reject(ctx, i, reason, detail); err != nil {
		return &rejectError{fmt.Errorf("record at %v: %w", rec.Pos, err)}
	}
	st.rejected[i] = true
	// The dead letter is the record of it; a row PostgreSQL refused is
	// worth a warning (a constraint the config does not know about), one
	// that did not convert normally never gets past the loader's Decode.
	level := slog.LevelDebug
	if reason == ReasonDBRejected {
		level = slog.LevelWarn
	}
	s.log.Log(ctx, level, "dbsink: row rejected", "stream", st.b.Stream, "pos", rec.Pos.String(), "reason", reason, "detail", detail)
	return nil
}

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

// chunkSavepoint isolates each COPY (and INSERT ... SELECT), so that a
// data error rolls back that chunk only and the sink can split it.
const chunkSavepoint = "ingest_chunk"

// loadGroup loads the rows of one table that are not rejected and not
// before cp.
func (s *Sink) loadGroup(ctx context.Context, tx pgx.Tx, st *batchState, k int, g *group, cp loader.Position) error {
	rows := make([]int, 0, len(g.recs))
	for j, i := range g.recs {
		if !st.rejected[i] && !st.b.Records[i].Pos.Before(cp) {
			rows = append(rows, j)
		}
	}
	if len(rows) == 0 {
		return nil
	}
	ld := &chunkLoader{s: s, tx: tx, st: st, g: g, dest: g.info.target}
	pre := ""
	if g.info.id != "" {
		if g.info.direct() {
			loaded, err := ld.loadDirect(ctx, rows)
			if loaded || err != nil {
				return err
			}
		}
		// The staging table has exactly the configured columns, with the
		// target's types (typmods included), and no constraints: those
		// fire in the INSERT, inside the same savepoint. CREATE TABLE AS
		// rather than LIKE, so that the target's other columns and their
		// defaults (sequences) are not involved. ON COMMIT DROP: the
		// table lives as long as the transaction. toast_tuple_target at
		// its maximum keeps rows below a page inline: a ~2 KB row would
		// otherwise be compressed (in vain, for a base64 body) and moved
		// to a TOAST table once in staging and again in the target.
		stage := pgx.Identifier{"pg_temp", "ingest_stage_" + strconv.Itoa(k)}
		ld.dest = stage
		pre = "CREATE TEMP TABLE " + stage.Sanitize() + " WITH (toast_tuple_target = 8160) ON COMMIT DROP AS SELECT " + g.info.colList +
			" FROM " + g.info.targetSQL + " WITH NO DATA; "
		ld.insert = "INSERT INTO " + g.info.targetSQL + " (" + g.info.colList + ") SELECT " + g.info.colList +
			" FROM " + stage.Sanitize() + " ON CONFLICT (" + pgx.Identifier{g.info.id}.Sanitize() + ") DO NOTHING"
		ld.truncate = "TRUNCATE " + stage.Sanitize()
	}
	return ld.load(ctx, pre, rows, false)
}

// loadDirect copies rows straight into a table with an id column, the
// fast path: without the staging table PostgreSQL writes and reads each
// row once instead of three times, which at ~2 KB rows is most of the
// transaction (BenchmarkSubmit/id). It reports false, with nothing
// loaded, when PostgreSQL refused a row: a duplicate id, which only the
// staging path's ON CONFLICT can skip, or a row the staging path will
// isolate and reject. After a duplicate the table's next batches go
// through staging for a while (see tableInfo.direct): a backfill over
// loaded files would otherwise copy every batch twice.
func (ld *chunkLoader) loadDirect(ctx context.Context, rows []int) (bool, error) {
	if _, err := ld.tx.Exec(ctx, "SAVEPOINT "+chunkSavepoint); err != nil {
		return false, fmt.Errorf("savepoint: %w", err)
	}
	_, err := ld.tx.CopyFrom(ctx, ld.g.info.target, ld.g.info.names, &rowSource{g: ld.g, rows: rows})
	if err == nil {
		if _, err := ld.tx.Exec(ctx, "RELEASE SAVEPOINT "+chunkSavepoint); err != nil {
			return false, fmt.Errorf("release savepoint: %w", err)
		}
		return true, nil
	}
	if !isDataError(err) {
		return false, fmt.Errorf("copy into %s: %w", ld.g.info.targetSQL, err)
	}
	if rerr := ld.rollbackChunk(ctx, err); rerr != nil {
		return false, rerr
	}
	if isUniqueViolation(err) {
		ld.g.info.staged.Store(stagedAfterDuplicate)
	}
	return false, nil
}

// rollbackChunk undoes a chunk that failed with err, keeping the
// transaction.
func (ld *chunkLoader) rollbackChunk(ctx context.Context, err error) error {
	if _, rerr := ld.tx.Exec(ctx, "ROLLBACK TO SAVEPOINT "+chunkSavepoint+"; RELEASE SAVEPOINT "+chunkSavepoint); rerr != nil {
		return fmt.Errorf("roll back to savepoint after %v: %w", err, rerr)
	}
	return nil
}

// stagedAfterDuplicate is how many batches of a table go through the
// staging table after a duplicate id made a direct copy fail. Once it
// ran out one batch tries the direct copy again, so an overlapping
// backfill pays one wasted copy per this many batches.
const stagedAfterDuplicate = 16

// chunkLoader loads chunks of one group's rows, splitting on data errors.
type chunkLoader struct {
	s        *Sink
	tx       pgx.Tx
	st       *batchState
	g        *group
	dest     pgx.Identifier
	insert   string // "" when loading straight into the target
	truncate string
}

// load loads rows (indexes into g.recs) in a savepoint. On a data error
// it rolls the savepoint back and loads each half, down to single rows,
// which are rejected: with k bad rows among n this costs O(k log n)
// extra COPYs, and nothing when there are none. split says a later chunk
// follows, so the staging table must be emptied after this one.
func (ld *chunkLoader) load(ctx context.Context, pre string, rows []int, split bool) error {
	if _, err := ld.tx.Exec(ctx, pre+"SAVEPOINT "+chunkSavepoint); err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	_, err := ld.tx.CopyFrom(ctx, ld.dest, ld.g.info.names, &rowSource{g: ld.g, rows: rows})
	if err != nil {
		err = fmt.Errorf("copy into %s: %w", ld.g.info.targetSQL, err)
	}
	done := "RELEASE SAVEPOINT " + chunkSavepoint
	if err == nil && ld.insert != "" {
		if split {
			done = ld.truncate + "; " + done
		}
		if _, err = ld.tx.Exec(ctx, ld.insert+"; "+done); err != nil {
			err = fmt.Errorf("insert into %s: %w", ld.g.info.targetSQL, err)
		}
	} else if err == nil {
		if _, err = ld.tx.Exec(ctx, done); err != nil {
			err = fmt.Errorf("release savepoint: %w", err)
		}
	}
	if err == nil || !isDataError(err) {
		return err
	}
	if rerr := ld.rollbackChunk(ctx, err); rerr != nil {
		return rerr
	}
	if len(rows) == 1 {
		return ld.s.reject(ctx, ld.st, ld.g.recs[rows[0]], ReasonDBRejected, dbDetail(ld.g.info, err))
	}
	mid := len(rows) / 2
	if err := ld.load(ctx, "", rows[:mid], true); err != nil {
		return err
	}
	return ld.load(ctx, "", rows[mid:], true)
}

// dbDetail renders PostgreSQL's complaint about one row for its dead
// letter: the table, message, detail (shortened: for a constraint it
// repeats the whole row, which the dead letter holds anyway) and SQLSTATE.
func dbDetail(info *tableInfo, err error) string {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err.Error()
	}
	var b strings.Builder
	b.WriteString(info.targetSQL)
	b.WriteString(": ")
	b.WriteString(pe.Message)
	if pe.Detail != "" {
		d := pe.Detail
		if len(d) > 200 {
			d = d[:200] + "..."
		}
		b.WriteString(" (")
		b.WriteString(d)
		b.WriteString(")")
	}
	b.WriteString(" [SQLSTATE ")
	b.WriteString(pe.Code)
	b.WriteString("]")
	return b.String()
}

// rowSource feeds the rows of one chunk to pgx's CopyFrom.
type rowSource struct {
	g    *group
	rows []int
	i    int
}

func (r *rowSource) Next() bool {
	r.i++
	return r.i <= len(r.rows)
}

func (r *rowSource) Values() ([]any, error) { return r.g.row(r.rows[r.i-1]), nil }
func (r *rowSource) Err() error             { return nil }

// tableInfo is what the sink needs per table, computed once.
type tableInfo struct {
	t         *schema.Table
	cols      []schema.Column
	names     []string
	conv      []convFunc
	target    pgx.Identifier
	targetSQL string // target, quoted
	colList   string // names, quoted, comma-separated
	id        string // id column, "" when none
	// staged counts down the batches that still skip the direct copy
	// after a duplicate id (tables with an id column only).
	staged atomic.Int32
}

// direct reports whether this batch may try the direct copy, and counts
// down the batches that may not.
func (info *tableInfo) direct() bool {
	for {
		n := info.staged.Load()
		if n <= 0 {
			return true
		}
		if info.staged.CompareAndSwap(n, n-1) {
			return false
		}
	}
}

// maxCachedTables bounds the tableInfo cache: each config reload brings
// new *schema.Table values, and the old ones must not pile up.
const maxCachedTables = 256

func (s *Sink) tableInfo(t *schema.Table) (*tableInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if info, ok := s.tables[t]; ok {
		return info, nil
	}
	info := &tableInfo{t: t, cols: t.ColumnList(), target: t.Identifier(), id: t.ID}
	info.targetSQL = info.target.Sanitize()
	quoted := make([]string, len(info.cols))
	for i, c := range info.cols {
		conv, err := converterFor(c.Type)
		if err != nil {
			return nil, fmt.Errorf("table %s column %s: %w", t.Name, c.Name, err)
		}
		info.conv = append(info.conv, conv)
		info.names = append(info.names, c.Name)
		quoted[i] = pgx.Identifier{c.Name}.Sanitize()
	}
	info.colList = strings.Join(quoted, ", ")
	if len(s.tables) >= maxCachedTables {
		clear(s.tables)
	}
	s.tables[t] = info
	return info, nil
}
