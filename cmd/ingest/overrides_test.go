package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
