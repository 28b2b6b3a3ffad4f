package loadertest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/dualwrite/ingest/internal/config"
)

// ConfigYAML is the text of a test's config for the spool, brokers and
// database given: batches of at most maxRecords lines (0: the default)
// that linger 5 ms, so that a test does not wait out the default linger
// for each batch, metrics on a free port, so that tests run side by side,
// and tables, the entries of the tables mapping indented by two spaces.
func ConfigYAML(spool, brokers, dbURL string, maxRecords int, tables string) string {
	batch := "{linger: 5ms}"
	if maxRecords > 0 {
		batch = fmt.Sprintf("{max_records: %d, linger: 5ms}", maxRecords)
	}
	return fmt.Sprintf("spool: {dir: %q}\nbatch: %s\nkafka: {brokers: %q}\ndb: {url: %q}\nmetrics: {listen: \"127.0.0.1:0\"}\ntables:\n%s",
		spool, batch, brokers, dbURL, tables)
}

// LoadConfig writes text to ingest.yaml in a fresh directory and loads it
// as ingest does, returning the config and the file's path, which a test
// rewrites to make a running loader reload it.
func LoadConfig(tb testing.TB, text string) (*config.Config, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "ingest.yaml")
	if err := os.WriteFile(path, []byte(text), 0o640); err != nil {
		tb.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		tb.Fatalf("load %s: %v", path, err)
	}
	return cfg, path
}
