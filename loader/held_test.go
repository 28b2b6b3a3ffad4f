package loader

import (
	"testing"
	"time"

	"github.com/dualwrite/ingest/rotatefile"
)

// A sink that stores each batch inside Submit (like the database) holds
// the pipeline; lines appended meanwhile have already waited, so the next
// batch goes out as soon as Submit returns instead of lingering again.
func TestLinesAppendedDuringASlowSubmitDoNotLingerAgain(t *testing.T) {
	spool := t.TempDir()
	w, err := rotatefile.Open(rotatefile.Options{Dir: spool, Stream: "api", FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Commits longer than Linger, as PostgreSQL's are next to the 20 ms
	// default at 10k lines/s.
	const linger, commit = 2 * time.Second, 2500 * time.Millisecond
	sink := newMemSink(t, "slowdb", true)
	sink.delay = commit // synchronous: Submit blocks this long
	_, stop := runLoader(t, Config{Dir: spool, Schema: testSchema(t), Batch: BatchConfig{Linger: linger}}, sink.spec())

	if err := w.Append([]byte(evLine(1, 0, "first"))); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() bool { return sink.submitted.Load() == 1 }, "first batch at the sink")
	const more = 20
	for i := 1; i <= more; i++ {
		if err := w.Append([]byte(evLine(1, i, "during"))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 30*time.Second, func() bool { return sink.count() == 1+more }, "all lines stored")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	recs := sink.records()
	checkExactlyOnceInOrder(t, sink.name, recs, 1+more)
	// Stored times: the first batch at the end of its Submit; the second
	// one commit later if it went out as soon as the first Submit
	// returned, linger + commit later if it lingered again.
	gap := recs[more].Stored.Sub(recs[0].Stored)
	t.Logf("second batch stored %v after the first (commit %v, linger %v)", gap, commit, linger)
	if gap >= commit+linger/2 {
		t.Fatalf("second batch stored %v after the first: it lingered again after the %v Submit", gap, commit)
	}
}
