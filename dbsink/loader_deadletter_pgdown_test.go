package dbsink_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/loader"
)

// A line no sink can take is dead-lettered when the stream reads it, not
// when the slowest sink gets to it: with PostgreSQL (a real server,
// stopped) the first sink, the in-memory "Kafka side" second, the Kafka
// side keeps loading and the bad line appended during the outage is in
// the dead-letter file while PostgreSQL is still down, although the
// database sink's batches cannot get that far (one in flight, held by the
// outage, ~1000 lines before the bad one; before, only the first sink's
// pipeline wrote dead letters, when its batches reached the line).
// Asserted after the restart:
// every good row is in the tables exactly once, the Kafka side got every
// line in order, and the bad line was dead-lettered once.
func TestLoaderDeadLettersWhilePostgresIsDown(t *testing.T) {
	t.Parallel()
	e := startTwoSinks(t, 64<<20, "pgdown", 100, 1) // one file, so offsets hold
	srv, kafka, spool, feed, run := e.srv, e.kafka, e.spool, e.feed, e.run

	add := func(n int) {
		t.Helper()
		for range n {
			if _, err := feed.add(); err != nil {
				t.Fatal(err)
			}
		}
	}
	add(200)
	testenv.Eventually(t, 30*time.Second, func() bool { return rowCount(srv) >= 200 && kafka.Count() >= 200 },
		"both sinks loading before the outage (%v)", loadertest.Lazy(func() string { return fmt.Sprintf("db %d, kafka %d rows", rowCount(srv), kafka.Count()) }))

	ctx := testenv.Context(t, 3*time.Minute)
	if err := srv.Stop(ctx); err != nil {
		t.Fatalf("stop postgres: %v", err)
	}
	add(1000)
	bad := fmt.Sprintf(`{"table":"no_such_table","row":{"id":%q,"acct":1,"seq":-1,"body":"x"}}`, newUUID())
	if err := feed.addRaw(bad); err != nil {
		t.Fatal(err)
	}
	add(200)
	want := feed.all()
	badOff := feed.badOff[0]

	stateDir := filepath.Join(spool, ".ingest")
	testenv.Eventually(t, 30*time.Second, func() bool { return kafka.Count() >= len(want) },
		"the Kafka side loads every line while postgres is down (%v of %d)", loadertest.Lazy(func() string { return fmt.Sprint(kafka.Count()) }), len(want))
	testenv.Eventually(t, 30*time.Second, func() bool {
		dls, err := loader.ReadDeadLetters(stateDir, loaderStream)
		return err == nil && len(dls) > 0
	}, "the bad line is dead-lettered while postgres is down")
	if srv.PID() != 0 {
		t.Fatal("postgres is running before the test started it")
	}
	dbPos := run.Position(loaderStream, "db")
	if !dbPos.Before(loader.Position{File: dbPos.File, Offset: badOff}) {
		t.Fatalf("the db checkpoint %v passed the bad line at %d during the outage: the test proves nothing", dbPos, badOff)
	}
	dls := loadertest.DeadLetters(t, stateDir, loaderStream)
	if len(dls) != 1 || dls[0].Offset != badOff || dls[0].Reason != "unknown_table" || dls[0].Line == nil || *dls[0].Line != bad {
		t.Fatalf("dead letters during the outage: %+v; want one unknown_table entry at offset %d holding %s", dls, badOff, bad)
	}
	t.Logf("postgres down: dead letter at %s:%d written, db checkpoint at %v; stats %+v", dls[0].File, dls[0].Offset, dbPos, run.Loader.Stats().Streams[loaderStream])

	if err := srv.Start(ctx); err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	testenv.Eventually(t, 60*time.Second, func() bool { return rowCount(srv) >= len(want) },
		"postgres catches up (%v of %d rows)", loadertest.Lazy(func() string { return fmt.Sprint(rowCount(srv)) }), len(want))
	testenv.Eventually(t, 30*time.Second, func() bool { return run.Position(loaderStream, "db") == run.Position(loaderStream, "kafka") },
		"both checkpoints at the end (%v)", loadertest.Lazy(func() string {
			return fmt.Sprintf("db %v, kafka %v", run.Position(loaderStream, "db"), run.Position(loaderStream, "kafka"))
		}))
	if err := run.Stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkTables(t, srv, want)
	checkInOrder(t, kafka, want)
	if dls := loadertest.DeadLetters(t, stateDir, loaderStream); len(dls) != 1 {
		t.Fatalf("%d dead letters after postgres caught up, want the one bad line once: %+v", len(dls), dls)
	}
	t.Logf("stats at the end: %+v", run.Loader.Stats().Streams[loaderStream])
}
