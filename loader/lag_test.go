package loader

import (
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/rotatefile"
	dto "github.com/prometheus/client_model/go"
)

// While a sink is down, ingest_lag_seconds keeps growing with the age of
// the oldest line it has not acknowledged (it used to move only on acks,
// and a replay reset it); once the sink is back it returns to 0. No Kafka
// or PostgreSQL: an in-memory sink that fails on demand, and a clock the
// test moves.
func TestLagSecondsGrowsWhileSinkIsDown(t *testing.T) {
	spool := t.TempDir()
	w, err := rotatefile.Open(rotatefile.Options{Dir: spool, Stream: "api"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var clock skewClock
	sink := newMemSink(t, "mem", true)
	sink.failing.Store(true)
	l, stop := runLoader(t, Config{Dir: spool, Schema: testSchema(t), now: clock.now, Batch: BatchConfig{Linger: time.Millisecond}}, sink.spec())
	for i := range 10 {
		if err := w.Append([]byte(evLine(1, i, "lag"))); err != nil {
			t.Fatal(err)
		}
	}
	lag := func() float64 {
		var m dto.Metric
		if err := l.metrics.lagSeconds.WithLabelValues("api", "mem").Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetGauge().GetValue()
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return counterValue(t, l.metrics.batchFailed.WithLabelValues("api", "mem")) >= 1 }, "a failed batch")
	clock.skip(time.Hour)
	testenv.Eventually(t, 10*time.Second, func() bool { return lag() >= 3600 }, "lag_seconds ≥ 1h while the sink is down (%v)", lag())
	sink.failing.Store(false)
	testenv.Eventually(t, 60*time.Second, func() bool { return sink.count() == 10 }, "every line once the sink is back (%d)", sink.count())
	testenv.Eventually(t, 10*time.Second, func() bool { return lag() == 0 }, "lag_seconds back to 0 (%v)", lag())
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
