package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/internal/testenv"
)

// ingest doctor on a real broker (it checks topics the way the Kafka sink
// does at start-up, which the mock's auto-creation would hide) and a
// throwaway PostgreSQL: a healthy setup exits 0; a missing topic, a table
// missing a column and a state dir that cannot be created each fail with
// their fix, and so does PostgreSQL stopped; the exit status is 1.
func TestDoctor(t *testing.T) {
	e := newBrokerEnv(t, 2)
	e.configure(t, e.config("all"))
	api := filepath.Join(e.spool, "api")
	if err := os.MkdirAll(api, 0o750); err != nil {
		t.Fatal(err)
	}
	loadertest.WriteSealed(t, api, 1, time.Now(), `{"table":"raw_item","row":{"project_id":1}}`+"\n")

	out, code := ingest(t, "doctor", "--config", e.cfgPath)
	if code != 0 || !strings.Contains(out, "all checks passed") {
		t.Fatalf("healthy setup: exit %d\n%s", code, out)
	}
	for _, want := range []string{"ok    postgresql tables", "ok    kafka: reachable", "ok    kafka partitions: " + e.topic + " 2, each with a leader", "ok    stream api: 1 file(s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("healthy report lacks %q:\n%s", want, out)
		}
	}

	// The Kafka sink turned off while raw_item is routed to it.
	out, code = ingest(t, "doctor", "--config", e.cfgPath, "--kafka-brokers", "")
	if code != 1 || !strings.Contains(out, "FAIL  routes: tables.raw_item.kafka: is all, but the kafka sink is off") {
		t.Fatalf("route to a sink that is off: exit %d\n%s", code, out)
	}

	// Three faults at once.
	broken := filepath.Join(e.dir, "broken.yaml")
	e.writeConfig(t, broken, strings.Replace(e.config("all"), e.topic, "doctor-no-such-topic", 1))
	ctx := testenv.Context(t, time.Minute)
	conn := loadertest.Connect(t, e.pg)
	loadertest.Exec(t, conn, "ALTER TABLE raw_item DROP COLUMN version")
	conn.Close(ctx) // before PostgreSQL stops below
	notADir := filepath.Join(e.dir, "file")
	writeFile(t, notADir, "")
	out, code = ingest(t, "doctor", "--config", broken, "--state-dir", filepath.Join(notADir, "state"))
	if code != 1 {
		t.Fatalf("broken setup: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{
		"FAIL  kafka topics: missing: doctor-no-such-topic",
		`FAIL  postgresql tables: table "raw_item" has no column "version"`,
		"ingest migrate --config " + broken,
		"FAIL  state dir:",
		"--state-dir",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("broken report lacks %q:\n%s", want, out)
		}
	}

	// PostgreSQL down.
	if err := e.pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	out, code = ingest(t, "doctor", "--config", e.cfgPath)
	if code != 1 || !strings.Contains(out, "FAIL  postgresql: unreachable") || !strings.Contains(out, "fix: start PostgreSQL") {
		t.Fatalf("PostgreSQL stopped: exit %d\n%s", code, out)
	}
}

// --spool-dir moves the state dir with it when the file left state_dir to
// its default (<spool>/.ingest): checkpoints follow the spool the operator
// named. No services: doctor prints the state dir it would use.
func TestSpoolDirOverrideMovesDefaultStateDir(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "other")
	if err := os.MkdirAll(other, 0o750); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "ingest.yaml")
	writeFile(t, cfg, offlineConfig(dir, ""))
	out, _ := ingest(t, "doctor", "--config", cfg, "--spool-dir", other)
	if want := "state dir: " + filepath.Join(other, ".ingest"); !strings.Contains(out, want) {
		t.Fatalf("doctor with --spool-dir %s: want %q in\n%s", other, want, out)
	}
}
