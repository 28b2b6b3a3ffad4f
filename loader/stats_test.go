package loader

import (
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/rotatefile"
	"github.com/dualwrite/ingest/schema"
)

// TestStatsCountWhatEachSinkDid: Stats is the engine's own account of a
// run (the backfill's progress and the demo read it, not the metrics
// registry): per stream the invalid lines dead-lettered, and per sink the
// lines it took, the records it delivered, those its route left out, and
// its lag once measured. In-memory sinks; no Kafka or PostgreSQL.
func TestStatsCountWhatEachSinkDid(t *testing.T) {
	spool := t.TempDir()
	w, err := rotatefile.Open(rotatefile.Options{Dir: spool, Stream: "api"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	all, some := newMemSink(t, "all", true), newMemSink(t, "some", false)
	evenOnly := some.spec()
	evenOnly.Route = func(_ *schema.Table, key string) bool { return key == "0" }
	l, stop := runLoader(t, Config{Dir: spool, Schema: testSchema(t), PollInterval: 5 * time.Millisecond,
		Batch: BatchConfig{MaxRecords: 50, Linger: time.Millisecond}}, all.spec(), evenOnly)
	const n, bad = 400, 3
	for i := range n {
		if err := w.Append([]byte(evLine(i%2, i, "stats"))); err != nil {
			t.Fatal(err)
		}
		if i%150 == 0 {
			if err := w.Append([]byte(`{"table":"ev","row":`)); err != nil { // invalid JSON
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	lagged := func() bool {
		for _, k := range l.Stats().Streams["api"].Sinks {
			if k.LagBytes != 0 {
				return false
			}
		}
		return true
	}
	testenv.Eventually(t, 60*time.Second, func() bool { return all.count() == n && some.count() == n/2 && lagged() },
		"both sinks caught up (all %d/%d, some %d/%d, stats %+v)", all.count(), n, some.count(), n/2, l.Stats())
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	st := l.Stats().Streams["api"]
	if st.DeadLettered != bad {
		t.Errorf("stream dead-lettered %d lines, want the %d invalid ones", st.DeadLettered, bad)
	}
	want := map[string]SinkStats{
		"all":  {LinesRead: n + bad, Delivered: n},
		"some": {LinesRead: n + bad, Delivered: n / 2, NotRouted: n / 2},
	}
	for name, w := range want {
		if got := st.Sinks[name]; got != w {
			t.Errorf("sink %s: stats %+v, want %+v", name, got, w)
		}
	}
}
