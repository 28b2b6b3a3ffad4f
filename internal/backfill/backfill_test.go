package backfill_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/backfill"
	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/verify"
	"github.com/dualwrite/ingest/loader"
)

// The first check, at the package level: files of a known set of
// lines backfilled to Kafka for a set of accounts put exactly those
// accounts' lines in the topic, keyed and in order per account; running
// the same job again adds nothing; a db backfill, restarted from scratch,
// adds no row twice. Real broker: the claims are about what a topic holds
// (keys, per-account order, timestamps, nothing produced on a rerun).
func TestBackfillAccountsToKafkaThenDB(t *testing.T) {
	e := newEnv(t)
	archive := e.writeArchive(t, 1200, 250, 10)
	// An active file in the directory is skipped, with a warning.
	os.WriteFile(filepath.Join(archive, "0000000000000099-20260301T000000.000Z.ndjson.open"), []byte("{}\n"), 0o640)
	cfg := e.config(t, "all")

	o := backfill.Options{Paths: []string{archive}, Sinks: []string{config.SinkKafka}, Accounts: []string{"2", "3", "5"}}
	sum, err := backfill.Run(ctx(t), cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	if !sum.OK() || sum.Files != 5 || len(sum.Skipped) != 1 || sum.LinesRead != 1200 || len(sum.Sinks) != 1 {
		t.Fatalf("summary %+v", sum)
	}
	if d := sum.Disk; d.LinesRead != 1200 || d.LinesDecoded != 1200 {
		t.Fatalf("from disk: %+v, want 1200 lines read and decoded once", d)
	}
	ks := sum.Sinks[0]
	if ks.Sink != "kafka" || ks.Delivered != 360 || ks.Filtered != 840 || ks.NotRouted != 0 || !strings.HasPrefix(ks.Checkpoint, "backfill-kafka-") {
		t.Fatalf("kafka sink summary %+v", ks)
	}
	if repeats := e.checkKafka(t, accountSet("2", "3", "5")); repeats != 0 {
		t.Fatalf("%d repeats after one run", repeats)
	}
	if rows := e.dbRows(t); len(rows) != 0 {
		t.Fatalf("a kafka backfill wrote %d rows to postgres", len(rows))
	}
	var out bytes.Buffer
	sum.WriteText(&out)
	for _, want := range []string{"backfill complete", "from disk: 1,200 lines read, 1,200 decoded", "SKIPPED BY FILTER", "kafka", "360", "840", "not read: ", "active file: still being written"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary text lacks %q:\n%s", want, out.String())
		}
	}

	// The same arguments again: the job is done, nothing is sent.
	size := e.topicSize(t)
	again, err := backfill.Run(ctx(t), cfg, o)
	if err != nil || !again.OK() || !again.Resumed || again.Job != sum.Job || again.Sinks[0].Delivered != 0 {
		t.Fatalf("rerun: %v %+v", err, again)
	}
	if n := e.topicSize(t); n != size {
		t.Fatalf("rerun produced %d messages", n-size)
	}

	// Postgres: all accounts, twice (the second from scratch): ids keep
	// every row once.
	dbo := backfill.Options{Paths: []string{archive}, Sinks: []string{config.SinkDB}}
	if sum, err := backfill.Run(ctx(t), cfg, dbo); err != nil || sum.Sinks[0].Delivered != 1200 {
		t.Fatalf("db backfill: %v %+v", err, sum)
	}
	dbo.Restart = true
	sum, err = backfill.Run(ctx(t), cfg, dbo)
	if err != nil || sum.Generation != 1 || sum.Resumed || sum.Sinks[0].Delivered != 1200 || !strings.HasSuffix(sum.Sinks[0].Checkpoint, "-g1") {
		t.Fatalf("db backfill --restart: %v %+v", err, sum)
	}
	if rows := e.dbRows(t); len(rows) != 1200 {
		t.Fatalf("postgres has %d rows, want 1200 once each", len(rows))
	}

	// Both sides agree for the accounts routed to both.
	rep, err := verify.Run(ctx(t), e.config(t, "{accounts: [2, 3, 5]}"), verify.Options{Table: "raw_item"})
	if err != nil || !rep.OK || rep.Checked != 3 || len(rep.Accounts) != 10 {
		t.Fatalf("verify: %v %+v", err, rep)
	}
}

// The config's route and --since/--until narrow the job further; rows
// without a time are outside a window. Real broker: the Kafka sink's
// delivered count is what a real topic acknowledged.
func TestBackfillWindowAndRoutes(t *testing.T) {
	e := newEnv(t)
	archive := e.writeArchive(t, 600, 200, 6)
	cfg := e.config(t, "{accounts: [1, 2]}")
	w := loader.Window{Since: fixtureStart.Add(100 * time.Second), Until: fixtureStart.Add(400 * time.Second)}
	sum, err := backfill.Run(ctx(t), cfg, backfill.Options{Paths: []string{filepath.Join(archive, "*.ndjson")}, Window: w})
	if err != nil {
		t.Fatal(err)
	}
	var db, kafka backfill.SinkSummary
	for _, s := range sum.Sinks {
		if s.Sink == "db" {
			db = s
		} else {
			kafka = s
		}
	}
	// 300 lines in the window, 100 of accounts 1 and 2.
	if db.Delivered != 300 || db.Filtered != 300 || kafka.Delivered != 100 || kafka.NotRouted != 200 || kafka.Filtered != 300 {
		t.Fatalf("sinks %+v %+v", db, kafka)
	}
	rows := e.dbRows(t)
	for _, l := range e.lines {
		if in := w.Contains(l.Time); rows[l.UUID] != in {
			t.Fatalf("line at %v: in postgres %v, in window %v", l.Time, rows[l.UUID], in)
		}
	}
	if sum.Window == "" || !strings.Contains(sum.Window, "2026-03-01T00:01:40Z") {
		t.Fatalf("window %q", sum.Window)
	}
}

// No Kafka and no PostgreSQL: these errors are found before a sink
// starts (the addresses in the config are never dialled).
func TestBackfillArgumentErrors(t *testing.T) {
	e := &env{spool: t.TempDir(), topic: "raw_item"}
	archive := e.writeArchive(t, 10, 10, 2)
	cfg := e.configAt(t, "127.0.0.1:1", "postgres://backfill@127.0.0.1:1/none", "all")
	noKafka := e.configAt(t, "127.0.0.1:1", "postgres://backfill@127.0.0.1:1/none", "all")
	noKafka.Kafka.Brokers = ""
	noTime := e.configAt(t, "127.0.0.1:1", "postgres://backfill@127.0.0.1:1/none", "all")
	noTime.Tables["raw_item"].Time = ""
	for _, tc := range []struct {
		name string
		cfg  *config.Config
		o    backfill.Options
		arg  string
	}{
		{"no path", cfg, backfill.Options{}, "PATH"},
		{"active file", cfg, backfill.Options{Paths: []string{filepath.Join(archive, "x.ndjson.open")}}, "PATH"},
		{"unknown sink", cfg, backfill.Options{Paths: []string{archive}, Sinks: []string{"s3"}}, "--sink"},
		{"sink off", noKafka, backfill.Options{Paths: []string{archive}, Sinks: []string{"kafka"}}, "--sink"},
		{"no time field", noTime, backfill.Options{Paths: []string{archive}, Window: loader.Window{Since: fixtureStart}}, "--since/--until"},
		{"negative rate", cfg, backfill.Options{Paths: []string{archive}, Rate: -1}, "--rate"},
		{"negative retention margin", cfg, backfill.Options{Paths: []string{archive}, RetentionMargin: -time.Hour}, "--retention-margin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := backfill.Run(ctx(t), tc.cfg, tc.o)
			var ae *backfill.ArgError
			if !errors.As(err, &ae) || ae.Arg != tc.arg {
				t.Fatalf("err %v, want an ArgError for %s", err, tc.arg)
			}
		})
	}
}
