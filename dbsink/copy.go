package dbsink

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
)

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
