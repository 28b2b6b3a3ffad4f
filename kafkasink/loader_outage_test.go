package kafkasink_test

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/kafkasink"
	"github.com/dualwrite/ingest/loader"
)

// The database side of the loader in these tests is a loadertest.MemSink
// called "db": it stores each record at once and acks. It must get every
// line once, in file order (one stream, no restarts), which
// checkLinesInOrder verifies at the end; until then the tests read its
// i-th record as line i.

// lineAt is where line seq starts in the spool, as the db side got it.
func lineAt(tb testing.TB, db *loadertest.MemSink, seq int) loader.Position {
	tb.Helper()
	r, ok := db.At(seq)
	if !ok {
		tb.Fatalf("db sink has %d lines, not line %d", db.Count(), seq)
	}
	return r.Pos
}

// coveredBy is how many lines the db sink has that lie before cp.
func coveredBy(db *loadertest.MemSink, cp loader.Position) int {
	n := 0
	for _, r := range db.Records() {
		if !r.Pos.Before(cp) {
			break
		}
		n++
	}
	return n
}

// checkLinesInOrder fails unless the db sink's records are lines
// 0..n-1, each once, in file order.
func checkLinesInOrder(tb testing.TB, db *loadertest.MemSink) {
	tb.Helper()
	for i, r := range db.Records() {
		seq, err := rowSeq(r.Row)
		if err != nil {
			tb.Fatal(err)
		}
		if seq != i {
			tb.Fatalf("db sink: record %d is line %d (lost, repeated or reordered)", i, seq)
		}
	}
}

// The broker holding some of the topic's partitions (replication 1, so no
// other broker can take them over) is killed for loaderOutage (30 s) while
// lines keep being appended, with the Kafka sink and a database-side sink
// in the same loader:
//   - the Kafka checkpoint (Loader.Positions and the checkpoint file) never
//     passes the first line appended after the outage began whose account
//     lives on the downed broker, and stops moving altogether;
//   - the database-side sink keeps receiving: every line appended during
//     the outage reaches it while the broker is still down;
//   - once the broker is back, Kafka catches up from its checkpoint and
//     every line arrives, once (no crash, so no repeats), per account in
//     file order.
//
// Real 3-node cluster of its own: a broker is killed and restarted. The
// topic has replication 1 so that its partitions on the killed broker are
// really unavailable for the whole outage (with replication 3 a new leader
// takes over within seconds, which TestLeaderKilledNothingLostOrReordered
// covers), while the other brokers' partitions go on.
func TestLoaderLeaderDownDatabaseSinkGoesOn(t *testing.T) {
	t.Parallel()
	// How long the partition leader stays down. The issue asks for 30 s;
	// shorten it while iterating:
	// INGEST_KAFKA_LOADER_OUTAGE=5s go test -run LeaderDownDatabase ./kafkasink/
	loaderOutage := loadertest.EnvDuration(t, "INGEST_KAFKA_LOADER_OUTAGE", 30*time.Second)
	const table, partitions, accounts = "events", 6, 30
	c := testenv.Cluster(t, 3, nil)
	topic := testenv.Topic(t, c, kafkaserver.TopicSpec{Partitions: partitions, Replication: 1})
	ctx := testenv.Context(t, loaderOutage+3*time.Minute)
	leader, down := leaderOfPartition0(t, ctx, c, topic, partitions)
	onDown := func(acct string) bool { return down[javaPartition(javaMurmur2([]byte(acct)), partitions)] }
	var downAccts []string
	for _, a := range keys(accounts, accounts) {
		if onDown(a) {
			downAccts = append(downAccts, a)
		}
	}
	if len(downAccts) == 0 {
		t.Fatalf("no account on the partitions %v of broker %d", down, leader)
	}

	// About 300 lines/s (fewer for long outages), in 64 KiB files.
	perTick := min(3, max(1, int(12000*10*time.Millisecond/loaderOutage)))
	spool := t.TempDir()
	lw := startLineWriter(t, spool, table, 64<<10, writerPace{max: 20000, burst: perTick, pause: 10 * time.Millisecond, accts: accounts, body: 40})
	// A short reconnect backoff only makes the catch-up after the restart quicker.
	sink := newSink(t, c, kafkasink.Config{Topics: []string{topic},
		Properties: map[string]string{"reconnect.backoff.max.ms": "500"}})
	db := loadertest.NewMemSink("db")
	run := loadertest.Start(t, loader.Config{Dir: spool, Schema: testSchema(t, map[string]string{table: topic}), Logger: loadertest.Logger(t)},
		loader.SinkSpec{Sink: sink, MaxInFlight: 4}, loader.SinkSpec{Sink: db, MaxInFlight: 4})
	kafkaCP := func() (mem, disk loader.Position) {
		disk, _ = loadertest.FileCheckpoint(t, filepath.Join(spool, ".ingest"), sink.Name(), loaderStream)
		return run.Position(loaderStream, sink.Name()), disk
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		mem, disk := kafkaCP()
		return db.Count() >= 300 && coveredBy(db, mem) >= 300 && coveredBy(db, disk) >= 300
	}, "both sinks past the first 300 lines")

	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	downAt := time.Now()
	nDown := lw.appended()
	deliveredAtDown := sink.Stats().Delivered
	t.Logf("broker %d down (leader of partitions %v; accounts %v) for %v, %d lines appended so far",
		leader, slices.Sorted(mapKeys(down)), downAccts, loaderOutage, nDown)

	// Sample every 200 ms while the broker is down.
	stuck := -1 // the first line appended after BrokerDown whose account is on the downed broker
	var stuckPos, stalled loader.Position
	stallSet := false
	type mark struct {
		at       time.Time
		appended int
	}
	var waiting []mark // appended counts the db sink has not yet reached
	var maxDBLag time.Duration
	checkCP := func(when string) {
		t.Helper()
		mem, disk := kafkaCP()
		for _, cp := range []loader.Position{mem, disk} {
			if stuck >= 0 && stuckPos.Before(cp) {
				t.Fatalf("%s: kafka checkpoint %s passed line %d at %s, appended after broker %d went down, on its partition",
					when, cp, stuck, stuckPos, leader)
			}
		}
		if time.Since(downAt) >= 2*time.Second {
			if !stallSet {
				stalled, stallSet = mem, true
			}
			if mem != stalled || disk != stalled {
				t.Errorf("%s: kafka checkpoint moved during the outage: %s, file %s, after %s", when, mem, disk, stalled)
			}
		}
	}
	for time.Since(downAt) < loaderOutage {
		time.Sleep(200 * time.Millisecond) // holds the outage; each pass checks
		now, appended, got := time.Now(), lw.appended(), db.Count()
		for stuck < 0 {
			seq := nDown
			for ; seq < got && !onDown(lw.account(seq)); seq++ {
			}
			if seq == got {
				break
			}
			stuck, stuckPos = seq, lineAt(t, db, seq)
			t.Logf("line %d (%s, at %s) is the first appended during the outage for the downed broker", stuck, lw.account(stuck), stuckPos)
		}
		checkCP("during the outage")
		waiting = append(waiting, mark{now, appended})
		for len(waiting) > 0 && waiting[0].appended <= got {
			maxDBLag = max(maxDBLag, now.Sub(waiting[0].at))
			waiting = waiting[1:]
		}
	}
	// Before bringing it back: the db sink has every line appended so far.
	nEnd := lw.appended()
	testenv.Eventually(t, 30*time.Second, func() bool { return db.Count() >= nEnd },
		"db sink has the %d lines appended by the end of the outage, with the broker still down", nEnd)
	if stuck < 0 {
		t.Fatalf("no line for the downed broker was appended during the outage (%d..%d)", nDown, nEnd)
	}
	checkCP("end of the outage")
	mem, _ := kafkaCP()
	heldAt := coveredBy(db, mem)
	deliveredInOutage := sink.Stats().Delivered - deliveredAtDown
	if err := c.Restart(ctx, leader); err != nil {
		t.Fatal(err)
	}
	upAt := time.Now()
	t.Logf("outage %v: %d lines appended during it, all in the db sink (max lag seen %v, sampled every 200 ms); "+
		"kafka checkpoint held at %s covering %d lines (line %d was the first stuck); %d messages to other partitions delivered meanwhile",
		upAt.Sub(downAt).Round(time.Millisecond), nEnd-nDown, maxDBLag, mem, heldAt, stuck, deliveredInOutage)
	if maxDBLag > 5*time.Second {
		t.Errorf("db sink fell %v behind the writer during the Kafka outage", maxDBLag)
	}
	if heldAt > stuck {
		t.Errorf("kafka checkpoint covers %d lines, past line %d which could not be delivered", heldAt, stuck)
	}

	// Kafka catches up from its checkpoint.
	last := lineAt(t, db, nEnd-1)
	testenv.Eventually(t, 60*time.Second, func() bool { return last.Before(run.Position(loaderStream, sink.Name())) },
		"kafka checkpoint past line %d (%s), the last appended during the outage", nEnd-1, last)
	t.Logf("kafka caught up with the outage's lines %v after the broker came back", time.Since(upAt).Round(time.Millisecond))

	written := lw.finish()
	end := loadertest.StreamEnd(t, spool, loaderStream)
	testenv.Eventually(t, 60*time.Second, func() bool {
		p := run.Loader.Positions()[loaderStream]
		return !p[sink.Name()].Before(end) && !p[db.Name()].Before(end)
	}, "both checkpoints at the stream end %s", end)
	if err := run.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := db.Count(); got != written {
		t.Errorf("db sink has %d lines, want %d", got, written)
	}
	checkLinesInOrder(t, db)
	total := topicSize(t, c, topic)
	d := checkDelivery(t, consume(t, c, topic, total), lw.accounts(), table, partitions)
	t.Logf("%d lines written, %d messages in the topic, %d repeats", written, total, d.repeats)
	if d.repeats != 0 {
		t.Errorf("%d repeats: a broker outage must not duplicate (one producer, idempotent)", d.repeats)
	}
}
