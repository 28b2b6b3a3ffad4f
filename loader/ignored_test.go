package loader

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/rotatefile"
	"github.com/prometheus/client_golang/prometheus"
)

// logRecords collects what a logger wrote as JSON objects.
type logRecords struct {
	buf testenv.SyncBuffer
}

func (l *logRecords) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(&l.buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (l *logRecords) all(tb testing.TB) []map[string]any {
	tb.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			tb.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func (l *logRecords) with(tb testing.TB, level, msg string) []map[string]any {
	var out []map[string]any
	for _, m := range l.all(tb) {
		if m["level"] == level && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// denyOpen makes the stream's open fail with EACCES for names in the set,
// standing in for a mode-000 file where the test runs as root (root reads
// any file whatever its mode).
type denyOpen struct {
	mu   sync.Mutex
	deny map[string]bool
}

func (d *denyOpen) open(path string) (*os.File, error) {
	d.mu.Lock()
	denied := d.deny[filepath.Base(path)]
	d.mu.Unlock()
	if denied {
		return nil, &fs.PathError{Op: "open", Path: path, Err: syscall.EACCES}
	}
	return os.Open(path)
}

func (d *denyOpen) allow(name string) {
	d.mu.Lock()
	delete(d.deny, name)
	d.mu.Unlock()
}

// A spool holding rotatefile files, a file with a foreign name, a symlink
// to a regular file, a dangling symlink, a sub-directory and an unreadable
// file: the loader loads the rotatefile files, logs one WARN per ignored
// entry with its reason and fix, Status lists each, the gauge counts them
// by reason, and once the unreadable file can be opened it is loaded
// without a restart. No Kafka or PostgreSQL: an in-memory sink.
func TestIgnoredEntriesReported(t *testing.T) {
	spool, w := openWriter(t, rotatefile.Options{MaxBytes: 1 << 10})
	dir := filepath.Join(spool, "api")
	appendEv(t, w, 0, 60, 1, "ign")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	sealed := spoolFiles(t, dir)
	if len(sealed) < 3 {
		t.Fatalf("want at least 3 sealed files, got %v", sealed)
	}
	// The last sealed file is unreadable at first: the stream must wait at
	// it, not skip it and not stop.
	locked := sealed[len(sealed)-1]
	before := linesBefore(t, dir, sealed, locked) // counted now: loaded files are deleted
	deny := &denyOpen{deny: map[string]bool{locked: true}}
	if os.Geteuid() != 0 {
		if err := os.Chmod(filepath.Join(dir, locked), 0); err != nil {
			t.Fatal(err)
		}
		deny.deny = nil // a real mode-000 file
	}
	write := func(name, data string) { writeStreamFile(t, spool, "api", name, data) }
	write("00000000000000000001-20261122T000001Z.ndjson", evLine(9, 0, "foreign")+"\n")
	outside := filepath.Join(t.TempDir(), "elsewhere.log")
	if err := os.WriteFile(outside, []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "linked.log")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "gone"), filepath.Join(dir, "dangling.log")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(".editor-swap", "not reported")

	var logs logRecords
	reg := prometheus.NewRegistry()
	sink := newMemSink(t, "mem", true)
	cfg := Config{Dir: spool, Schema: testSchema(t), Logger: logs.logger(), Registry: reg,
		PollInterval: 10 * time.Millisecond, Batch: BatchConfig{Linger: time.Millisecond}}
	if deny.deny != nil {
		cfg.openFile = deny.open
	}
	l, stop := runLoader(t, cfg, sink.spec())

	want := map[string]string{
		"00000000000000000001-20261122T000001Z.ndjson": IgnoredName,
		"linked.log":   IgnoredNotRegular,
		"dangling.log": IgnoredNotRegular,
		"old":          IgnoredDirectory,
		locked:         IgnoredUnreadable,
	}
	gauge := func(reason string) float64 {
		return metricValue(t, l.metrics.ignoredFiles.WithLabelValues("api", reason))
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		return gauge(IgnoredName) == 1 && gauge(IgnoredNotRegular) == 2 && gauge(IgnoredDirectory) == 1 && gauge(IgnoredUnreadable) == 1
	}, "gauge counts every ignored entry by reason (name %v, not regular %v, dir %v, unreadable %v)",
		gauge(IgnoredName), gauge(IgnoredNotRegular), gauge(IgnoredDirectory), gauge(IgnoredUnreadable))

	// Every line before the unreadable file is in; none after it.
	st := l.stream("api")
	testenv.Eventually(t, 10*time.Second, func() bool {
		recs := sink.records()
		return len(recs) > 0 && recs[len(recs)-1].Pos.File < locked && sink.count() == before
	}, "lines before the unreadable file loaded")

	warns := logs.with(t, "WARN", "spool entry not loaded")
	byFile := map[string]map[string]any{}
	for _, m := range warns {
		name := filepath.Base(m["file"].(string))
		if byFile[name] != nil {
			t.Errorf("two WARNs for %s: reason unchanged, one is enough", name)
		}
		byFile[name] = m
	}
	for name, reason := range want {
		m := byFile[name]
		if m == nil {
			t.Errorf("no WARN for %s (%s); WARNs: %v", name, reason, warns)
			continue
		}
		if m["reason"] != reason || m["fix"] == "" || m["stream"] != "api" {
			t.Errorf("WARN for %s: %v; want reason %q, a fix and the stream", name, m, reason)
		}
	}
	if m := byFile["00000000000000000001-20261122T000001Z.ndjson"]; m != nil && !strings.Contains(m["fix"].(string), `pattern: "*.ndjson"`) {
		t.Errorf("fix for a foreign name does not name the pattern: %v", m["fix"])
	}
	if _, ok := byFile[".editor-swap"]; ok {
		t.Errorf("a dot-file was reported")
	}
	got := map[string]string{}
	for _, f := range st.Ignored() {
		got[f.Name] = f.Reason
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Ignored() = %v, want %v", got, want)
	}

	// Status (what `ingest status` shows) lists them too, without a loader.
	ss, err := Status(context.Background(), Config{Dir: spool, Schema: testSchema(t), openFile: cfg.openFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 1 || len(ss[0].Ignored) != len(want) {
		t.Fatalf("Status: %+v, want %d ignored entries", ss, len(want))
	}

	// "chmod 644": the stream goes on from the file it waited at.
	if deny.deny != nil {
		deny.allow(locked)
	} else if err := os.Chmod(filepath.Join(dir, locked), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return sink.count() == 60 }, "all 60 lines after the file became readable (%d)", sink.count())
	checkExactlyOnceInOrder(t, "mem", sink.records(), 60)
	testenv.Eventually(t, 5*time.Second, func() bool { return gauge(IgnoredUnreadable) == 0 }, "unreadable gauge back to 0")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// linesBefore counts the lines of the sealed files before stop.
func linesBefore(t *testing.T, dir string, sealed []string, stop string) int {
	n := 0
	for _, f := range sealed {
		if f >= stop {
			break
		}
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		n += strings.Count(string(data), "\n")
	}
	return n
}

// A spool written by another writer (foreign names) and no pattern: the
// loader logs one ERROR at start that names the pattern to set and loads
// nothing; with that pattern every line loads exactly once.
func TestForeignNamesNeedPattern(t *testing.T) {
	spool := t.TempDir()
	var dir string
	for f := range 3 {
		name := fmt.Sprintf("%020d-20261122T00000%dZ.ndjson", f+1, f)
		dir = writeStreamFile(t, spool, "api", name, evLines(f*10, f*10+10, 1, "legacy"))
	}
	var logs logRecords
	sink := newMemSink(t, "mem", true)
	cfg := Config{Dir: spool, Schema: testSchema(t), Logger: logs.logger()}
	_, stop := runLoader(t, cfg, sink.spec())
	testenv.Eventually(t, 10*time.Second, func() bool {
		return len(logs.with(t, "ERROR", "stream directory holds files but none the loader recognises: nothing will be loaded")) == 1
	}, "one ERROR at start-up")
	m := logs.with(t, "ERROR", "stream directory holds files but none the loader recognises: nothing will be loaded")[0]
	if fix, _ := m["fix"].(string); !strings.Contains(fix, `pattern: "*.ndjson"`) {
		t.Errorf("ERROR's fix does not name the pattern: %v", m)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := sink.count(); n != 0 {
		t.Fatalf("loaded %d lines of unrecognised files", n)
	}

	// Status with the pattern: the oldest pending line's age comes from the
	// file's modification time, legacy names carry none.
	hourAgo := time.Now().Add(-time.Hour)
	first := filepath.Join(dir, fmt.Sprintf("%020d-20261122T000000Z.ndjson", 1))
	if err := os.Chtimes(first, hourAgo, hourAgo); err != nil {
		t.Fatal(err)
	}
	none := func(context.Context, string) (Position, bool, error) { return Position{}, false, nil }
	ss, err := Status(context.Background(), Config{Dir: spool, Schema: testSchema(t), Streams: []StreamConfig{{Name: "api", Pattern: "*.ndjson"}}},
		map[string]CheckpointFunc{"mem": none})
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 1 || len(ss[0].Sinks) != 1 || ss[0].Sinks[0].OldestPending < 59*time.Minute {
		t.Fatalf("Status of a legacy spool: %+v; want OLDEST PENDING about an hour", ss)
	}

	// With the suggested pattern (and the newest file sealed by age).
	var clock skewClock
	clock.skip(time.Hour)
	cfg2 := Config{Dir: spool, Schema: testSchema(t), StateDir: t.TempDir(), now: clock.now,
		Streams: []StreamConfig{{Name: "api", Pattern: "*.ndjson"}}, Batch: BatchConfig{Linger: time.Millisecond}}
	sink2 := newMemSink(t, "mem2", true)
	_, stop2 := runLoader(t, cfg2, sink2.spec())
	testenv.Eventually(t, 10*time.Second, func() bool { return sink2.count() == 30 }, "every line with the pattern (%d)", sink2.count())
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnceInOrder(t, "mem2", sink2.records(), 30)
}
