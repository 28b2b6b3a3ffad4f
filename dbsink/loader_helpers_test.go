package dbsink_test

// Helpers for the loader-level tests of the PostgreSQL sink: the real
// loader, the real dbsink, a throwaway PostgreSQL server and lines appended
// by the rotatefile writer. Nothing here fakes pgx; the only stand-in is
// loadertest.MemSink, the "Kafka side" of the loader, which the issue asks for.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dualwrite/ingest/dbsink"
	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/internal/pgserver"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
)

// loaderStream is the one stream the loader tests write.
const loaderStream = "api"

// feedTables are the tables of feedSchema. Both have a uuid column "id"; only
// raw_item declares it as the id (PRIMARY KEY, staging table and ON
// CONFLICT path), raw_event is loaded by plain COPY, so a line stored twice
// there shows up as two rows: exactly-once cannot hide behind ON CONFLICT.
var feedTables = []string{"raw_event", "raw_item"}

func feedSchema(tb testing.TB) *schema.Schema {
	tb.Helper()
	cols := map[string]string{"id": "uuid", "acct": "bigint", "seq": "bigint", "body": "text"}
	s, err := schema.New(map[string]*schema.Table{
		"raw_item":  {Key: "acct", ID: "id", Columns: cols},
		"raw_event": {Key: "acct", Columns: cols},
	})
	if err != nil {
		tb.Fatalf("schema: %v", err)
	}
	return s
}

// rowID is the id column of a row the feed appended.
func rowID(row []byte) (string, error) {
	var r struct {
		ID string `json:"id"`
	}
	err := json.Unmarshal(row, &r)
	return r.ID, err
}

// hasLine reports whether the in-memory sink received line i of the feed
// (assuming it received lines in order, which checkInOrder verifies at
// the end).
func hasLine(s *loadertest.MemSink, i int, id string) bool {
	r, ok := s.At(i)
	if !ok {
		return false
	}
	got, err := rowID(r.Row)
	return err == nil && got == id
}

// checkInOrder fails unless the in-memory sink received exactly the
// feed's rows, once each, in append order.
func checkInOrder(tb testing.TB, s *loadertest.MemSink, want []feedRow) {
	tb.Helper()
	recs := s.Records()
	if len(recs) != len(want) {
		tb.Errorf("%s sink received %d records, want %d", s.Name(), len(recs), len(want))
	}
	for i := range min(len(recs), len(want)) {
		id, err := rowID(recs[i].Row)
		if err != nil {
			tb.Errorf("%s sink: row at %v: %v", s.Name(), recs[i].Pos, err)
			return
		}
		if id != want[i].ID {
			tb.Errorf("%s sink: record %d is %s, want %s (seq %d): lost, repeated or reordered", s.Name(), i, id, want[i].ID, want[i].Seq)
			return
		}
	}
}

// openSink opens a dbsink on srv with fast retries (the backoff is capped
// at 200 ms, so a run resumes within about that after the server is back,
// and the crash test's short runs get past a kill), closed in cleanup
// (Close is idempotent).
func openSink(tb testing.TB, srv *pgserver.Server, sch *schema.Schema, log *slog.Logger) *dbsink.Sink {
	tb.Helper()
	s, err := dbsink.New(context.Background(), dbsink.Config{
		URL:        srv.URL(),
		Schema:     sch,
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
		Logger:     log,
	})
	if err != nil {
		tb.Fatalf("dbsink.New: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// twoSinks is where the outage tests start: a PostgreSQL of the test's
// own with feedSchema's tables, the DB sink on it and a MemSink as the
// Kafka side, both fed by a running loader from a spool of the test's own.
type twoSinks struct {
	srv   *pgserver.Server
	sch   *schema.Schema
	logs  *loadertest.Log
	db    *dbsink.Sink
	kafka *loadertest.MemSink
	spool string
	feed  *lineFeed
	run   *loadertest.Running
}

// startTwoSinks starts that loader. The feed's files rotate at maxBytes,
// a batch holds up to maxRecords lines, and the DB sink has up to
// dbInFlight batches awaiting their ack (0: the loader's default).
func startTwoSinks(t *testing.T, maxBytes int64, body string, maxRecords, dbInFlight int) *twoSinks {
	t.Helper()
	e := &twoSinks{srv: testenv.Postgres(t), sch: feedSchema(t), kafka: loadertest.NewMemSink("kafka"), spool: t.TempDir()}
	migrateTables(t, e.srv, e.sch)
	var log *slog.Logger
	e.logs, log = loadertest.NewLog(t)
	e.db = openSink(t, e.srv, e.sch, log)
	e.feed = openFeed(t, e.spool, maxBytes, body)
	e.run = loadertest.Start(t, loader.Config{
		Dir:             e.spool,
		Schema:          e.sch,
		Batch:           loader.BatchConfig{MaxRecords: maxRecords, Linger: 5 * time.Millisecond},
		ShutdownTimeout: 10 * time.Second,
		Logger:          log,
	}, loader.SinkSpec{Sink: e.db, MaxInFlight: dbInFlight}, loader.SinkSpec{Sink: e.kafka})
	return e
}

func migrateTables(tb testing.TB, srv *pgserver.Server, sch *schema.Schema) {
	tb.Helper()
	s := openSink(tb, srv, sch, nil)
	if err := s.Migrate(testenv.Context(tb, 30*time.Second)); err != nil {
		tb.Fatalf("Migrate: %v", err)
	}
	s.Close()
}

// rowCount returns the number of rows in the tables of feedSchema, or -1
// when the server cannot be asked right now (it may be down): for polling.
func rowCount(srv *pgserver.Server) int {
	n, err := loadertest.TryQueryInt(srv.URL(), `SELECT (SELECT count(*) FROM raw_item) + (SELECT count(*) FROM raw_event)`)
	if err != nil {
		return -1
	}
	return int(n)
}

// checkTables fails unless the tables hold exactly the rows of want: the
// row count per table, and per id: present once, in the right table, with
// the right seq; nothing else.
func checkTables(tb testing.TB, srv *pgserver.Server, want []feedRow) {
	tb.Helper()
	conn := loadertest.Connect(tb, srv)
	byID := make(map[string]feedRow, len(want))
	perTable := map[string]int{}
	for _, r := range want {
		if _, dup := byID[r.ID]; dup {
			tb.Fatalf("the test generated id %s twice", r.ID)
		}
		byID[r.ID] = r
		perTable[r.Table]++
	}
	seen := make(map[string]int, len(want))
	var missing, dup, unexpected, wrong []string
	for _, table := range feedTables {
		if n := loadertest.QueryInt(tb, conn, `SELECT count(*) FROM `+pgx.Identifier{table}.Sanitize()); n != int64(perTable[table]) {
			tb.Errorf("%s holds %d rows, want %d", table, n, perTable[table])
		}
		rows, err := conn.Query(context.Background(), `SELECT id::text, seq FROM `+pgx.Identifier{table}.Sanitize())
		if err != nil {
			tb.Fatal(err)
		}
		for rows.Next() {
			var id string
			var seq int
			if err := rows.Scan(&id, &seq); err != nil {
				tb.Fatal(err)
			}
			seen[id]++
			r, ok := byID[id]
			switch {
			case !ok:
				unexpected = append(unexpected, id)
			case seen[id] == 2:
				dup = append(dup, fmt.Sprintf("%s (seq %d)", id, r.Seq))
			case r.Table != table || r.Seq != seq:
				wrong = append(wrong, fmt.Sprintf("%s in %s with seq %d, want %s seq %d", id, table, seq, r.Table, r.Seq))
			}
		}
		if err := rows.Err(); err != nil {
			tb.Fatal(err)
		}
	}
	for _, r := range want {
		if seen[r.ID] == 0 {
			missing = append(missing, fmt.Sprintf("%s (seq %d)", r.ID, r.Seq))
		}
	}
	if len(missing)+len(dup)+len(unexpected)+len(wrong) > 0 {
		h := func(s []string) []string { return s[:min(len(s), 5)] }
		tb.Fatalf("of %d lines: %d missing (first %v), %d duplicated (first %v), %d unexpected (first %v), %d wrong (first %v)",
			len(want), len(missing), h(missing), len(dup), h(dup), len(unexpected), h(unexpected), len(wrong), h(wrong))
	}
}

// spoolBytes is the size of the stream's data files in spool.
func spoolBytes(tb testing.TB, spool string) int64 {
	tb.Helper()
	entries, err := os.ReadDir(filepath.Join(spool, loaderStream))
	if err != nil {
		tb.Fatal(err)
	}
	var n int64
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if info, err := e.Info(); err == nil {
			n += info.Size()
		}
	}
	return n
}
