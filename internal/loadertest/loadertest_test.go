package loadertest_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/rotatefile"
	"github.com/dualwrite/ingest/schema"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The helpers agree with what a real loader does: a run started with
// Start delivers a stream's lines to a MemSink in file order, dead-letters
// a line for an unknown table (read back by DeadLetters), and once Stop
// returns, the checkpoint in the file store (FileCheckpoint) and
// Position are both StreamEnd.
func TestHelpersOnARealLoader(t *testing.T) {
	const stream, n = "s", 50
	spool := t.TempDir()
	w, err := rotatefile.Open(rotatefile.Options{Dir: spool, Stream: stream, MaxBytes: 1 << 10, FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if i == 7 {
			if err := w.Append([]byte(`{"table":"nope","row":{"k":"a","seq":-1}}`)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Append(fmt.Appendf(nil, `{"table":"t","row":{"k":"a","seq":%d}}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	sch, err := schema.New(map[string]*schema.Table{"t": {Key: "k", Columns: map[string]string{"k": "text", "seq": "bigint"}}})
	if err != nil {
		t.Fatal(err)
	}
	mem := loadertest.NewMemSink("mem")
	log, logger := loadertest.NewLog(t)
	run := loadertest.Start(t, loader.Config{Dir: spool, Schema: sch, Logger: logger}, loader.SinkSpec{Sink: mem, MaxInFlight: 2})
	end := loadertest.StreamEnd(t, spool, stream)
	if files, _ := rotatefile.ParseName(end.File); files.Seq < 2 {
		t.Fatalf("stream end %v: want the lines spread over several files", end)
	}
	testenv.Eventually(t, 30*time.Second, func() bool { return run.Position(stream, "mem") == end },
		"checkpoint at the stream end %v (at %v)", end, loadertest.Lazy(func() string { return run.Position(stream, "mem").String() }))
	if !run.Alive() || run.Err() != nil {
		t.Fatalf("loader stopped early: %v", run.Err())
	}
	if err := run.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if run.Alive() {
		t.Fatal("Alive after Stop")
	}

	recs := mem.Records()
	if len(recs) != n || mem.Count() != n {
		t.Fatalf("mem sink has %d records (Count %d), want %d", len(recs), mem.Count(), n)
	}
	for i, r := range recs {
		if want := fmt.Sprintf(`"seq":%d`, i); !strings.Contains(string(r.Row), want) || r.Stream != stream || r.Key != "a" {
			t.Fatalf("record %d: %+v, want seq %d of stream %s", i, r, i, stream)
		}
	}
	if _, ok := mem.At(n); ok {
		t.Fatalf("At(%d) found a record past the end", n)
	}
	state := filepath.Join(spool, ".ingest")
	if cp, ok := loadertest.FileCheckpoint(t, state, "mem", stream); !ok || cp != end {
		t.Fatalf("file checkpoint %v (found %v), want the stream end %v", cp, ok, end)
	}
	if _, ok := loadertest.FileCheckpoint(t, state, "other", stream); ok {
		t.Fatal("a checkpoint for a sink that never ran")
	}
	dls := loadertest.DeadLetters(t, state, stream)
	if len(dls) != 1 || dls[0].Line == nil || !strings.Contains(*dls[0].Line, `"table":"nope"`) {
		t.Fatalf("dead letters %+v, want the one line for table nope", dls)
	}
	if log.Count("level=") == 0 {
		t.Error("the loader logged nothing through NewLog's logger")
	}
}
