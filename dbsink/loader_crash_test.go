package dbsink_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dualwrite/ingest/dbsink"
	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/loader"
)

// The real loader, with the dbsink as the owner of its checkpoint, is
// cancelled at random points (at least 20 times) while the rotatefile
// writer keeps appending (small files, so runs cross rotations and file
// retirement), and PostgreSQL is killed (SIGQUIT, crash recovery on start)
// a few times in between. Each run is a fresh "process": a new dbsink pool
// and a new loader, reading its position from the database. A random,
// short ShutdownTimeout makes the cancellation cut into batches in flight
// (the sink's context ends mid-transaction), as a crash would. Every 50th
// line is followed by a line for an unknown table, so checkpoints also
// move over lines that never reach the sink. Each run keeps 1 or 2
// batches in flight (2 queues a batch in the sink behind the one being
// stored, as ingest backfill does). Asserted: every run returns
// nil or, when cancelled while waiting for the database at start-up, the
// cancellation; at the end every line is in the tables exactly once (count
// per table and per uuid with its seq; raw_event has no id column, so a
// duplicate would show) and every bad line was dead-lettered.
func TestLoaderCrashAtRandomPointsExactlyOnce(t *testing.T) {
	srv := testenv.Postgres(t)
	sch := feedSchema(t)
	migrateTables(t, srv, sch)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	ctx := testenv.Context(t, 3*time.Minute)
	logs, log := loadertest.NewLog(t)

	spool := t.TempDir()
	feed := openFeed(t, spool, 32<<10, "crash")
	const n = 6000 // ~6 s of appending at ~1000 lines/s
	fed := make(chan error, 1)
	go func() { fed <- feed.run(nil, n, 5*time.Millisecond, 5, 50) }()

	// The killer: a few kills of the server at random moments while the
	// runs go on. It stops before the final run.
	var kills atomic.Int64
	stopKiller := make(chan struct{})
	killerDone := make(chan error, 1)
	go func() {
		krng := rand.New(rand.NewPCG(seed, 2))
		killerDone <- func() error {
			for {
				select {
				case <-stopKiller:
					return nil
				case <-time.After(time.Duration(600+krng.IntN(900)) * time.Millisecond):
				}
				if err := srv.Kill(); err != nil {
					return fmt.Errorf("kill: %w", err)
				}
				kills.Add(1)
				time.Sleep(time.Duration(50+krng.IntN(300)) * time.Millisecond) // hold it down
				if err := srv.Start(context.Background()); err != nil {
					return fmt.Errorf("start: %w", err)
				}
			}
		}()
	}()
	killerStopped := false
	stopKilling := func() {
		if !killerStopped {
			killerStopped = true
			close(stopKiller)
			if err := <-killerDone; err != nil {
				t.Error(err)
			}
		}
	}
	defer stopKilling()

	// Batches the loader saw fail: cut off by the shutdown timeout (the
	// sink's context ended mid-transaction or mid-retry).
	var failedBatches int
	countFailed := func(reg *prometheus.Registry) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "ingest_batches_failed_total" {
				for _, m := range mf.GetMetric() {
					failedBatches += int(m.GetCounter().GetValue())
				}
			}
		}
	}
	newRun := func(shutdown time.Duration) (*loader.Loader, *dbsink.Sink, *prometheus.Registry) {
		db := openSink(t, srv, sch, log) // closed in cleanup too, for runs a failure cuts short
		reg := prometheus.NewRegistry()
		l, err := loader.New(loader.Config{
			Dir:             spool,
			Schema:          sch,
			Batch:           loader.BatchConfig{MaxRecords: 1 + rng.IntN(300), Linger: time.Duration(1+rng.IntN(10)) * time.Millisecond},
			ShutdownTimeout: shutdown,
			Logger:          log,
			Registry:        reg,
		}, loader.SinkSpec{Sink: db, MaxInFlight: 1 + rng.IntN(2)}) // 2: ingest backfill's, batches queued in the sink
		if err != nil {
			db.Close()
			t.Fatal(err)
		}
		return l, db, reg
	}

	restarts, startCancels := 0, 0
	feedDone := false
	started := time.Now()
	for !feedDone || restarts < 20 || kills.Load() < 3 {
		if time.Since(started) > 90*time.Second {
			t.Fatalf("after %v: %d restarts, %d kills, feed done %v", time.Since(started), restarts, kills.Load(), feedDone)
		}
		l, db, reg := newRun(time.Duration(1+rng.IntN(50)) * time.Millisecond)
		runCtx, cancel := context.WithCancel(ctx)
		timer := time.AfterFunc(time.Duration(10+rng.IntN(300))*time.Millisecond, cancel)
		err := l.Run(runCtx)
		timer.Stop()
		cancel()
		db.Close()
		countFailed(reg)
		restarts++
		switch {
		case err == nil:
		case errors.Is(err, context.Canceled) && runCtx.Err() != nil:
			// Cancelled while the pipeline waited for the (killed) database
			// to read its checkpoint: Run reports that it could not start
			// rather than returning nil (see the report of this test).
			if startCancels == 0 {
				t.Logf("run %d, cancelled while starting, returned: %v", restarts, err)
			}
			startCancels++
		default:
			t.Fatalf("run %d: %v", restarts, err)
		}
		select {
		case err := <-fed:
			if err != nil {
				t.Fatal(err)
			}
			feedDone = true
			if err := feed.w.Close(); err != nil {
				t.Fatalf("close writer: %v", err)
			}
		default:
		}
	}
	stopKilling()
	if t.Failed() {
		t.FailNow()
	}
	if srv.PID() == 0 {
		t.Fatal("the killer left the server down")
	}

	// The last run finishes the job.
	want := feed.all()
	l, db, _ := newRun(10 * time.Second)
	if cp, ok, err := db.Checkpoint(ctx, loaderStream); err != nil || !ok {
		t.Fatalf("checkpoint before the final run: %v, %v, %v", cp, ok, err)
	} else {
		t.Logf("checkpoint before the final run: %v (stream ends at %v)", cp, loadertest.StreamEnd(t, spool, loaderStream))
	}
	done := make(chan error, 1)
	runCtx, cancel := context.WithCancel(ctx)
	go func() { done <- l.Run(runCtx) }()
	finalStopped := false
	defer func() {
		if !finalStopped {
			cancel()
			<-done
		}
	}()
	testenv.Eventually(t, 60*time.Second, func() bool { return rowCount(srv) >= len(want) },
		"the final run loads everything (%v of %d rows)", loadertest.Lazy(func() string { return fmt.Sprint(rowCount(srv)) }), len(want))
	// And passes the trailing lines the sink never sees: its checkpoint
	// reaches the end of the last file.
	end := loadertest.StreamEnd(t, spool, loaderStream)
	testenv.Eventually(t, 10*time.Second, func() bool { return l.Positions()[loaderStream]["db"] == end },
		"the final run reaches the end %v (at %v)", end, loadertest.Lazy(func() string { return l.Positions()[loaderStream]["db"].String() }))
	cancel()
	finalStopped = true
	if err := <-done; err != nil {
		t.Fatalf("final run: %v", err)
	}
	db.Close()
	t.Logf("%d lines, %d runs cancelled at random points (%d while waiting for the database at start-up), %d server kills, in %v",
		len(want), restarts, startCancels, kills.Load(), time.Since(started).Round(time.Millisecond))

	t.Logf("%d batches cut off in flight by a cancellation; log: %d transient errors retried, %d replayed batches found already committed",
		failedBatches, logs.Count("dbsink: transient error, retrying"), logs.Count("dbsink: batch already committed, skipping"))

	checkTables(t, srv, want)
	dls := loadertest.DeadLetters(t, filepath.Join(spool, ".ingest"), loaderStream)
	seen := map[string]bool{}
	for _, d := range dls {
		if d.Reason != "unknown_table" || d.Line == nil {
			t.Errorf("unexpected dead letter %+v", d)
			continue
		}
		seen[*d.Line] = true
	}
	for _, line := range feed.bad {
		if !seen[line] {
			t.Errorf("bad line never dead-lettered: %s", line)
		}
	}
	t.Logf("%d bad lines, %d dead letters (a line read again after a crash is dead-lettered again)", len(feed.bad), len(dls))
}
