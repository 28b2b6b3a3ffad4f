package dbsink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/internal/pgserver"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
)

func head(s []int) []int { return s[:min(len(s), 10)] }

func seqRange(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// PostgreSQL stops in the middle of a Submit (fast shutdown terminates our
// session inside its transaction) and comes back seconds later: Submit
// retries by itself, logs the retries, and stores the batch once.
func TestOutageMidSubmitRetriesUntilBack(t *testing.T) {
	t.Parallel()
	logs := &testenv.SyncBuffer{}
	e := newSinkEnv(t, seqSchema(t), true, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	srv, sch, s := e.srv, e.sch, e.sink
	ctx := testenv.Context(t, 90*time.Second)
	const outage = 3 * time.Second
	f := newLineFile("000001", seqLines(200, strings.Repeat("b", 500)))

	if err := submit(t, ctx, s, f.batch(t, sch, "s", 0, 100)); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	restarted := make(chan error, 1)
	var stoppedAt time.Time
	s.hook = func(hctx context.Context, point string) error {
		if point != "begin" {
			return nil
		}
		once.Do(func() {
			if err := srv.Stop(hctx); err != nil {
				t.Errorf("stop: %v", err)
			}
			stoppedAt = time.Now()
			go func() {
				time.Sleep(outage)
				restarted <- srv.Start(context.Background())
			}()
		})
		return nil
	}
	if err := submit(t, ctx, s, f.batch(t, sch, "s", 100, 200)); err != nil {
		t.Fatalf("ack after the outage: %v", err)
	}
	if err := <-restarted; err != nil {
		t.Fatalf("restart: %v", err)
	}
	if took := time.Since(stoppedAt); took < outage {
		t.Fatalf("Submit returned %v after the stop, before the server was back", took)
	}
	if n := strings.Count(logs.String(), "transient error, retrying"); n < 2 {
		t.Errorf("%d retries logged, want several:\n%s", n, logs.String())
	}
	checkExactlyOnceOf(t, srv, seqRange(200))
	if cp := checkpointOf(t, s, "s"); cp != f.pos[200] {
		t.Errorf("checkpoint %v, want %v", cp, f.pos[200])
	}
}

// While the database is down, Checkpoint waits for it, and Close ends a
// Submit that is still retrying with ErrClosed.
func TestDownDatabaseWaitsAndCloseInterrupts(t *testing.T) {
	t.Parallel()
	e := newSinkEnv(t, seqSchema(t), true)
	srv, sch, s, ctx := e.srv, e.sch, e.sink, e.ctx
	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(time.Second)
		if err := srv.Start(context.Background()); err != nil {
			t.Errorf("start: %v", err)
		}
	}()
	if _, ok, err := s.Checkpoint(ctx, "s"); err != nil || ok {
		t.Fatalf("Checkpoint after restart = %v, %v", ok, err)
	}

	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	f := newLineFile("000001", seqLines(5, "c"))
	acked := make(chan error, 1)
	if err := s.Submit(ctx, f.batch(t, sch, "s", 0, 5), func(err error) { acked <- err }); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-acked:
		t.Fatalf("batch acknowledged while the database is down: %v", err)
	default:
	}
	s.Close() // returns only after the batch's goroutine acked
	select {
	case err := <-acked:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("ack = %v, want ErrClosed", err)
		}
	default:
		t.Fatal("Close returned before the batch in flight was acknowledged")
	}
	if err := s.Submit(ctx, loader.NewBatch("s", f.pos[0], f.pos[5], nil, nil), func(error) { t.Error("ack after Close") }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit after Close = %v, want ErrClosed", err)
	}

	// A caller's cancelled context ends the retries the same way.
	s2 := newSink(t, srv, sch, false)
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := submit(t, cctx, s2, f.batch(t, sch, "s", 0, 5)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ack = %v, want the context's error", err)
	}
}

// The server is killed (SIGQUIT: no shutdown checkpoint, crash recovery on
// start) and the loading process "crashes" (its context is cancelled at a
// random moment, the sink is dropped) at random points, repeatedly, while
// a sequence of batches is loaded; after each crash loading resumes from
// Checkpoint with new batch boundaries, as the loader does. At the end
// every line is stored exactly once.
func TestCrashAtRandomPointsLosesAndDuplicatesNothing(t *testing.T) {
	srv := testenv.Postgres(t)
	sch := seqSchema(t)
	newSink(t, srv, sch, true) // migrate
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	// Three files of lines; some lines are absent from the batches
	// (dead-lettered or routed elsewhere by the loader) but covered.
	const perFile = 3000
	var files []*lineFile
	var want []int
	for fi := range 3 {
		lines := seqLines(perFile, strings.Repeat("p", 200))
		for i := range lines {
			lines[i] = strings.Replace(lines[i], fmt.Sprintf(`"seq":%d,`, i), fmt.Sprintf(`"seq":%d,`, fi*perFile+i), 1)
		}
		files = append(files, newLineFile(fmt.Sprintf("%06d", fi+1), lines))
	}
	skipped := func(fi, i int) bool { return (fi*perFile+i)%97 == 13 }
	for fi := range files {
		for i := range perFile {
			if !skipped(fi, i) {
				want = append(want, fi*perFile+i)
			}
		}
	}
	// locate returns the file and line of the first line at or after pos.
	locate := func(pos loader.Position) (int, int) {
		for fi, f := range files {
			for i, p := range f.pos[:perFile] {
				if !p.Before(pos) {
					return fi, i
				}
			}
		}
		return len(files), 0
	}

	// Generous: each kill costs a PostgreSQL restart with crash recovery,
	// which on a loaded 2-core machine took most of 3 minutes once.
	ctx := testenv.Context(t, 6*time.Minute)
	stopKiller := make(chan struct{})
	killerDone := make(chan struct{})
	var stopOnce sync.Once
	// stop is deferred too: a t.Fatal in the loop below must not leave the
	// killer running past the test, where its t.Errorf would panic.
	stop := func() { stopOnce.Do(func() { close(stopKiller) }); <-killerDone }
	defer stop()
	var kills int
	go func() {
		defer close(killerDone)
		for {
			select {
			case <-stopKiller:
				return
			case <-time.After(time.Duration(100+rand.IntN(300)) * time.Millisecond):
			}
			if err := srv.Kill(); err != nil {
				t.Errorf("kill: %v", err)
				return
			}
			kills++
			time.Sleep(time.Duration(rand.IntN(200)) * time.Millisecond)
			if err := srv.Start(context.Background()); err != nil {
				t.Errorf("start: %v", err)
				return
			}
		}
	}()

	crashes, batches := 0, 0
	for {
		s := newSink(t, srv, sch, false)
		// Besides the kills, COMMIT fails now and then before it is sent,
		// or its reply is "lost" after it succeeded.
		s.hook = func(_ context.Context, point string) error {
			if (point == "commit" || point == "committed") && rand.IntN(10) == 0 {
				return io.ErrUnexpectedEOF
			}
			return nil
		}
		cp, ok, err := s.Checkpoint(ctx, "s")
		if err != nil {
			t.Fatalf("checkpoint: %v", err)
		}
		fi, i := 0, 0
		if ok {
			fi, i = locate(cp)
		}
		if fi == len(files) {
			s.Close()
			break
		}
		for fi < len(files) {
			f := files[fi]
			n := 1 + rng.IntN(120)
			to := min(i+n, perFile)
			var recs []loader.Record
			for k, r := range f.decode(t, sch, i, to) {
				if !skipped(fi, i+k) {
					recs = append(recs, r)
				}
			}
			end := f.pos[to]
			if to == perFile && fi+1 < len(files) {
				end = files[fi+1].pos[0] // the loader moves to the next file
			}
			// A little pause between batches, as the loader's linger
			// gives, so that the kills land in the run whatever the
			// machine's speed.
			time.Sleep(time.Duration(rng.IntN(8)) * time.Millisecond)
			bctx, cancel := context.WithCancel(ctx)
			if rng.IntN(6) == 0 { // this batch's process crashes at a random moment
				time.AfterFunc(time.Duration(rng.IntN(30))*time.Millisecond, cancel)
			}
			err := submit(t, bctx, s, loader.NewBatch("s", f.pos[i], end, recs, nil))
			cancel()
			batches++
			if err != nil {
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("batch failed with %v", err)
				}
				crashes++
				break
			}
			i = to
			if i == perFile {
				fi, i = fi+1, 0
			}
		}
		s.Close()
	}
	stop()
	if srv.PID() == 0 {
		if err := srv.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d batches, %d server kills, %d process crashes", batches, kills, crashes)
	if kills < 4 || crashes < 4 {
		t.Errorf("only %d kills and %d crashes: the test did not exercise enough faults", kills, crashes)
	}
	checkExactlyOnceOf(t, srv, want)
}

// checkExactlyOnceOf asserts that the tables of seqSchema hold each seq in
// want exactly once, and nothing else.
func checkExactlyOnceOf(t *testing.T, srv *pgserver.Server, want []int) {
	t.Helper()
	conn := connect(t, srv)
	rows, err := conn.Query(context.Background(),
		`SELECT seq, count(*) FROM (SELECT seq FROM plain UNION ALL SELECT seq FROM keyed) x GROUP BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]int{}
	for rows.Next() {
		var seq, c int
		if err := rows.Scan(&seq, &c); err != nil {
			t.Fatal(err)
		}
		got[seq] = c
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var missing, dup []int
	for _, seq := range want {
		switch got[seq] {
		case 0:
			missing = append(missing, seq)
		case 1:
		default:
			dup = append(dup, seq)
		}
		delete(got, seq)
	}
	if len(missing) > 0 || len(dup) > 0 || len(got) > 0 {
		t.Fatalf("%d missing (first %v), %d duplicated (first %v), %d unexpected", len(missing), head(missing), len(dup), head(dup), len(got))
	}
}

// Names from config containing quotes, semicolons and SQL are used as
// names, never as SQL: the tables work and nothing else is touched.
func TestHostileIdentifiers(t *testing.T) {
	t.Parallel()
	srv := testenv.Postgres(t)
	conn := connect(t, srv)
	exec(t, conn, `CREATE TABLE victim (x int)`)
	exec(t, conn, `INSERT INTO victim VALUES (1)`)
	const (
		tbl  = `raw_item"; DROP TABLE victim; --`
		key  = `k"ey`
		id   = `i'd); DROP TABLE victim; --`
		body = `select`
		up   = `Upper Case`
	)
	sch := mustSchema(t, map[string]*schema.Table{
		tbl: {Key: key, ID: id, Topic: "t1", Columns: map[string]string{key: "bigint", id: "text", body: "text", up: "integer"}},
		"plain_" + tbl: {Key: key, DBTable: `we"ird`, Topic: "t2", Columns: map[string]string{key: "bigint", body: "text", up: "jsonb"},
			UnknownFields: `jsonb:` + up},
	})
	s := newSink(t, srv, sch, true)
	ctx := testenv.Context(t, 60*time.Second)
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	lines := []string{
		`{"table":` + q(tbl) + `,"row":{` + q(key) + `:1,` + q(id) + `:"a'); DROP TABLE victim; --",` + q(body) + `:"x\"; DROP TABLE victim; --",` + q(up) + `:2}}`,
		`{"table":` + q(tbl) + `,"row":{` + q(key) + `:1,` + q(id) + `:"b",` + q(body) + `:"y"}}`,
		`{"table":` + q("plain_"+tbl) + `,"row":{` + q(key) + `:1,` + q(body) + `:"z","'; DROP TABLE victim; --":1}}`,
	}
	f := newLineFile("000001", lines)
	stream := `s'; DROP TABLE victim; --`
	dl := &loadertest.Rejects{}
	if err := submit(t, ctx, s, loader.NewBatch(stream, f.pos[0], f.pos[3], f.decode(t, sch, 0, 3), dl.Reject)); err != nil {
		t.Fatalf("ack: %v", err)
	}
	if d := dl.All(); len(d) > 0 {
		t.Fatalf("rejected: %+v", d)
	}
	// Replaying adds nothing.
	if err := submit(t, ctx, s, loader.NewBatch(stream, f.pos[0], f.pos[3], f.decode(t, sch, 0, 3), dl.Reject)); err != nil {
		t.Fatalf("ack: %v", err)
	}
	if n := queryInt(t, conn, `SELECT count(*) FROM victim`); n != 1 {
		t.Fatalf("victim has %d rows", n)
	}
	if n := queryInt(t, conn, `SELECT count(*) FROM "raw_item""; DROP TABLE victim; --" WHERE "select" LIKE 'x"; DROP%'`); n != 1 {
		t.Fatalf("hostile table: %d matching rows, want 1", n)
	}
	if n := queryInt(t, conn, `SELECT count(*) FROM "raw_item""; DROP TABLE victim; --"`); n != 2 {
		t.Fatalf("hostile table: %d rows, want 2", n)
	}
	var extra string
	if err := conn.QueryRow(ctx, `SELECT "Upper Case"::text FROM "we""ird"`).Scan(&extra); err != nil || extra != `{"'; DROP TABLE victim; --": 1}` {
		t.Fatalf(`we"ird extra = %q, %v`, extra, err)
	}
	if cp := checkpointOf(t, s, stream); cp != f.pos[3] {
		t.Fatalf("checkpoint %v", cp)
	}
	if n := queryInt(t, conn, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`); n != 4 {
		t.Fatalf("%d tables in public, want victim, two hostile tables and ingest_checkpoints", n)
	}
}
