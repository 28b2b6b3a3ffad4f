package consume_test

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dualwrite/ingest/dbsink"
	"github.com/dualwrite/ingest/internal/consume"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/kafkasink"
	"github.com/dualwrite/ingest/loader"
)

// running is a consume.Run in a goroutine of the test.
type running struct {
	cancel context.CancelFunc
	done   chan error
	reg    *prometheus.Registry
	log    *testenv.SyncBuffer
}

// runInProcess starts consume.Run with a short session timeout; the
// returned stop cancels it and returns Run's error.
func runInProcess(t *testing.T, e *env, o consume.Options) *running {
	t.Helper()
	r := &running{done: make(chan error, 1), reg: prometheus.NewRegistry(), log: &testenv.SyncBuffer{}}
	o.Registry = r.reg
	o.Logger = slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o.Properties = map[string]string{"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- consume.Run(ctx, e.cfg, o) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(90 * time.Second):
			t.Error("consume.Run did not return within 90 s of cancel")
		}
		if t.Failed() {
			t.Logf("consume log tail:\n%s", testenv.Tail(r.log.String(), 60))
		}
	})
	return r
}

// stop cancels Run and returns its error.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(90 * time.Second):
		t.Fatal("consume.Run did not return within 90 s of cancel")
		return nil
	}
}

// gauge sums a metric's samples.
func (r *running) metric(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			}
		}
	}
	return sum
}

func checkpoint(t *testing.T, e *env, group, topic string, partition int) int64 {
	t.Helper()
	return queryInt(t, e.pg, `SELECT "offset" FROM ingest_checkpoints WHERE sink = $1 AND stream = $2`,
		consume.SinkName(group), consume.Stream(topic, int32(partition)))
}

// A poison message in the middle of a partition is dead-lettered with its
// reason and position, and the messages around it load, in order; so do a
// message of a table the topic does not carry and a row with a bad id.
func TestPoisonMessagesDeadLettered(t *testing.T) {
	e := newEnv(t, 1, 20)
	pr := newProducer(t, e.kb.Bootstrap())
	now := time.Now()
	ms := items(e.items, 1, 40, func(id int64) int64 { return id % 7 }, now)
	poison := []msg{
		{topic: e.items, table: "items", account: 3, value: `{"account":3,"id":`, recordID: "p1"},                 // offset 40: truncated JSON
		{topic: e.items, table: "items", account: 3, value: `{"account":3,"id":"abc","ts":1}`, recordID: "p2"},    // 41: bad id
		{topic: e.items, table: "nosuch", account: 3, value: `{"account":3,"id":99,"ts":1}`, recordID: "p3"},      // 42: unknown table
		{topic: e.items, table: "items", account: 3, value: `{"account":3,"id":98,"ts":1},"x":1`, recordID: "p4"}, // 43: smuggled member
		// 44: a second "row" after the value: the line would be valid JSON
		// whose last row is another item, so the decoder's row must be the
		// whole value.
		{topic: e.items, table: "items", account: 3, value: `{"account":3,"id":97,"ts":1},"row":{"account":3,"id":96,"ts":1}`, recordID: "p5"},
	}
	ms = append(ms, poison...)
	ms = append(ms, items(e.items, 41, 80, func(id int64) int64 { return id % 7 }, now)...)
	offs := pr.send(ms...)
	if got := int64(offs[40].Offset); got != 40 {
		t.Fatalf("poison message at offset %d, want 40", got)
	}

	r := runInProcess(t, e, consume.Options{Group: "poison"})
	testenv.Eventually(t, 60*time.Second, func() bool {
		n, err := tryInt(e.pg, "SELECT count(*) FROM items")
		return err == nil && n == 80
	}, "80 items loaded")
	testenv.Eventually(t, 30*time.Second, func() bool { return checkpoint(t, e, "poison", e.items, 0) == 85 },
		"checkpoint at offset 85 (past every message)")
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkExactlyOnce(t, e.pg, 80, 0)
	// In order: a fresh heap table keeps insertion order in ctid.
	if n := queryInt(t, e.pg, `SELECT count(*) FROM (SELECT id, lag(id) OVER (ORDER BY ctid) AS prev FROM items) x WHERE prev > id`); n != 0 {
		t.Errorf("%d rows loaded out of offset order", n)
	}

	ctx := testenv.Context(t, time.Minute)
	dl, err := e.kb.Consume(ctx, e.items+".dlq", 5)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]string{40: "malformed_json", 41: "bad_id", 42: "unknown_table", 43: "malformed_json", 44: "malformed_json"}
	for _, m := range dl {
		h := map[string]string{}
		for _, x := range m.Headers {
			h[x.Key] = string(x.Value)
		}
		off, _ := strconv.ParseInt(h[consume.HeaderOffset], 10, 64)
		if h[consume.HeaderTopic] != e.items || h[consume.HeaderPartition] != "0" || want[off] == "" {
			t.Errorf("dead letter with headers %v: want topic %s partition 0 and one of offsets 40-44", h, e.items)
			continue
		}
		if h[consume.HeaderReason] != want[off] || h[consume.HeaderDetail] == "" {
			t.Errorf("dead letter of offset %d: reason %q detail %q, want reason %q and a detail", off, h[consume.HeaderReason], h[consume.HeaderDetail], want[off])
		}
		if string(m.Value) != poison[off-40].value || h[kafkasink.HeaderRecordID] != poison[off-40].recordID {
			t.Errorf("dead letter of offset %d: value %q record id %q, want the source message's", off, m.Value, h[kafkasink.HeaderRecordID])
		}
		delete(want, off)
	}
	if len(want) > 0 {
		t.Errorf("offsets not dead-lettered: %v", want)
	}
	if got := r.metric(t, "ingest_consume_dead_letters_total"); got != 5 {
		t.Errorf("ingest_consume_dead_letters_total = %v, want 5", got)
	}

	sts, err := consume.Status(ctx, e.cfg, consume.Options{Group: "poison"})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		want := consume.PartitionStatus{Topic: st.Topic, Checkpoint: -1, KafkaCommitted: -1}
		if st.Topic == e.items {
			want.Checkpoint, want.KafkaCommitted, want.End = 85, 85, 85
		}
		if st.KafkaCommitted == -1 && want.KafkaCommitted == 85 {
			// Kafka's commit runs in the background (auto.commit.interval.ms)
			// and may not have happened before the consumer left.
			want.KafkaCommitted = -1
		}
		if st != want {
			t.Errorf("status: %+v, want %+v", st, want)
		}
	}
	if len(sts) != 2 {
		t.Errorf("status: %d partitions, want 2 (one per topic)", len(sts))
	}
}

// --since: a new group starts each partition at the first message at or
// after the time; messages before it are not loaded.
func TestSinceStartsAtOffsetsForTimes(t *testing.T) {
	e := newEnv(t, 3, 50)
	pr := newProducer(t, e.kb.Bootstrap())
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	var ms []msg
	for i := int64(1); i <= 60; i++ {
		m := item(e.items, i, i, t0.Add(time.Duration(i)*time.Second))
		m.partition = int32(i % 3)
		ms = append(ms, m)
	}
	pr.send(ms...)
	since := t0.Add(41 * time.Second) // ids 41..60
	r := runInProcess(t, e, consume.Options{Group: "since", Since: since, Tables: []string{"items"}})
	testenv.Eventually(t, 60*time.Second, func() bool {
		for p := range 3 {
			var n int64
			n, err := tryInt(e.pg, fmt.Sprintf(`SELECT coalesce(max("offset"), -1) FROM ingest_checkpoints WHERE stream = '%s'`, consume.Stream(e.items, int32(p))))
			if err != nil || n != 20 {
				return false
			}
		}
		return true
	}, "every partition's checkpoint at its end (offset 20)")
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n, min := queryInt(t, e.pg, "SELECT count(*) FROM items"), queryInt(t, e.pg, "SELECT min(id) FROM items"); n != 20 || min != 41 {
		t.Errorf("items: %d rows from id %d, want 20 rows, ids 41..60 (messages before --since not loaded)", n, min)
	}

	// Without --reset, an earlier --since does not move partitions that
	// have a checkpoint, and says so.
	reset := t0.Add(31 * time.Second) // ids 31..60
	r = runInProcess(t, e, consume.Options{Group: "since", Since: reset, Tables: []string{"items"}})
	testenv.Eventually(t, 60*time.Second, func() bool {
		return strings.Count(r.log.String(), "--since ignored: the partition has a checkpoint") >= 3
	},
		"a WARN per partition that --since is ignored")
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := queryInt(t, e.pg, "SELECT count(*) FROM items"); n != 20 {
		t.Errorf("items after --since without --reset: %d rows, want the 20 already there", n)
	}

	// --reset moves the group's checkpoints back to a new --since; the
	// id column makes the replay add nothing.
	r = runInProcess(t, e, consume.Options{Group: "since", Since: reset, Reset: true, Tables: []string{"items"}})
	testenv.Eventually(t, 60*time.Second, func() bool {
		n, err := tryInt(e.pg, "SELECT count(*) FROM items")
		return err == nil && n == 30
	}, "ids 31..40 loaded after --reset")
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if min := queryInt(t, e.pg, "SELECT min(id) FROM items"); min != 31 {
		t.Errorf("after --reset: min id %d, want 31", min)
	}
}

// PostgreSQL restarted while batches load: the consumer waits, retries
// and loses nothing; the lag metric grows while it is down and drains
// after.
func TestPostgresRestartMidBatch(t *testing.T) {
	e := newEnv(t, 2, 50)
	pr := newProducer(t, e.kb.Bootstrap())
	batch := e.pairs(time.Now())
	pr.send(batch(1, 500)...)
	r := runInProcess(t, e, consume.Options{Group: "pgrestart"})
	testenv.Eventually(t, 60*time.Second, func() bool {
		n, err := tryInt(e.pg, "SELECT count(*) FROM items")
		return err == nil && n > 0
	}, "loading started")
	stopCtx := testenv.Context(t, time.Minute)
	if err := e.pg.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	pr.send(batch(501, 1000)...)
	// The wait leaves room for a loaded machine (a full race run beside
	// this test measured load 29).
	testenv.Eventually(t, 60*time.Second, func() bool { return r.metric(t, "ingest_consume_lag_messages") >= 500 },
		"lag of at least the 500 messages per topic produced while PostgreSQL is down")
	if err := e.pg.Start(stopCtx); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 90*time.Second, func() bool {
		a, err1 := tryInt(e.pg, "SELECT count(*) FROM items")
		b, err2 := tryInt(e.pg, "SELECT count(*) FROM events")
		return err1 == nil && err2 == nil && a >= 1000 && b >= 1000
	}, "everything loaded after the restart")
	testenv.Eventually(t, 30*time.Second, func() bool { return r.metric(t, "ingest_consume_lag_messages") == 0 }, "lag back to 0")
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkExactlyOnce(t, e.pg, 1000, 1000)
	// At least: a batch whose COMMIT reply the restart lost is retried,
	// found committed and counted again.
	if got := r.metric(t, "ingest_consume_records_committed_total"); got < 2000 {
		t.Errorf("records committed = %v, want at least 2000", got)
	}
}

// PostgreSQL up but slow (the tables locked): batches wait in flight, the
// partitions pause, and librdkafka stops fetching them, so its cached
// high watermark stops at the last fetch. The lag metric must still count
// what is produced after that, from the broker's answer (consume's highs).
func TestLagGrowsWhilePartitionsArePaused(t *testing.T) {
	e := newEnv(t, 2, 50)
	pr := newProducer(t, e.kb.Bootstrap())
	batch := e.pairs(time.Now())
	r := runInProcess(t, e, consume.Options{Group: "paused-lag"})
	pr.send(batch(1, 100)...)
	testenv.Eventually(t, 60*time.Second, func() bool { return r.metric(t, "ingest_consume_records_committed_total") >= 200 },
		"the first 100 rows per table committed")

	ctx := testenv.Context(t, 3*time.Minute)
	lock, err := pgx.Connect(ctx, e.pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close(context.Background())
	tx, err := lock.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE items, events IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	// 1,000 rows per table over 2 partitions: more than the 4 batches of
	// 50 a partition may have in flight, so every partition pauses.
	pr.send(batch(101, 1100)...)
	testenv.Eventually(t, 60*time.Second, func() bool { return r.metric(t, "ingest_consume_lag_messages") >= 2000 },
		"lag of the 1,000 rows per table produced while the tables are locked")
	pr.send(batch(1101, 1600)...)
	testenv.Eventually(t, 60*time.Second, func() bool { return r.metric(t, "ingest_consume_lag_messages") >= 3000 },
		"lag of the 500 rows per table produced after the partitions paused")

	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 90*time.Second, func() bool { return r.metric(t, "ingest_consume_lag_messages") == 0 }, "lag back to 0")
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkExactlyOnce(t, e.pg, 1600, 1600)
}

// A partition starts at the checkpoint PostgreSQL holds, not at Kafka's
// committed offset: forward of it (no offset committed in Kafka yet) and
// behind it (Kafka committed further than the database, e.g. a restored
// backup). The rows alone would not show it, since the sink skips what
// lies before its checkpoint anyway: what the consumer read does.
func TestStartsAtPostgresCheckpoint(t *testing.T) {
	e := newEnv(t, 1, 50)
	pr := newProducer(t, e.kb.Bootstrap())
	now := time.Now()
	pr.send(items(e.items, 1, 40, func(id int64) int64 { return id }, now)...)
	ctx := testenv.Context(t, 2*time.Minute)
	sch, err := e.cfg.Schema()
	if err != nil {
		t.Fatal(err)
	}
	db, err := dbsink.New(ctx, dbsink.Config{URL: e.cfg.DB.URL, Schema: sch, Name: consume.SinkName("cp")})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stream := consume.Stream(e.items, 0)

	// Forward: ids 31..40 (offsets 30..39) only.
	if err := db.SetCheckpoint(ctx, stream, loader.Position{Offset: 30}); err != nil {
		t.Fatal(err)
	}
	r := runInProcess(t, e, consume.Options{Group: "cp", Tables: []string{"items"}})
	testenv.Eventually(t, 60*time.Second, func() bool { return checkpoint(t, e, "cp", e.items, 0) == 40 }, "checkpoint at 40")
	if got := r.metric(t, "ingest_consume_records_consumed_total"); got != 10 {
		t.Errorf("read %v messages from a checkpoint at offset 30 of 40, want 10", got)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	// Behind: Kafka's committed offset is 40 now (committed on leaving
	// the group); the database says 20.
	testenv.Eventually(t, 30*time.Second, func() bool {
		sts, err := consume.Status(ctx, e.cfg, consume.Options{Group: "cp", Tables: []string{"items"}})
		return err == nil && len(sts) == 1 && sts[0].KafkaCommitted == 40
	}, "Kafka's committed offset at 40")
	if err := db.SetCheckpoint(ctx, stream, loader.Position{Offset: 20}); err != nil {
		t.Fatal(err)
	}
	r = runInProcess(t, e, consume.Options{Group: "cp", Tables: []string{"items"}})
	testenv.Eventually(t, 60*time.Second, func() bool { return checkpoint(t, e, "cp", e.items, 0) == 40 }, "checkpoint at 40 again")
	testenv.Eventually(t, 10*time.Second, func() bool { return r.metric(t, "ingest_consume_records_consumed_total") == 20 },
		"20 messages read from the checkpoint at offset 20")
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, e.pg, "SELECT count(*) FROM items"); n != 20 {
		t.Errorf("items: %d rows, want 20 (ids 21..40: the id column keeps the reloaded ones once)", n)
	}
}
