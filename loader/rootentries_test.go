package loader

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/testenv"
)

// What sits directly in the spool dir and is never loaded is logged once:
// a file (streams are sub-directories) and, when the config lists the
// streams, a directory it does not list. No Kafka or PostgreSQL.
func TestSpoolRootEntriesReported(t *testing.T) {
	spool := t.TempDir()
	for _, d := range []string{"api", "other"} {
		if err := os.Mkdir(filepath.Join(spool, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(spool, "stray.ndjson"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs logRecords
	sink := newMemSink(t, "mem", true)
	cfg := Config{Dir: spool, Schema: testSchema(t), Logger: logs.logger(), PollInterval: 10 * time.Millisecond,
		Streams: []StreamConfig{{Name: "api"}}}
	l, stop := runLoader(t, cfg, sink.spec())
	scans := func() int { l.mu.Lock(); defer l.mu.Unlock(); return l.rootScans }
	byFile := func() map[string]string {
		out := map[string]string{}
		for _, m := range logs.with(t, "WARN", "spool entry not loaded") {
			out[filepath.Base(m["file"].(string))] = m["reason"].(string)
		}
		return out
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return len(byFile()) == 2 }, "two WARNs (%v)", byFile())
	// Rescans must not repeat them: wait for two more rescans of the spool dir.
	after := scans()
	testenv.Eventually(t, 10*time.Second, func() bool { return scans() >= after+2 }, "two rescans after the WARNs (%d, %d before)", scans(), after)
	got := byFile()
	if got["stray.ndjson"] != "file in the spool dir" || got["other"] != "directory not a configured stream" {
		t.Fatalf("WARNs by file: %v", got)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := len(logs.with(t, "WARN", "spool entry not loaded")); n != 2 {
		t.Fatalf("%d WARNs, want each entry logged once", n)
	}
}
