package loader

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// No Kafka, no PostgreSQL: dead-letter files written by hand. The count
// status, doctor, backfill and the demo report is per stream or over every
// stream, and a file it cannot read is named rather than counted as empty.
func TestCountDeadLetters(t *testing.T) {
	state := t.TempDir()
	l := StateLayout{Dir: state}
	write := func(stream, name, body string) {
		t.Helper()
		dir := l.StreamDeadLetters(stream)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("api", "2026-12-06.ndjson", "{}\n{}\n")
	write("api", "2026-12-07.ndjson", "{}\n")
	write("web", "2026-12-07.ndjson", "{}\n{}\n{}\n{}\n")
	write("web", "notes.txt", "not\na\ndead letter\n") // only .ndjson files hold dead letters

	for _, c := range []struct {
		stream string
		want   int64
	}{{"api", 3}, {"web", 4}, {"", 7}, {"none", 0}} {
		n, err := CountDeadLetters(state, c.stream)
		if err != nil || n != c.want {
			t.Errorf("CountDeadLetters(%q) = %d, %v; want %d, nil", c.stream, n, err, c.want)
		}
	}

	// A directory where a file should be: open succeeds, read fails, even
	// as root (which a permission bit would not stop).
	bad := filepath.Join(l.StreamDeadLetters("api"), "2026-12-08.ndjson")
	if err := os.Mkdir(bad, 0o755); err != nil {
		t.Fatal(err)
	}
	n, err := CountDeadLetters(state, "")
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("CountDeadLetters with an unreadable file: err %v, want one naming %s", err, bad)
	}
	if n != 7 {
		t.Errorf("CountDeadLetters with an unreadable file counted %d, want the 7 it could read", n)
	}
}
