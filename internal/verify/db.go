package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
	"github.com/jackc/pgx/v5"
)

// dbReader reads a table's (account, id) pairs in the window from one
// snapshot: both passes run in the same REPEATABLE READ transaction.
type dbReader struct {
	conn   *pgx.Conn
	tx     pgx.Tx
	table  *schema.Table
	window loader.Window

	keyType, idType, timeType schema.Type
}

func openDB(ctx context.Context, url string, t *schema.Table, w loader.Window) (*dbReader, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("postgres (db.url): %w", err)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("postgres: begin: %w", err)
	}
	return &dbReader{
		conn: conn, tx: tx, table: t, window: w,
		keyType: columnType(t, t.Key), idType: columnType(t, t.ID), timeType: columnType(t, t.Time),
	}, nil
}

func (r *dbReader) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.tx.Rollback(ctx) // read only: nothing to keep
	r.conn.Close(ctx)
}

// scan calls visit for every row in the window, or only for the rows of
// accounts when that is not nil.
func (r *dbReader) scan(ctx context.Context, accounts []string, visit func(account, id string)) error {
	q, args := r.query(accounts)
	rows, err := r.tx.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("postgres: read %s: %w", r.table.DBTable, err)
	}
	defer rows.Close()
	windowed := !r.window.IsZero()
	var (
		key, id string
		tm      *time.Time
		tmText  *string
	)
	dest := []any{&key, &id}
	if windowed {
		if r.timeType == schema.Timestamptz {
			dest = append(dest, &tm)
		} else {
			dest = append(dest, &tmText)
		}
	}
	for rows.Next() {
		tm, tmText = nil, nil
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("postgres: read %s: %w", r.table.DBTable, err)
		}
		if windowed && !r.window.Contains(r.rowTime(tm, tmText)) {
			continue
		}
		visit(canonical(r.keyType, key), canonical(r.idType, id))
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: read %s: %w", r.table.DBTable, err)
	}
	return nil
}

// rowTime reads the time column the way the loader read the time field
// (schema.ParseTime: epoch seconds below 1e11, else milliseconds, or RFC
// 3339); NULL or an unreadable value is the zero time, outside any window.
func (r *dbReader) rowTime(tm *time.Time, text *string) time.Time {
	if tm != nil {
		return *tm
	}
	if text == nil {
		return time.Time{}
	}
	raw := []byte(*text)
	if r.timeType == schema.Text {
		raw, _ = json.Marshal(*text)
	}
	t, err := schema.ParseTime(raw)
	if err != nil {
		return time.Time{}
	}
	return t
}

// query builds the SELECT. The window is pushed down exactly where the
// column type allows an indexable range (timestamptz; integers, split at
// the seconds/milliseconds threshold); rowTime applies it exactly in any
// case. Identifiers come from the config and are quoted.
func (r *dbReader) query(accounts []string) (string, []any) {
	ident := func(s string) string { return pgx.Identifier{s}.Sanitize() }
	key, id := ident(r.table.Key), ident(r.table.ID)
	var b strings.Builder
	fmt.Fprintf(&b, "SELECT %s::text, %s::text", key, id)
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if !r.window.IsZero() {
		tcol := ident(r.table.Time)
		if r.timeType == schema.Timestamptz {
			fmt.Fprintf(&b, ", %s", tcol)
			if !r.window.Since.IsZero() {
				where = append(where, tcol+" >= "+arg(r.window.Since))
			}
			if !r.window.Until.IsZero() {
				where = append(where, tcol+" < "+arg(r.window.Until))
			}
		} else {
			fmt.Fprintf(&b, ", %s::text", tcol)
		}
		switch r.timeType {
		case schema.Bigint, schema.Integer, schema.Smallint:
			const threshold = "100000000000" // schema's epoch seconds/milliseconds threshold, 1e11
			secs := []string{tcol + " > -" + threshold, tcol + " < " + threshold}
			millis := []string{"(" + tcol + " <= -" + threshold + " OR " + tcol + " >= " + threshold + ")"}
			if s := r.window.Since; !s.IsZero() {
				secs = append(secs, tcol+" >= "+arg(ceilUnit(s, time.Second)))
				millis = append(millis, tcol+" >= "+arg(ceilUnit(s, time.Millisecond)))
			}
			if u := r.window.Until; !u.IsZero() {
				secs = append(secs, tcol+" < "+arg(ceilUnit(u, time.Second)))
				millis = append(millis, tcol+" < "+arg(ceilUnit(u, time.Millisecond)))
			}
			where = append(where, "(("+strings.Join(secs, " AND ")+") OR ("+strings.Join(millis, " AND ")+"))")
		}
	}
	if accounts != nil {
		// A text[] parameter cast to the key's type keeps the key's index usable.
		where = append(where, fmt.Sprintf("%s = ANY((%s::text[])::%s[])", key, arg(accounts), r.keyType))
	}
	fmt.Fprintf(&b, " FROM %s", r.table.Identifier().Sanitize())
	if len(where) > 0 {
		b.WriteString(" WHERE " + strings.Join(where, " AND "))
	}
	return b.String(), args
}

// ceilUnit is the smallest whole number of units at or after t: for an
// integer time column v (in units), v >= ceilUnit(since) is the same as
// time(v) >= since, and v < ceilUnit(until) the same as time(v) < until.
func ceilUnit(t time.Time, unit time.Duration) int64 {
	var v int64
	var rem time.Duration
	switch unit {
	case time.Second:
		v, rem = t.Unix(), time.Duration(t.Nanosecond())
	default:
		v, rem = t.UnixMilli(), time.Duration(t.Nanosecond())%time.Millisecond
	}
	if rem > 0 {
		v++
	}
	return v
}
