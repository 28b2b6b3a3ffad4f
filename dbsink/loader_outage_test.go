package dbsink_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/internal/testenv"
)

// PostgreSQL is stopped (fast shutdown) for the outage (20 s, as the issue
// asks; INGEST_DB_LOADER_OUTAGE=5s shortens it while iterating) in the
// middle of a run of the real loader feeding the real dbsink and an
// in-memory "Kafka side" sink, while lines keep being appended by the
// rotatefile writer. Asserted:
//   - during the outage the Kafka-side sink keeps receiving: by mid-outage
//     and again at its end, before the server is started, it holds every
//     line appended so far, including the ones appended after the stop;
//   - the database sink claims nothing while the server is down (its
//     checkpoint stays before the first line appended after the stop);
//   - after Start, with nothing else done, the run resumes by itself: the
//     loader never returned, the dbsink retried (logged) rather than failing
//     the batch back to the loader, and the tables catch up;
//   - at the end the tables hold every line exactly once (count per table
//     and per uuid, with its seq; raw_event has no id column, so a
//     duplicate would show), and the Kafka side got every line once, in
//     order.
func TestLoaderPostgresOutageResumesAndOtherSinkGoesOn(t *testing.T) {
	t.Parallel()
	outage := loadertest.EnvDuration(t, "INGEST_DB_LOADER_OUTAGE", 20*time.Second)
	e := startTwoSinks(t, 256<<10, "outage", 500, 0)
	srv, logs, db, kafka, feed, run := e.srv, e.logs, e.db, e.kafka, e.feed, e.run

	// About 500 lines/s for the whole test.
	stopFeed := make(chan struct{})
	fed := make(chan error, 1)
	go func() { fed <- feed.run(stopFeed, 0, 2*time.Millisecond, 1, 0) }()
	feedStopped := false
	defer func() {
		if !feedStopped {
			close(stopFeed)
			<-fed
		}
	}()

	testenv.Eventually(t, 30*time.Second, func() bool {
		return rowCount(srv) >= 200 && kafka.Count() >= 200
	}, "both sinks loading before the outage (%v)", loadertest.Lazy(func() string { return fmt.Sprintf("db %d, kafka %d rows", rowCount(srv), kafka.Count()) }))

	ctx := testenv.Context(t, outage+3*time.Minute)
	if err := srv.Stop(ctx); err != nil {
		t.Fatalf("stop postgres: %v", err)
	}
	stoppedAt := time.Now()
	// Every line from here on was appended while the server was down.
	rows := feed.all()
	first := len(rows)
	t.Logf("postgres stopped after %d lines; holding it down for %v", first, outage)

	// Hold the outage, checking on the way that the Kafka side keeps up.
	time.Sleep(outage / 2)
	rows = feed.all()
	mid := len(rows)
	testenv.Eventually(t, 15*time.Second, func() bool { return hasLine(kafka, mid-1, rows[mid-1].ID) },
		"kafka side receives the lines appended during the outage (has %v of %d)", loadertest.Lazy(func() string { return fmt.Sprint(kafka.Count()) }), mid)
	dbMid := run.Position(loaderStream, "db")
	if remaining := outage - time.Since(stoppedAt); remaining > 0 {
		time.Sleep(remaining)
	}
	rows = feed.all()
	last := len(rows)
	testenv.Eventually(t, 15*time.Second, func() bool { return hasLine(kafka, last-1, rows[last-1].ID) },
		"kafka side receives every line appended during the outage before postgres is back (has %v of %d)", loadertest.Lazy(func() string { return fmt.Sprint(kafka.Count()) }), last)
	if srv.PID() != 0 {
		t.Fatal("postgres is running before the test started it")
	}
	if !run.Alive() {
		t.Fatalf("the loader stopped during the outage: %v", run.Err())
	}
	dbEnd := run.Position(loaderStream, "db")
	firstRec, ok := kafka.At(first)
	if !ok {
		t.Fatalf("the kafka side has %d records, fewer than the %d before the outage's first line", kafka.Count(), first+1)
	}
	firstDuringOutage := firstRec.Pos
	if dbEnd != dbMid {
		t.Errorf("db checkpoint moved from %v to %v while postgres was down", dbMid, dbEnd)
	}
	if firstDuringOutage.Before(dbEnd) {
		t.Errorf("db checkpoint %v passes line %d at %v, appended after postgres stopped", dbEnd, first, firstDuringOutage)
	}
	down := time.Since(stoppedAt)
	t.Logf("down for %v: kafka side received %d lines appended during the outage; db checkpoint held at %v", down.Round(time.Millisecond), last-first, dbEnd)
	if last-first < 100 {
		t.Fatalf("only %d lines appended during the outage: the test proves nothing", last-first)
	}

	if err := srv.Start(ctx); err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	restartedAt := time.Now()
	testenv.Eventually(t, 60*time.Second, func() bool { return rowCount(srv) >= last },
		"the run resumes by itself and stores the outage's lines (%v of %d rows)", loadertest.Lazy(func() string { return fmt.Sprint(rowCount(srv)) }), last)
	t.Logf("db caught up with the %d lines of the outage %v after the restart", last, time.Since(restartedAt).Round(time.Millisecond))

	// Keep appending for a moment after the restart, then stop and seal.
	testenv.Eventually(t, 30*time.Second, func() bool { return len(feed.all()) >= last+300 }, "lines appended after the restart")
	close(stopFeed)
	feedStopped = true
	if err := <-fed; err != nil {
		t.Fatal(err)
	}
	if err := feed.w.Close(); err != nil {
		t.Fatalf("close writer: %v", err)
	}
	want := feed.all()
	testenv.Eventually(t, 60*time.Second, func() bool { return rowCount(srv) >= len(want) && kafka.Count() >= len(want) },
		"both sinks take every line (%v of %d)", loadertest.Lazy(func() string { return fmt.Sprintf("db %d, kafka %d", rowCount(srv), kafka.Count()) }), len(want))
	testenv.Eventually(t, 10*time.Second, func() bool { return run.Position(loaderStream, "db") == run.Position(loaderStream, "kafka") },
		"both checkpoints at the end of the data (%v)", loadertest.Lazy(func() string {
			return fmt.Sprintf("db %v, kafka %v", run.Position(loaderStream, "db"), run.Position(loaderStream, "kafka"))
		}))
	if !run.Alive() {
		t.Fatalf("the loader stopped: %v", run.Err())
	}
	if err := run.Stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	checkTables(t, srv, want)
	checkInOrder(t, kafka, want)
	if cp, ok, err := db.Checkpoint(testenv.Context(t, 30*time.Second), loaderStream); err != nil || !ok || cp != run.Position(loaderStream, "kafka") {
		t.Errorf("db checkpoint in the database = %v, %v, %v; want %v", cp, ok, err, run.Position(loaderStream, "kafka"))
	}
	// The database sink waited the outage out itself: it logged retries and
	// never failed a batch back to the loader (which would replay it).
	if n := logs.Count("dbsink: transient error, retrying"); n == 0 {
		t.Errorf("no retries logged by the db sink during a %v outage", down)
	}
	if n := logs.Count("sink failed; replaying from checkpoint", "sink=db"); n != 0 {
		t.Errorf("the db sink failed %d batches back to the loader during the outage", n)
	}
	t.Logf("%d lines in total, %d appended during the %v outage", len(want), last-first, down.Round(time.Millisecond))
}
