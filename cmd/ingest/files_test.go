package main

import (
	"os"
	"path/filepath"
	"testing"
)

// writeFile writes text to path, creating its directory.
func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		t.Fatalf("create the directory of %s: %v", path, err)
	}
	if err := os.WriteFile(path, []byte(text), 0o640); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

// offlineConfig is a config for the tests that reach no service: spool
// <dir>/spool, one table ev keyed by account, and extra (top-level YAML
// lines, e.g. services at ports nothing listens on).
func offlineConfig(dir, extra string) string {
	return "spool: {dir: " + filepath.Join(dir, "spool") + "}\n" + extra +
		"tables:\n  ev:\n    columns: {account: bigint}\n    key: account\n"
}
