package loader

import (
	"bytes"
	"encoding/base64"
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
	stream := filepath.Join(spool, "api")
	if err := os.MkdirAll(stream, 0o750); err != nil {
		t.Fatal(err)
	}
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
	if err := os.WriteFile(filepath.Join(stream, name), data.Bytes(), 0o640); err != nil {
		t.Fatal(err)
	}
	// A later file proves the loader moves on after the torn tail.
	if err := os.WriteFile(filepath.Join(stream, rotatefile.FileName(2, time.Now(), ".ndjson")), []byte(evLine(0, seq, "after")+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
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

// A legacy writer's files (a pattern, no rotatefile names, no ".open") are
// complete once a newer file exists and they stopped changing.
func TestLegacyFilesSealAfterQuietPeriod(t *testing.T) {
	spool := t.TempDir()
	stream := filepath.Join(spool, "legacy")
	os.MkdirAll(stream, 0o750)
	write := func(name string, seqs ...int) {
		f, err := os.OpenFile(filepath.Join(stream, name), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range seqs {
			f.WriteString(evLine(1, s, "") + "\n")
		}
		f.Close()
	}
	write("offline-001.json", 0, 1)
	write("ignored.txt", 99)
	sink := newMemSink(t, "mem", true)
	_, stop := runLoader(t, Config{Dir: spool, Schema: testSchema(t),
		Streams: []StreamConfig{{Name: "legacy", Pattern: "offline-*.json", SealAfter: 200 * time.Millisecond}},
		Batch:   BatchConfig{Linger: time.Millisecond}}, sink.spec())
	testenv.Eventually(t, 10*time.Second, func() bool { return sink.count() == 2 }, "lines of the first legacy file")
	write("offline-001.json", 2) // still growing: it is the newest file
	write("offline-002.json", 3)
	testenv.Eventually(t, 10*time.Second, func() bool { return sink.count() == 4 }, "the loader moves on once the older file is quiet")
	stop()
	checkExactlyOnceInOrder(t, "mem", sink.records(), 4)
	if _, err := os.Stat(filepath.Join(stream, "ignored.txt")); err != nil {
		t.Error("a file outside the pattern was touched")
	}
}
