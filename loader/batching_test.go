package loader

import (
	"testing"
	"time"

	"github.com/dualwrite/ingest/rotatefile"
)

// With a long Linger, an idle sink still gets a line as soon as it is
// read, and lines that arrive while a batch is in flight go out together
// as the next batch, as soon as the sink is free.
func TestIdleSinkGetsLinesAtOnceBusySinkGetsThemTogether(t *testing.T) {
	spool := t.TempDir()
	w, err := rotatefile.Open(rotatefile.Options{Dir: spool, Stream: "api", FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	sink := newMemSink(t, "mem", false)
	sink.async, sink.delay = true, 300*time.Millisecond
	spec := sink.spec()
	spec.MaxInFlight = 1
	_, stop := runLoader(t, Config{Dir: spool, Schema: testSchema(t), Batch: BatchConfig{Linger: time.Minute}}, spec)

	if err := w.Append([]byte(evLine(1, 0, "first"))); err != nil {
		t.Fatal(err)
	}
	// Batch 1 (the first line) is at the sink for 300 ms: append the rest
	// meanwhile.
	eventually(t, 10*time.Second, func() bool { return sink.count() == 0 && loaderSubmitted(sink) }, "first line handed over")
	const more = 50
	for i := 1; i <= more; i++ {
		if err := w.Append([]byte(evLine(1, i, "more"))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, func() bool { return sink.count() == 1+more }, "all %d lines at the sink well before Linger (have %d)", 1+more, sink.count())
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := sink.batches.Load(); n != 2 {
		t.Fatalf("%d batches, want 2: the first line alone, then the %d lines that arrived while it was in flight", n, more)
	}
	checkExactlyOnceInOrder(t, sink.name, sink.records(), 1+more)
}

// loaderSubmitted reports whether the async memSink has taken a batch.
func loaderSubmitted(s *memSink) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queue != nil
}
