package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// ingest status --json lists every entry of a stream directory that the
// loader does not load, with its reason, and --check exits 1 while there
// are any. No services: Kafka's checkpoint is a file and nothing dials.
func TestStatusListsEntriesNotLoaded(t *testing.T) {
	dir := t.TempDir()
	api := filepath.Join(dir, "spool", "api")
	if err := os.MkdirAll(filepath.Join(api, "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(api, "00000000000000000001-20261122T000001Z.ndjson"), "{}\n")
	if err := os.Symlink("/nowhere", filepath.Join(api, "dangling.log")); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "ingest.yaml")
	writeFile(t, cfg, offlineConfig(dir, "kafka: {brokers: \"127.0.0.1:1\"}\n"))
	out, code := ingest(t, "status", "--config", cfg, "--json")
	if code != 0 {
		t.Fatalf("status --json: exit %d\n%s", code, out)
	}
	var st []struct {
		Stream  string `json:"stream"`
		Ignored []struct{ Name, Reason, Fix string }
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, s := range st {
		for _, f := range s.Ignored {
			if f.Fix == "" {
				t.Errorf("%s: no fix", f.Name)
			}
			got[f.Name] = f.Reason
		}
	}
	want := map[string]string{
		"00000000000000000001-20261122T000001Z.ndjson": "unrecognised name",
		"old":          "directory",
		"dangling.log": "not a regular file",
	}
	for name, reason := range want {
		if got[name] != reason {
			t.Errorf("%s: reason %q, want %q (all: %v)", name, got[name], reason, got)
		}
	}
	if _, code := ingest(t, "status", "--config", cfg, "--check"); code != 1 {
		t.Fatalf("status --check with entries not loaded: exit %d, want 1", code)
	}
}
