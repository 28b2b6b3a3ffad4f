package dbsink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dualwrite/ingest/schema"
)

// CheckpointTable is the table holding every sink's checkpoints, one row
// per (sink, stream). It lives in the connection's default schema (the
// first of search_path), next to unqualified tables.
const CheckpointTable = "ingest_checkpoints"

// checkpointDDL creates [CheckpointTable]. file and offset are a
// loader.Position: the first line of the stream the sink has not
// committed.
var checkpointDDL = `CREATE TABLE IF NOT EXISTS ` + pgx.Identifier{CheckpointTable}.Sanitize() + ` (
	"sink" text NOT NULL,
	"stream" text NOT NULL,
	"file" text NOT NULL,
	"offset" bigint NOT NULL,
	"updated_at" timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY ("sink", "stream")
)`

// checkpointSQL holds the statements on CheckpointTable.
type checkpointSQL struct {
	read, lock, seed, save string
}

func newCheckpointSQL() checkpointSQL {
	t := pgx.Identifier{CheckpointTable}.Sanitize()
	where := ` WHERE "sink" = $1 AND "stream" = $2`
	return checkpointSQL{
		read: `SELECT "file", "offset" FROM ` + t + where,
		lock: `SELECT "file", "offset" FROM ` + t + where + ` FOR UPDATE`,
		// The empty position sorts before every real one. The row commits
		// only together with a save.
		seed: `INSERT INTO ` + t + ` ("sink", "stream", "file", "offset") VALUES ($1, $2, '', 0) ON CONFLICT ("sink", "stream") DO NOTHING`,
		save: `UPDATE ` + t + ` SET "file" = $3, "offset" = $4, "updated_at" = now()` + where,
	}
}

// DDL returns the SQL script that creates the configured tables and the
// checkpoint table, for `ingest schema sql`. Every statement is
// idempotent (IF NOT EXISTS), so the script can be run on every deploy;
// it does not alter tables that exist.
func DDL(s *schema.Schema) string {
	var b strings.Builder
	b.WriteString("-- ingest: destination tables and the Postgres sink's checkpoint table.\n")
	b.WriteString("-- Generated from the config; safe to run repeatedly.\n")
	for _, stmt := range ddlStatements(s) {
		b.WriteString("\n")
		b.WriteString(stmt)
		b.WriteString(";\n")
	}
	return b.String()
}

// ddlStatements lists the statements of DDL: schemas of schema-qualified
// tables, the tables in name order, then the checkpoint table.
func ddlStatements(s *schema.Schema) []string {
	var stmts, schemas []string
	for _, t := range s.Tables() {
		if id := t.Identifier(); len(id) == 2 && !slices.Contains(schemas, id[0]) {
			schemas = append(schemas, id[0])
		}
	}
	slices.Sort(schemas)
	for _, sc := range schemas {
		stmts = append(stmts, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{sc}.Sanitize())
	}
	for _, t := range s.Tables() {
		stmts = append(stmts, t.DDL())
	}
	return append(stmts, checkpointDDL)
}

// migrateLockKey serialises concurrent Migrate calls (two hosts deploying
// at once): CREATE TABLE IF NOT EXISTS is not safe against a concurrent
// create of the same table. The value is arbitrary but fixed.
const migrateLockKey = 0x696e67657374 // "ingest"

// Migrate creates the configured tables and the checkpoint table (see
// [DDL]) in one transaction, then checks tables that already existed:
// every configured column must exist, and a table with an id column needs
// a unique index on exactly that column, without which INSERT ... ON
// CONFLICT (id) fails. A column whose type differs from the configured
// one is only logged: pgx converts between compatible types (integer
// config, bigint column), and an incompatible one fails loudly at the
// first batch. Migrate does not retry; see [Retryable].
func (s *Sink) Migrate(ctx context.Context) error {
	err := s.withConn(ctx, func(conn *pgxpool.Conn) error {
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", pgx.QueryExecModeExec, int64(migrateLockKey)); err != nil {
				return fmt.Errorf("take migration lock: %w", err)
			}
			for _, stmt := range ddlStatements(s.cfg.Schema) {
				if _, err := tx.Exec(ctx, stmt); err != nil {
					return fmt.Errorf("%s: %w", firstLine(stmt), err)
				}
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("dbsink: migrate: %w", err)
	}
	var errs []error
	for _, t := range s.cfg.Schema.Tables() {
		if err := s.checkTable(ctx, t); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("dbsink: migrate: existing tables do not match the config: %w", errors.Join(errs...))
	}
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// checkTable compares an existing table with its definition.
func (s *Sink) checkTable(ctx context.Context, t *schema.Table) error {
	name := t.Identifier().Sanitize()
	type col struct {
		typ    string
		attnum int16
	}
	have := map[string]col{}
	var idUnique bool
	err := s.withConn(ctx, func(conn *pgxpool.Conn) error {
		// $1::regclass parses the quoted name exactly as SQL would.
		rows, err := conn.Query(ctx, `SELECT attname, format_type(atttypid, atttypmod), attnum
			FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`,
			pgx.QueryExecModeExec, name)
		if err != nil {
			return err
		}
		for rows.Next() {
			var n, typ string
			var num int16
			if err := rows.Scan(&n, &typ, &num); err != nil {
				return err
			}
			have[n] = col{typ, num}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if t.ID == "" {
			return nil
		}
		id, ok := have[t.ID]
		if !ok {
			return nil // reported below
		}
		return conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_index
			WHERE indrelid = $1::regclass AND indisunique AND indpred IS NULL
			AND indexprs IS NULL AND indnkeyatts = 1 AND indkey[0] = $2)`,
			pgx.QueryExecModeExec, name, id.attnum).Scan(&idUnique)
	})
	if err != nil {
		return fmt.Errorf("table %s: inspect: %w", name, err)
	}
	var errs []error
	for _, c := range t.ColumnList() {
		got, ok := have[c.Name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("table %s has no column %s", name, pgx.Identifier{c.Name}.Sanitize()))
		case !sameType(got.typ, c.Type):
			s.log.Warn("dbsink: column type differs from config", "table", name, "column", c.Name, "config", string(c.Type), "database", got.typ)
		}
	}
	if t.ID != "" && !idUnique {
		if _, ok := have[t.ID]; ok {
			errs = append(errs, fmt.Errorf("table %s has no unique index on its id column %s; ON CONFLICT (id) needs one (e.g. PRIMARY KEY)",
				name, pgx.Identifier{t.ID}.Sanitize()))
		}
	}
	return errors.Join(errs...)
}

// sameType compares format_type output with a canonical schema type,
// ignoring typmods (numeric(10,2) is a numeric).
func sameType(db string, t schema.Type) bool {
	if i := strings.IndexByte(db, '('); i >= 0 {
		db = db[:i]
	}
	if t == schema.Timestamptz {
		return db == "timestamp with time zone"
	}
	return db == string(t)
}
