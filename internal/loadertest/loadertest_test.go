package loadertest_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/rotatefile"
	"github.com/dualwrite/ingest/schema"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The helpers agree with what a real loader does: a run started with
// Start delivers a stream's lines to a MemSink in file order, dead-letters
// a line for an unknown table (read back by DeadLetters), and once Stop
// returns, the checkpoint in the file store (FileCheckpoint) and
// Position are both StreamEnd.
func TestHelpersOnARealLoader(t *testing.T) {
	const stream, n = "s", 50
	spool := t.TempDir()
	w, err := rotatefile.Open(rotatefile.Options{Dir: spool, Stream: stream, MaxBytes: 1 << 10, FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if i == 7 {
			if err := w.Append([]byte(`{"table":"nope","row":{"k":"a","seq":-1}}`)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Append(fmt.Appendf(nil, `{"table":"t","row":{"k":"a","seq":%d}}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	sch, err := schema.New(map[string]*schema.Table{"t": {Key: "k", Columns: map[string]string{"k": "text", "seq": "bigint"}}})
	if err != nil {
		t.Fatal(err)
	}
	mem := loadertest.NewMemSink("mem")
	log, logger := loadertest.NewLog(t)
	run := loadertest.Start(t, loader.Config{Dir: spool, Schema: sch, Logger: logger}, loader.SinkSpec{Sink: mem, MaxInFlight: 2})
	end := loadertest.StreamEnd(t, spool, stream)
	if files, _ := rotatefile.ParseName(end.File); files.Seq < 2 {
		t.Fatalf("stream end %v: want the lines spread over several files", end)
	}
	testenv.Eventually(t, 30*time.Second, func() bool { return run.Position(stream, "mem") == end },
		"checkpoint at the stream end %v (at %v)", end, loadertest.Lazy(func() string { return run.Position(stream, "mem").String() }))
	if !run.Alive() || run.Err() != nil {
		t.Fatalf("loader stopped early: %v", run.Err())
	}
	if err := run.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if run.Alive() {
		t.Fatal("Alive after Stop")
	}

	recs := mem.Records()
	if len(recs) != n || mem.Count() != n {
		t.Fatalf("mem sink has %d records (Count %d), want %d", len(recs), mem.Count(), n)
	}
	for i, r := range recs {
		if want := fmt.Sprintf(`"seq":%d`, i); !strings.Contains(string(r.Row), want) || r.Stream != stream || r.Key != "a" {
			t.Fatalf("record %d: %+v, want seq %d of stream %s", i, r, i, stream)
		}
	}
	if _, ok := mem.At(n); ok {
		t.Fatalf("At(%d) found a record past the end", n)
	}
	state := filepath.Join(spool, ".ingest")
	if cp, ok := loadertest.FileCheckpoint(t, state, "mem", stream); !ok || cp != end {
		t.Fatalf("file checkpoint %v (found %v), want the stream end %v", cp, ok, end)
	}
	if _, ok := loadertest.FileCheckpoint(t, state, "other", stream); ok {
		t.Fatal("a checkpoint for a sink that never ran")
	}
	dls := loadertest.DeadLetters(t, state, stream)
	if len(dls) != 1 || dls[0].Line == nil || !strings.Contains(*dls[0].Line, `"table":"nope"`) {
		t.Fatalf("dead letters %+v, want the one line for table nope", dls)
	}
	if log.Count("level=") == 0 {
		t.Error("the loader logged nothing through NewLog's logger")
	}
}

// The PostgreSQL helpers on a real server (testenv.Postgres): Exec reports
// the rows it affected, QueryInt and QueryIntURL read what it wrote,
// Connect's session is in UTC, and TryQueryInt returns an error, rather
// than failing the test, while the server is stopped, and the count again
// once it is back.
func TestPostgresHelpers(t *testing.T) {
	srv := testenv.Postgres(t)
	conn := loadertest.Connect(t, srv)
	loadertest.Exec(t, conn, `CREATE TABLE t (n bigint)`)
	if got := loadertest.Exec(t, conn, `INSERT INTO t SELECT generate_series(1, $1::int)`, 5); got != 5 {
		t.Fatalf("Exec inserted %d rows, want 5", got)
	}
	if got := loadertest.QueryInt(t, conn, `SELECT sum(n) FROM t WHERE n > $1`, 3); got != 9 {
		t.Fatalf("QueryInt: sum %d, want 9", got)
	}
	if got := loadertest.QueryIntURL(t, srv.URL(), `SELECT count(*) FROM t`); got != 5 {
		t.Fatalf("QueryIntURL: %d rows, want 5", got)
	}
	if got := loadertest.QueryInt(t, conn, `SELECT extract(timezone FROM now())::bigint`); got != 0 {
		t.Fatalf("Connect's session is %d s from UTC, want 0", got)
	}
	ctx := testenv.Context(t, time.Minute)
	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := loadertest.TryQueryInt(srv.URL(), `SELECT count(*) FROM t`); err == nil {
		t.Fatalf("TryQueryInt on a stopped server: %d, no error", n)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := loadertest.TryQueryInt(srv.URL(), `SELECT count(*) FROM t`); err != nil || n != 5 {
		t.Fatalf("TryQueryInt after the restart: %d, %v; want 5", n, err)
	}
}

// EnvInt and EnvDuration read a positive value, and def when the
// variable is unset.
func TestEnvValues(t *testing.T) {
	t.Setenv("LOADERTEST_N", "")
	if got := loadertest.EnvInt(t, "LOADERTEST_N", 7); got != 7 {
		t.Fatalf("unset: %d, want the default 7", got)
	}
	t.Setenv("LOADERTEST_N", "12")
	if got := loadertest.EnvInt(t, "LOADERTEST_N", 7); got != 12 {
		t.Fatalf("LOADERTEST_N=12: %d", got)
	}
	t.Setenv("LOADERTEST_D", "")
	if got := loadertest.EnvDuration(t, "LOADERTEST_D", time.Second); got != time.Second {
		t.Fatalf("unset: %v, want the default 1s", got)
	}
	t.Setenv("LOADERTEST_D", "1m30s")
	if got := loadertest.EnvDuration(t, "LOADERTEST_D", time.Second); got != 90*time.Second {
		t.Fatalf("LOADERTEST_D=1m30s: %v", got)
	}
}

// ConfigYAML's text says what it is given, and LoadConfig loads it from
// the path it returns, as ingest would; a batch size of 0 leaves the
// default. No server is started: the config is only read.
func TestConfigHelpers(t *testing.T) {
	tables := "  t:\n    key: k\n    columns: {k: text}\n"
	cfg, path := loadertest.LoadConfig(t, loadertest.ConfigYAML("/spool", "k1:9092", "postgres://u@h:1/db", 7, tables))
	if filepath.Base(path) != "ingest.yaml" || cfg.Spool.Dir != "/spool" || cfg.Kafka.Brokers != "k1:9092" || cfg.DB.URL != "postgres://u@h:1/db" ||
		cfg.Batch.MaxRecords != 7 || cfg.Batch.Linger != 5*time.Millisecond || cfg.Metrics.Listen != "127.0.0.1:0" || cfg.Tables["t"] == nil {
		t.Fatalf("config %s: %+v", path, cfg)
	}
	cfg, err := config.Parse([]byte(loadertest.ConfigYAML("/spool", "k1:9092", "postgres://u@h:1/db", 0, tables)))
	if err != nil || cfg.Batch.MaxRecords != config.Default().Batch.MaxRecords {
		t.Fatalf("max records 0: %v %+v", err, cfg)
	}
}
