package loader

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/rotatefile"
)

// A corpus of bad lines between good ones: every bad line is dead-lettered
// once with its reason and offset, every good line is loaded, and nothing
// blocks.
func TestBadInputIsDeadLetteredAndGoodLinesLoad(t *testing.T) {
	spool := t.TempDir()
	const maxLine = 1 << 20
	huge := `{"table":"ev","row":{"account":1,"seq":-1,"pad":"` + strings.Repeat("h", 10<<20) + `"}}`
	bad := []struct{ line, reason string }{
		{`{"table":"ev","row":{"account":1,`, "malformed_json"},
		{`[1,2,3]`, "not_object"},
		{`{"table":"ev","row":"not an object"}`, "row_not_object"},
		{`{"table":"ev","row":{"seq":1}}`, "missing_key"},
		{`{"table":"ev","row":{"account":{"nested":1}}}`, "bad_key"},
		{`{"table":"ev","row":{"account":1,"seq":"one"}}`, "bad_column"},
		{`{"table":"nope","row":{"account":1}}`, "unknown_table"},
		{`{"table":"ev; DROP TABLE ev --","row":{"account":1}}`, "unknown_table"},
		{"{\"table\":\"ev\",\"row\":{\"account\":1,\"pad\":\"\xff\xfe\"}}", "invalid_utf8"},
		{``, "empty_line"},
		{huge, ReasonLineTooLong},
	}
	var data bytes.Buffer
	wantOffsets := map[int64]string{}
	seq := 0
	good := func() {
		data.WriteString(evLine(seq%3, seq, "ok") + "\n")
		seq++
	}
	for _, b := range bad {
		good()
		wantOffsets[int64(data.Len())] = b.reason
		data.WriteString(b.line + "\n")
		good()
	}
	// The file ends with a torn line: the writer crashed mid-append.
	torn := `{"table":"ev","row":{"acc`
	wantOffsets[int64(data.Len())] = ReasonTruncatedLine
	data.WriteString(torn)
	name := rotatefile.FileName(1, time.Now(), ".ndjson")
	writeStreamFile(t, spool, "api", name, data.String())
	// A later file proves the loader moves on after the torn tail.
	writeStreamFile(t, spool, "api", rotatefile.FileName(2, time.Now(), ".ndjson"), evLine(0, seq, "after")+"\n")
	seq++

	a := newMemSink(t, "a", true)
	b := newMemSink(t, "b", false)
	_, stop := runLoader(t, Config{Dir: spool, Schema: testSchema(t), MaxLineBytes: maxLine}, a.spec(), b.spec())
	testenv.Eventually(t, 20*time.Second, func() bool { return a.count() == seq && b.count() == seq }, "good lines loaded (%d, %d of %d)", a.count(), b.count(), seq)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnceInOrder(t, "a", a.records(), seq)
	checkExactlyOnceInOrder(t, "b", b.records(), seq)

	dls := readDeadLetters(t, filepath.Join(spool, ".ingest"), "api")
	if len(dls) != len(wantOffsets) {
		for _, d := range dls {
			t.Logf("dead letter %s at %d: %s", d.Reason, d.Offset, d.Detail)
		}
		t.Fatalf("%d dead letters, want %d (one per bad line, written once although two sinks read it)", len(dls), len(wantOffsets))
	}
	for _, d := range dls {
		want, ok := wantOffsets[d.Offset]
		if !ok || d.Reason != want || d.File != name || d.Stream != "api" {
			t.Errorf("dead letter %s at %s:%d (%s), want reason %q at a bad line's offset", d.Reason, d.File, d.Offset, d.Detail, want)
		}
		// The original bytes are recoverable from every entry.
		var line []byte
		switch {
		case d.Line != nil:
			line = []byte(*d.Line)
		case d.LineBase64 != "":
			var err error
			if line, err = base64.StdEncoding.DecodeString(d.LineBase64); err != nil {
				t.Fatal(err)
			}
		}
		if got := data.Bytes()[d.Offset : d.Offset+int64(len(line))]; !bytes.Equal(got, line) || int64(len(line)) != d.Length {
			t.Errorf("dead letter at %d does not hold the original line (%d bytes, length %d)", d.Offset, len(line), d.Length)
		}
	}
}

// Bad lines are dead-lettered once per line, although the stream reads
// them again: after a sink failure (the pipeline replays from its
// checkpoint, several times) and after a restart from an old checkpoint.
// No Kafka or PostgreSQL: an in-memory sink that fails on demand.
func TestDeadLettersWrittenOncePerLine(t *testing.T) {
	spool := t.TempDir()
	data, good, bad := evLinesWithBad(300, 30, 7, 1, "dl")
	writeStreamFile(t, spool, "api", firstFile, data)
	state := t.TempDir()
	cfg := Config{Dir: spool, StateDir: state, Schema: testSchema(t), PollInterval: 5 * time.Millisecond,
		Batch: BatchConfig{MaxRecords: 25, Linger: time.Millisecond}}

	// Run 1: the sink fails its batches for a while, so the pipeline
	// replays the first lines (and their bad ones) several times.
	sink := newMemSink(t, "mem", false) // the loader's file store keeps its checkpoint
	sink.failing.Store(true)
	l, stop := runLoader(t, cfg, sink.spec())
	failed := func() float64 { return metricValue(t, l.metrics.batchFailed.WithLabelValues("api", "mem")) }
	testenv.Eventually(t, 30*time.Second, func() bool { return failed() >= 3 }, "three failed batches (%v)", failed())
	sink.failing.Store(false)
	testenv.Eventually(t, 30*time.Second, func() bool { return sink.count() == good }, "every good line once the sink works (%d of %d)", sink.count(), good)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnceInOrder(t, "mem", sink.records(), good)
	checkOnce(t, state, bad, "after replays")

	// Run 2: the checkpoint is lost (as after a crash before any save), so
	// every line is read again.
	if err := os.RemoveAll(filepath.Join(state, "checkpoints")); err != nil {
		t.Fatal(err)
	}
	again := newMemSink(t, "mem", false)
	_, stop = runLoader(t, cfg, again.spec())
	testenv.Eventually(t, 30*time.Second, func() bool { return again.count() == good }, "every good line after the restart (%d of %d)", again.count(), good)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkOnce(t, state, bad, "after a restart from an old checkpoint")
}

func checkOnce(t *testing.T, state string, want int, when string) {
	t.Helper()
	seen := map[string]int{}
	for _, d := range readDeadLetters(t, state, "api") {
		seen[fmt.Sprintf("%s:%d", d.File, d.Offset)]++
	}
	for k, n := range seen {
		if n > 1 {
			t.Errorf("%s: dead letter %s written %d times", when, k, n)
		}
	}
	if len(seen) != want {
		t.Errorf("%s: %d lines dead-lettered, want %d", when, len(seen), want)
	}
}

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
	bad1, bad2 := `{"table":"ev","row":{"account":1,`, `[2]`
	var b strings.Builder
	b.WriteString(evLine(1, 0, "a") + "\n")
	off1 := int64(b.Len())
	b.WriteString(bad1 + "\n")
	b.WriteString(evLine(1, 1, "b") + "\n")
	off2 := int64(b.Len())
	b.WriteString(bad2 + "\n")
	b.WriteString(evLine(1, 2, "c") + "\n")
	writeStreamFile(t, spool, "api", firstFile, b.String())

	// What the killed run left: bad1's entry whole, bad2's cut short.
	state := t.TempDir()
	now := time.Now().UTC()
	entry := func(off int64, line, reason string) []byte {
		e := DeadLetter{Time: now, Stream: "api", Reason: reason, File: firstFile, Offset: off, Length: int64(len(line)), Line: &line}
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	e2 := entry(off2, bad2, "not_object")
	left := append(append(entry(off1, bad1, "malformed_json"), '\n'), e2[:len(e2)/2]...)
	dlName := now.Format("2006-01-02") + ".ndjson"
	dlFile := filepath.Join(writeStreamFile(t, StateLayout{Dir: state}.DeadLetters(), "api", dlName, string(left)), dlName)

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

// No Kafka, no PostgreSQL: dead-letter files written by hand. The count
// status, doctor, backfill and the demo report is per stream or over every
// stream, and a file it cannot read is named rather than counted as empty.
func TestCountDeadLetters(t *testing.T) {
	state := t.TempDir()
	l := StateLayout{Dir: state}
	write := func(stream, name, body string) { writeStreamFile(t, l.DeadLetters(), stream, name, body) }
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

// rejectOdd stores the even seqs and dead-letters the odd ones, as a sink
// does with records it cannot store (a value the database refuses, a
// message above the topic's limit).
type rejectOdd struct{ *memSink }

func (s rejectOdd) Submit(ctx context.Context, b *Batch, ack func(error)) error {
	keep := b.Records[:0:0]
	for i, r := range b.Records {
		if parseGot(r).Seq%2 == 1 {
			if err := b.Reject(ctx, i, "test_reject", "odd"); err != nil {
				ack(err)
				return nil
			}
			continue
		}
		keep = append(keep, r)
	}
	s.store(b.Stream, b.End, keep)
	ack(nil)
	return nil
}

// Records a sink dead-letters count as dead-lettered, never as acked:
// ingest_records_acked_total equals what the sink stored. No Kafka or
// PostgreSQL: an in-memory sink that rejects every other record.
func TestRejectedRecordsAreNotCountedAsAcked(t *testing.T) {
	spool := t.TempDir()
	writeStreamFile(t, spool, "api", firstFile, evLines(0, 100, 1, "rej"))
	sink := rejectOdd{newMemSink(t, "mem", false)}
	l, stop := runLoader(t, Config{Dir: spool, Schema: testSchema(t), Batch: BatchConfig{MaxRecords: 7, Linger: time.Millisecond}},
		SinkSpec{Sink: sink, MaxInFlight: 2})
	testenv.Eventually(t, 10*time.Second, func() bool { return sink.count() == 50 }, "50 even records stored (%d)", sink.count())
	acked := l.metrics.recordsAcked.WithLabelValues("api", "mem")
	rejected := l.metrics.deadLetters.WithLabelValues("api", "mem", "test_reject")
	testenv.Eventually(t, 10*time.Second, func() bool { return metricValue(t, acked) == 50 && metricValue(t, rejected) == 50 },
		"acked %v (want 50, what the sink stored), dead-lettered %v (want 50)", metricValue(t, acked), metricValue(t, rejected))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
