package loader

import (
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/rotatefile"
)

// While a sink is down, ingest_lag_seconds keeps growing with the age of
// the oldest line it has not acknowledged (it used to move only on acks,
// and a replay reset it); once the sink is back it returns to 0. No Kafka
// or PostgreSQL: an in-memory sink that fails on demand, and a clock the
// test moves.
func TestLagSecondsGrowsWhileSinkIsDown(t *testing.T) {
	spool, w := openWriter(t, rotatefile.Options{})
	var clock skewClock
	sink := newMemSink(t, "mem", true)
	sink.failing.Store(true)
	l, stop := runLoader(t, Config{Dir: spool, Schema: testSchema(t), now: clock.now, Batch: BatchConfig{Linger: time.Millisecond}}, sink.spec())
	appendEv(t, w, 0, 10, 1, "lag")
	lag := func() float64 { return metricValue(t, l.metrics.lagSeconds.WithLabelValues("api", "mem")) }
	testenv.Eventually(t, 10*time.Second, func() bool { return metricValue(t, l.metrics.batchFailed.WithLabelValues("api", "mem")) >= 1 }, "a failed batch")
	clock.skip(time.Hour)
	testenv.Eventually(t, 10*time.Second, func() bool { return lag() >= 3600 }, "lag_seconds ≥ 1h while the sink is down (%v)", lag())
	sink.failing.Store(false)
	testenv.Eventually(t, 60*time.Second, func() bool { return sink.count() == 10 }, "every line once the sink is back (%d)", sink.count())
	testenv.Eventually(t, 10*time.Second, func() bool { return lag() == 0 }, "lag_seconds back to 0 (%v)", lag())
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// ingest_lag_bytes and `ingest status` report the same bytes, because
// both come from pending: the lines a failing sink has not acknowledged,
// then 0 once it has. No Kafka or PostgreSQL: an in-memory sink that owns
// its checkpoint and fails on demand.
func TestLagBytesMatchesStatus(t *testing.T) {
	spool, w := openWriter(t, rotatefile.Options{})
	sink := newMemSink(t, "mem", true)
	cfg := Config{Dir: spool, Schema: testSchema(t), Batch: BatchConfig{Linger: time.Millisecond}}
	l, stop := runLoader(t, cfg, sink.spec())
	appendLines := func(from, to int) (n int64) {
		for i := from; i < to; i++ {
			line := evLine(1, i, "lagbytes")
			if err := w.Append([]byte(line)); err != nil {
				t.Fatal(err)
			}
			n += int64(len(line)) + 1 // the newline the writer adds
		}
		return n
	}
	metric := func() int64 {
		l.measureLag()
		return int64(metricValue(t, l.metrics.lagBytes.WithLabelValues("api", "mem")))
	}
	status := func() int64 {
		st, err := Status(t.Context(), cfg, map[string]CheckpointFunc{"mem": memOwner{sink}.Checkpoint})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range st {
			if s.Stream == "api" {
				for _, k := range s.Sinks {
					if k.Sink == "mem" {
						return k.LagBytes
					}
				}
			}
		}
		t.Fatalf("status has no api/mem: %+v", st)
		return 0
	}
	appendLines(0, 10)
	testenv.Eventually(t, 10*time.Second, func() bool { return sink.count() == 10 && metric() == 0 }, "10 lines acknowledged and lag_bytes 0 (%d)", metric())
	sink.failing.Store(true)
	want := appendLines(10, 15)
	testenv.Eventually(t, 10*time.Second, func() bool { return metricValue(t, l.metrics.batchFailed.WithLabelValues("api", "mem")) >= 1 }, "a failed batch")
	if got, st := metric(), status(); got != want || st != want {
		t.Fatalf("while the sink is down: lag_bytes %d, status %d; want both %d (the 5 unacknowledged lines)", got, st, want)
	}
	sink.failing.Store(false)
	testenv.Eventually(t, 60*time.Second, func() bool { return sink.count() == 15 && metric() == 0 }, "lag_bytes back to 0 (%d)", metric())
	if st := status(); st != 0 {
		t.Fatalf("status lag %d after every line was acknowledged, want 0", st)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
