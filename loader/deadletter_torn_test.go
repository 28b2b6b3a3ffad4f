package loader

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/testenv"
)

// A kill can leave the last dead letter half written: the buffered writer
// flushes whatever fills its 64 KiB buffer, so a burst of bad lines
// reaches the file in pieces before the sync (a kill -9 of `ingest run`
// during 200,000 malformed lines left one on its first try). The next run
// must not append after the torn piece, which would glue its first entry
// onto it in a line no reader parses (a jq replay stops there); it cuts
// the piece and writes that line's dead letter again, once. No Kafka or
// PostgreSQL: an in-memory sink.
func TestTornDeadLetterIsCutNotGluedOnto(t *testing.T) {
	spool := t.TempDir()
	dir := filepath.Join(spool, "api")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	const file = "0000000000000001-20261206T000000.000Z.ndjson"
	bad1, bad2 := `{"table":"ev","row":{"account":1,`, `[2]`
	var b strings.Builder
	b.WriteString(evLine(1, 0, "a") + "\n")
	off1 := int64(b.Len())
	b.WriteString(bad1 + "\n")
	b.WriteString(evLine(1, 1, "b") + "\n")
	off2 := int64(b.Len())
	b.WriteString(bad2 + "\n")
	b.WriteString(evLine(1, 2, "c") + "\n")
	if err := os.WriteFile(filepath.Join(dir, file), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	// What the killed run left: bad1's entry whole, bad2's cut short.
	state := t.TempDir()
	now := time.Now().UTC()
	entry := func(off int64, line, reason string) []byte {
		e := DeadLetter{Time: now, Stream: "api", Reason: reason, File: file, Offset: off, Length: int64(len(line)), Line: &line}
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	e2 := entry(off2, bad2, "not_object")
	left := append(append(entry(off1, bad1, "malformed_json"), '\n'), e2[:len(e2)/2]...)
	dlDir := filepath.Join(state, "deadletter", "api")
	if err := os.MkdirAll(dlDir, 0o750); err != nil {
		t.Fatal(err)
	}
	dlFile := filepath.Join(dlDir, now.Format("2006-01-02")+".ndjson")
	if err := os.WriteFile(dlFile, left, 0o640); err != nil {
		t.Fatal(err)
	}

	sink := newMemSink(t, "mem", false)
	cfg := Config{Dir: spool, StateDir: state, Schema: testSchema(t), Batch: BatchConfig{MaxRecords: 10, Linger: time.Millisecond}}
	_, stop := runLoader(t, cfg, sink.spec())
	testenv.Eventually(t, 10*time.Second, func() bool { return sink.count() == 3 }, "the 3 good lines (%d)", sink.count())
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	dls, err := ReadDeadLetters(state, "api")
	if err != nil {
		data, _ := os.ReadFile(dlFile)
		t.Fatalf("dead letters after the restart: %v\n%s", err, data)
	}
	got := map[int64]int{}
	for _, d := range dls {
		got[d.Offset]++
	}
	if len(dls) != 2 || got[off1] != 1 || got[off2] != 1 {
		t.Fatalf("dead letters at offsets %v, want %d and %d once each", got, off1, off2)
	}
}
