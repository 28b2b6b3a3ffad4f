package backfill_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/dualwrite/ingest/internal/backfill"
	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/loader"
)

// retentionBroker is a broker of the test's own whose retention check runs
// every second from the start (the shared broker's runs every 5 minutes,
// first after 30 s), so a test sees what the broker deletes.
func retentionBroker(t *testing.T) *kafkaserver.Cluster {
	t.Helper()
	return testenv.Cluster(t, 1, map[string]string{
		"log.retention.check.interval.ms": "1000",
		"log.initial.task.delay.ms":       "0",
	})
}

// retentionPassed returns once the broker's retention check has run to the
// end at least once since the call: it produces a message timestamped a day
// back to a topic keeping one minute, waits until the check deleted it, and
// does so twice, as the first deletion may come from a pass that started
// before the call.
func retentionPassed(t *testing.T, kc *kafkaserver.Cluster) {
	t.Helper()
	sentinel := testenv.Topic(t, kc, kafkaserver.TopicSpec{Partitions: 1, Configs: map[string]string{"retention.ms": "60000"}})
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": kc.Bootstrap(), "log_level": 3})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := testenv.Context(t, 3*time.Minute)
	for round := 1; round <= 2; round++ {
		if err := p.Produce(&kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &sentinel, Partition: 0},
			Value:          []byte("sentinel"), Timestamp: time.Now().Add(-24 * time.Hour),
		}, nil); err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-p.Events():
			if m, ok := ev.(*kafka.Message); !ok || m.TopicPartition.Error != nil {
				t.Fatalf("produce the sentinel: %v", ev)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no delivery report for the sentinel")
		}
		testenv.Eventually(t, 60*time.Second, func() bool {
			lo, _, err := kc.Watermarks(ctx, sentinel)
			return err == nil && lo[0] >= int64(round)
		}, "the retention check deleting sentinel %d", round)
	}
}

// retentionEnv is PostgreSQL, the dedicated broker and a topic keeping
// messages for 2 hours; with the default 24 h margin (at most half the
// retention) a backfill takes records from the last hour only.
type retentionEnv struct {
	*env
	now time.Time
}

func newRetentionEnv(t *testing.T) *retentionEnv {
	t.Helper()
	e := newEnvOn(t, retentionBroker(t), strconv.Itoa(2*3600*1000))
	return &retentionEnv{env: e, now: time.Now().Truncate(time.Second)}
}

// write puts n lines timestamped from base, a second apart, into
// <archive>/<stream>/, uuids numbered from first.
func (e *retentionEnv) write(t *testing.T, stream string, base time.Time, n, first int) string {
	t.Helper()
	dir := loadertest.ArchiveDir(t, e.spool, stream)
	var b strings.Builder
	for i := range n {
		k := first + i
		appendLine(&b, i%5+1, line{UUID: fmt.Sprintf("%08x-0000-4000-8000-%012x", k, k), Seq: i, Time: base.Add(time.Duration(i) * time.Second)})
	}
	loadertest.WriteSealed(t, dir, uint64(first+1), base, b.String())
	return dir
}

func (e *retentionEnv) run(t *testing.T, cfg *config.Config, o backfill.Options) (*backfill.Summary, error) {
	t.Helper()
	o.Sinks = []string{config.SinkKafka}
	return backfill.Run(testenv.Context(t, 2*time.Minute), cfg, o)
}

// The check: rows older than the topic keeps are backfilled.
// Either every record is still in Kafka after the broker's retention check
// has run, or the backfill stopped with a *TopicError (exit 2) before
// producing them — never success with records gone. A window that already
// reaches too far back stops before anything is produced. Dedicated broker:
// its retention check runs every second.
func TestBackfillNeverProducesWhatRetentionDeletes(t *testing.T) {
	e := newRetentionEnv(t)
	cfg := e.config(t, "all")
	const n = 300

	// --since three days back: refused up front, nothing produced.
	old := e.write(t, "old", e.now.Add(-72*time.Hour), n, 0)
	_, err := e.run(t, cfg, backfill.Options{Paths: []string{old}, Window: loader.Window{Since: e.now.Add(-72 * time.Hour)}})
	var te *backfill.TopicError
	if !errors.As(err, &te) || te.Topic != e.topic || te.Setting != "retention.ms" || te.Where != "--since" ||
		!strings.Contains(err.Error(), "retention.ms=7200000") || !strings.Contains(err.Error(), "--add-config retention.ms") {
		t.Fatalf("--since 72h back on a 2h topic: %v", err)
	}
	if n := e.topicSize(t); n != 0 {
		t.Fatalf("refused up front, yet %d messages produced", n)
	}

	// No window: the first batch holds a record too old, nothing goes out.
	sum, err := e.run(t, cfg, backfill.Options{Paths: []string{old}})
	retentionPassed(t, e.kc)
	held := e.topicSize(t)
	switch {
	case err == nil && held != n:
		t.Fatalf("backfill succeeded (%+v) and the broker deleted %d of its %d records", sum, n-held, n)
	case err != nil && (!errors.As(err, &te) || te.Where == "--since" || !te.Time.Equal(e.now.Add(-72*time.Hour)) || held != 0):
		t.Fatalf("backfill of records 72h old: %v; topic holds %d", err, held)
	case err != nil && (sum == nil || sum.Complete || sum.OK()):
		t.Fatalf("stopped backfill's summary %+v", sum)
	}

	// Recent records, then old ones: the recent ones are produced and stay,
	// nothing older than the topic keeps follows them.
	recent := e.write(t, "mixed", e.now.Add(-30*time.Minute), n, 1000)
	e.write(t, "mixed", e.now.Add(-48*time.Hour), n, 2000)
	_, err = e.run(t, cfg, backfill.Options{Paths: []string{recent}})
	if !errors.As(err, &te) || !te.Time.Equal(e.now.Add(-48*time.Hour)) || !strings.Contains(te.Where, "mixed/") {
		t.Fatalf("recent then old records: %v", err)
	}
	retentionPassed(t, e.kc)
	msgs := e.kafkaMessages(t)
	if len(msgs) != n {
		t.Fatalf("topic holds %d messages after the retention check, want the %d recent ones", len(msgs), n)
	}
	for _, m := range msgs {
		if m.Timestamp.Before(e.now.Add(-time.Hour)) {
			t.Fatalf("a message timestamped %v was produced to a topic keeping 2h", m.Timestamp)
		}
	}

	// The fix the error names: raise the retention; the same job resumes
	// and completes, and everything is still there after the check.
	if err := e.kc.SetTopicConfig(testenv.Context(t, 30*time.Second), e.topic, map[string]string{"retention.ms": "-1"}); err != nil {
		t.Fatal(err)
	}
	sum, err = e.run(t, cfg, backfill.Options{Paths: []string{recent}})
	if err != nil || !sum.OK() || !sum.Resumed {
		t.Fatalf("after raising retention: %v %+v", err, sum)
	}
	retentionPassed(t, e.kc)
	if held := e.topicSize(t); held != 2*n {
		t.Fatalf("topic holds %d messages after the retention check, want %d", held, 2*n)
	}
}
