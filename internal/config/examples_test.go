package config_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/dualwrite/ingest/internal/config"
)

// TestExamples loads every examples/*.yaml with config.Load, the function
// `ingest run` (and every other command taking --config) reads its file
// with, so a committed example can never teach a key, value or selector the
// loader refuses. It also checks what the cutover steps are for: which
// sinks each one routes the table to.
func TestExamples(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "examples")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no examples/*.yaml found in %s", dir)
	}
	// Unset the db.url fallbacks so the result does not depend on the
	// environment of whoever runs the test.
	t.Setenv("INGEST_DB_URL", "")
	t.Setenv("DATABASE_URL", "")

	// The route of raw_item at each cutover step, as Selector.String
	// renders it.
	want := map[string]struct{ db, kafka string }{
		"01-db-only.yaml":             {"all", "none"},
		"02-kafka-some-accounts.yaml": {"all", "{accounts: [42, 1001]}"},
		"03-kafka-percent.yaml":       {"all", "{percent: 25, accounts: [42, 1001], exclude: [7]}"},
		"04-kafka-all.yaml":           {"all", "all"},
		"05-kafka-only.yaml":          {"none", "all"},
		"06-legacy-writer.yaml":       {"all", "none"},
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			cfg, err := config.Load(path)
			if err != nil {
				t.Fatalf("examples/%s does not load: %v", name, err)
			}
			if _, err := cfg.Schema(); err != nil {
				t.Fatalf("examples/%s: schema: %v", name, err)
			}
			if !cfg.DBEnabled() || !cfg.KafkaEnabled() {
				t.Errorf("examples/%s: want both sinks configured (db.url and kafka.brokers), got db %v, kafka %v",
					name, cfg.DBEnabled(), cfg.KafkaEnabled())
			}
			w, ok := want[name]
			if !ok {
				return // a new example: it loads, which is what matters
			}
			rt := cfg.Tables["raw_item"]
			if rt == nil {
				t.Fatalf("examples/%s: no table raw_item", name)
			}
			if got := rt.DB.String(); got != w.db {
				t.Errorf("examples/%s: tables.raw_item.db = %s, want %s", name, got, w.db)
			}
			if got := rt.Kafka.String(); got != w.kafka {
				t.Errorf("examples/%s: tables.raw_item.kafka = %s, want %s", name, got, w.kafka)
			}
		})
	}
}

// TestConfigDoc parses every complete config shown in docs/config.md (each
// ```yaml block that starts with "spool:"), so the reference a user copies
// from is a file the loader accepts.
func TestConfigDoc(t *testing.T) {
	path := filepath.Join(repoRoot(t), "docs", "config.md")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("INGEST_DB_URL", "")
	t.Setenv("DATABASE_URL", "")
	blocks := 0
	for i, part := range strings.Split(string(data), "```yaml\n")[1:] {
		block, _, ok := strings.Cut(part, "```")
		if !ok {
			t.Fatalf("docs/config.md: yaml block %d is not closed", i+1)
		}
		if !strings.HasPrefix(block, "spool:") {
			continue // a fragment (a table's routing lines, a stream), not a whole file
		}
		blocks++
		if _, err := config.Parse([]byte(block)); err != nil {
			t.Errorf("docs/config.md: yaml block %d does not parse: %v\n%s", i+1, err, block)
		}
	}
	if blocks < 2 {
		t.Errorf("docs/config.md: found %d complete configs, want at least 2 (the reference and the cutover's shared part)", blocks)
	}
}

// repoRoot is the module root, found from this file rather than the
// working directory, so the tests run however `go test` is invoked.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("runtime.Caller failed")
	}
	return filepath.Join(filepath.Dir(self), "..", "..")
}
