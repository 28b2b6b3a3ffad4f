package kafkasink_test

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/kafkasink"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/rotatefile"
)

// The real loader tails a stream that rotatefile rotates every few dozen
// lines, and is stopped and started again (a new Loader, alternately on the
// same Sink and on a new one) at random points while lines keep coming.
// Read back with a real consumer, every line is in the topic, keyed by its
// account on Java's partition, and per account the lines are in file
// order. A graceful stop finishes its in-flight batches, so nothing may
// repeat at all; the checkpoint never moves back across restarts.
// Real broker (shared): order and repeats are read back from Kafka; no
// broker is stopped.
func TestLoaderPerAccountOrderAcrossRotationsAndRestarts(t *testing.T) {
	t.Parallel()
	const (
		table      = "events"
		partitions = 4
		n          = 8000
		restarts   = 8
	)
	c := testenv.Broker(t)
	topic := newTopic(t, c, partitions)
	sch := testSchema(t, map[string]string{table: topic})
	spool := t.TempDir()
	// ~120-byte lines in 4 KiB files: a rotation every ~30 lines.
	lw := startLineWriter(t, spool, table, 4<<10, writerPace{max: n, burst: 40, pause: 10 * time.Millisecond, accts: 40, body: 24})

	cfg := loader.Config{
		Dir: spool, Schema: sch, Logger: loadertest.Logger(t),
		// Small batches, several in flight: a stop always finds some.
		Batch: loader.BatchConfig{MaxRecords: 50, Linger: 2 * time.Millisecond},
	}
	sink := newSink(t, c, kafkasink.Config{Topics: []string{topic}})
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var prev loader.Position
	runs := 0
	start := time.Now()
	for runs < restarts || !lw.isDone() {
		runs++
		run := loadertest.Start(t, cfg, loader.SinkSpec{Sink: sink, MaxInFlight: 4})
		time.Sleep(time.Duration(20+rng.IntN(250)) * time.Millisecond) // the stop point
		if err := run.Stop(); err != nil {
			t.Fatalf("run %d: %v", runs, err)
		}
		cp := run.Position(loaderStream, sink.Name())
		if cp.Before(prev) {
			t.Fatalf("run %d: checkpoint moved back from %s to %s", runs, prev, cp)
		}
		if disk, _ := loadertest.FileCheckpoint(t, filepath.Join(spool, ".ingest"), sink.Name(), loaderStream); disk != cp {
			t.Fatalf("run %d: checkpoint file says %s, loader %s", runs, disk, cp)
		}
		t.Logf("run %d stopped at %s (%d lines appended)", runs, cp, lw.appended())
		prev = cp
		if runs%2 == 0 {
			// Next run on a fresh producer.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			err := sink.Close(ctx)
			cancel()
			if err != nil {
				t.Fatalf("close sink: %v", err)
			}
			sink = newSink(t, c, kafkasink.Config{Topics: []string{topic}})
		}
	}
	written := lw.finish()
	end := loadertest.StreamEnd(t, spool, loaderStream)

	// A last run takes the rest.
	run := loadertest.Start(t, cfg, loader.SinkSpec{Sink: sink, MaxInFlight: 4})
	testenv.Eventually(t, 60*time.Second, func() bool { return !run.Position(loaderStream, sink.Name()).Before(end) },
		"kafka checkpoint at the stream end %s", end)
	if err := run.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d lines, %d loader runs (%d restarts), all delivered after %v", written, runs+1, runs, time.Since(start).Round(time.Millisecond))

	total := topicSize(t, c, topic)
	d := checkDelivery(t, consume(t, c, topic, total), lw.accounts(), table, partitions)
	files, _ := rotatefile.ParseName(end.File)
	t.Logf("%d messages for %d lines in %d files; %d repeats", total, written, files.Seq, d.repeats)
	if d.repeats != 0 {
		t.Errorf("%d repeats after graceful restarts; the documented at-least-once window covers crashes, fatal and permanent errors and Close giving up only", d.repeats)
	}
}
