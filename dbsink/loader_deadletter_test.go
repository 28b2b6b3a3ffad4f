package dbsink_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/loader"
)

// Lines whose "table" is SQL (`raw_item; DROP TABLE raw_item --` and a
// quote-escaping variant), names a table the config lacks (including ones
// that exist in the database but not in the config, a schema-qualified
// name and a case variant) go through the real loader and dbsink.
// Asserted:
//   - each is dead-lettered exactly once (two sinks read the stream) in
//     <spool>/.ingest/deadletter/<stream>/*.ndjson with reason
//     unknown_table, the original line, its file and byte offset;
//   - every valid line around them, in the same batch (written before the
//     loader starts) and tailed live afterwards, is loaded exactly once
//     (per-uuid check) and reaches the other sink in order;
//   - every table is intact: the public schema holds exactly raw_item,
//     raw_event, ingest_checkpoints and a table created beforehand, which
//     still has its row; no row of a hostile line reached any table.
func TestLoaderUnknownAndHostileTablesAreDeadLettered(t *testing.T) {
	t.Parallel()
	srv := testenv.Postgres(t)
	conn := loadertest.Connect(t, srv)
	loadertest.Exec(t, conn, `CREATE TABLE unrelated (x int)`)
	loadertest.Exec(t, conn, `INSERT INTO unrelated VALUES (42)`)
	sch := feedSchema(t)
	migrateTables(t, srv, sch)

	hostile := func(table string) string {
		return fmt.Sprintf(`{"table":%s,"row":{"id":%q,"acct":1,"seq":-1,"body":"hostile"}}`, table, newUUID())
	}
	bad := []string{
		hostile(`"raw_item; DROP TABLE raw_item --"`),
		hostile(`"raw_item\"; DROP TABLE unrelated; --"`),
		hostile(`"no_such_table"`),
		hostile(`"ingest_checkpoints"`), // in the database, not in the config
		`{"table":"unrelated","row":{"x":1,"acct":1}}`,
		hostile(`"public.raw_item"`),
		hostile(`"RAW_ITEM"`),
	}

	spool := t.TempDir()
	// One file (no rotation), so dead-letter offsets are predictable.
	feed := openFeed(t, spool, 64<<20, "around")
	appendRound := func() {
		t.Helper()
		for _, line := range bad {
			for range 3 {
				if _, err := feed.add(); err != nil {
					t.Fatal(err)
				}
			}
			if err := feed.addRaw(line); err != nil {
				t.Fatal(err)
			}
		}
		for range 3 {
			if _, err := feed.add(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Round one is on disk before the loader starts: hostile and valid
	// lines share a batch.
	appendRound()
	testenv.Eventually(t, 10*time.Second, func() bool { return spoolBytes(t, spool) == feed.size },
		"round one on disk (%v of %d bytes)", loadertest.Lazy(func() string { return fmt.Sprint(spoolBytes(t, spool)) }), feed.size)

	_, log := loadertest.NewLog(t)
	db := openSink(t, srv, sch, log)
	kafka := loadertest.NewMemSink("kafka")
	run := loadertest.Start(t, loader.Config{
		Dir:    spool,
		Schema: sch,
		Batch:  loader.BatchConfig{Linger: 5 * time.Millisecond},
		Logger: log,
	}, loader.SinkSpec{Sink: db}, loader.SinkSpec{Sink: kafka})
	round1 := len(feed.all())
	testenv.Eventually(t, 30*time.Second, func() bool { return rowCount(srv) >= round1 },
		"round one loaded (%v of %d rows)", loadertest.Lazy(func() string { return fmt.Sprint(rowCount(srv)) }), round1)

	// Round two is tailed from the active file while the loader runs.
	appendRound()
	want := feed.all()
	testenv.Eventually(t, 30*time.Second, func() bool { return rowCount(srv) >= len(want) && kafka.Count() >= len(want) },
		"round two loaded (%v of %d)", loadertest.Lazy(func() string { return fmt.Sprintf("db %d, kafka %d", rowCount(srv), kafka.Count()) }), len(want))
	if err := run.Stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	checkTables(t, srv, want)
	checkInOrder(t, kafka, want)

	// Every table is intact, and nothing else appeared.
	rows, err := conn.Query(t.Context(), `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if wantTables := []string{"ingest_checkpoints", "raw_event", "raw_item", "unrelated"}; !slices.Equal(tables, wantTables) {
		t.Errorf("public tables %v, want %v", tables, wantTables)
	}
	if n := loadertest.QueryInt(t, conn, `SELECT count(*) FROM unrelated WHERE x = 42`); n != 1 {
		t.Errorf("unrelated holds %d rows with x = 42, want 1", n)
	}
	if n := loadertest.QueryInt(t, conn, `SELECT count(*) FROM unrelated`); n != 1 {
		t.Errorf("unrelated holds %d rows, want 1", n)
	}
	if n := loadertest.QueryInt(t, conn, `SELECT (SELECT count(*) FROM raw_item WHERE seq < 0 OR body = 'hostile') + (SELECT count(*) FROM raw_event WHERE seq < 0 OR body = 'hostile')`); n != 0 {
		t.Errorf("%d rows of hostile lines were stored", n)
	}

	// Each bad line is dead-lettered once, as unknown_table, with its bytes
	// and where it was.
	dls := loadertest.DeadLetters(t, filepath.Join(spool, ".ingest"), loaderStream)
	if len(dls) != len(feed.bad) {
		for _, d := range dls {
			t.Logf("dead letter: %+v", d)
		}
		t.Fatalf("%d dead letters, want %d", len(dls), len(feed.bad))
	}
	byOffset := map[int64]loader.DeadLetter{}
	for _, d := range dls {
		byOffset[d.Offset] = d
	}
	for i, line := range feed.bad {
		d, ok := byOffset[feed.badOff[i]]
		switch {
		case !ok:
			t.Errorf("no dead letter at offset %d for %s", feed.badOff[i], line)
		case d.Reason != "unknown_table":
			t.Errorf("dead letter of %s: reason %q, want unknown_table", line, d.Reason)
		case d.Line == nil || *d.Line != line:
			t.Errorf("dead letter at %d holds %v, want %s", d.Offset, d.Line, line)
		case d.Stream != loaderStream || d.File == "" || strings.HasSuffix(d.File, ".open"):
			t.Errorf("dead letter of %s: stream %q, file %q", line, d.Stream, d.File)
		case d.Sink != "":
			t.Errorf("dead letter of %s names sink %q: the loader, not a sink, must refuse it", line, d.Sink)
		}
	}
}
