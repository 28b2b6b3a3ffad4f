package kafkasink_test

// What a topic's limits refuse or would soon delete is dead-lettered,
// the rest delivered: records above its max.message.bytes
// (TestTopicLimit*) and event times outside its retention.ms or
// message.timestamp.*.max.ms (TestLoaderEventTimeOutsideTopicLimitsDeadLettered,
// TestRetentionRaisedWhileRunningApplies), also when the limit changes
// while the sink runs.

import (
	"encoding/base64"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/kafkasink"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/rotatefile"
)

// topicLimit is the max.message.bytes of the TestTopicLimit tests' topics: far
// below the producer's message.max.bytes (1000000) and batch.size.
const topicLimit = 20000

// randomBody returns n bytes of base64 of random bytes: lz4 cannot shrink
// it, so the size the broker checks is the size the test chose.
func randomBody(rng *rand.Rand, n int) string {
	raw := make([]byte, n*3/4+3)
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	return base64.RawStdEncoding.EncodeToString(raw)[:n]
}

// limitedTopic creates a topic whose max.message.bytes is topicLimit.
func limitedTopic(tb testing.TB, c *kafkaserver.Cluster, partitions int) string {
	tb.Helper()
	return testenv.Topic(tb, c, kafkaserver.TopicSpec{Partitions: partitions,
		Configs: map[string]string{"max.message.bytes": "20000"}})
}

// checkRefusalDetail checks that a dead letter's detail carries the
// broker's error, the record's size and the topic's limit.
func checkRefusalDetail(tb testing.TB, detail string, size int) {
	tb.Helper()
	for _, want := range []string{
		"MESSAGE_TOO_LARGE (error 10): Broker: Message size too large", // the broker's error: Kafka's name, librdkafka's
		"max.message.bytes=20000",
		" bytes (key ",
	} {
		if !strings.Contains(detail, want) {
			tb.Errorf("dead letter detail %q lacks %q", detail, want)
		}
	}
	if size > 0 && !strings.Contains(detail, "value "+strconv.Itoa(size)) {
		tb.Errorf("dead letter detail %q lacks the record's value size %d", detail, size)
	}
}

// A topic whose max.message.bytes is below the producer's limit: a record
// above it, in the middle of a batch of ordinary records on the same
// partition, is dead-lettered with the broker's error as its reason, and
// the records before and after it are delivered, in order.
// Real broker (shared): the limit is the broker's; librdkafka's mock
// enforces no topic config.
func TestTopicLimitRecordDeadLetteredRestDelivered(t *testing.T) {
	t.Parallel()
	c := testenv.Broker(t)
	topic := limitedTopic(t, c, 1)
	var logs testenv.SyncBuffer
	s, g := eventsSink(t, c, topic, kafkasink.Config{Logger: slogTo(&logs)}, 0)
	rng := rand.New(rand.NewPCG(1, 2))
	g.body = randomBody(rng, 600)
	before := g.records("events", keys(3, 30)...)
	g.body = randomBody(rng, 30000)
	big := g.records("events", "acct-0")
	g.body = randomBody(rng, 600)
	after := g.records("events", keys(3, 30)...)
	recs := append(append(append([]loader.Record{}, before...), big...), after...)

	detail := submitRejectingOne(t, g, s, recs, big[0])
	t.Logf("dead letter: %s", detail)
	checkRefusalDetail(t, detail, len(big[0].Row))
	want := seqs(t, before, after)
	checkOrderedOnce(t, consume(t, c, topic, len(want)), want)
	if st := s.Stats(); st.Rejected != 1 || st.Delivered != int64(len(want)) {
		t.Errorf("Stats = %+v, want 1 rejected, %d delivered", st, len(want))
	}
	if n := strings.Count(logs.String(), "records dead-lettered"); n != 1 {
		t.Errorf("%d WARNs about dead letters, want 1:\n%s", n, logs.String())
	}
}

// Issue #20, item 1: a topic with max.message.bytes 20000, ~725-byte
// lines and one ~30 KB line in every 1,000, batches of 500 records, four
// in flight. The producer's default batch.size (1,000,000) would make
// record batches the broker refuses whole; the sink reads the topic's
// limit and keeps its batches under it. Then:
//   - exactly the large lines are dead-lettered, reason too_large with
//     the broker's error, the record's size and the topic's limit;
//   - every other line is in Kafka once, on Java's partition for its key,
//     in order per key;
//   - the sink's delivered counter equals what Kafka holds, and no
//     dead-lettered record counts as delivered;
//   - one WARN per batch that had dead letters.
//
// Real broker (shared): the limit is the broker's; librdkafka's mock
// enforces no topic config.
func TestTopicLimitOnlyLargeLinesDeadLettered(t *testing.T) {
	t.Parallel()
	const (
		lines, every, perBatch, partitions = 5000, 1000, 500, 6
		normalBody, bigBody                = 600, 30000 // ~725 and ~30 KB lines with the other fields
	)
	c := testenv.Broker(t)
	topic := limitedTopic(t, c, partitions)
	var logs testenv.SyncBuffer
	s, g := eventsSink(t, c, topic, kafkasink.Config{Logger: slogTo(&logs)}, 0)
	rng := rand.New(rand.NewPCG(3, 4))
	ks := keys(50, lines)
	var (
		all      []loader.Record
		bigs     = map[int64]int{} // offset -> value size
		bigBatch = map[int]bool{}
	)
	for i := range lines {
		body := normalBody
		if i%every == every/2 {
			body = bigBody
		}
		g.body = randomBody(rng, body)
		r := g.records("events", ks[i])
		if body == bigBody {
			bigs[r[0].Pos.Offset] = len(r[0].Row)
			bigBatch[i/perBatch+1] = true
		}
		all = append(all, r...)
	}
	t.Logf("line sizes: %d and %d bytes", len(all[0].Line), len(all[every/2].Line))

	dl := &loadertest.Rejects{}
	a := newAcks()
	batches := lines / perBatch
	for n := 1; n <= batches; n++ {
		if err := g.submit(t.Context(), s, g.batch(uint64(n), all[(n-1)*perBatch:n*perBatch], dl), a.fn(n)); err != nil {
			t.Fatal(err)
		}
	}
	a.wait(t, batches, 60*time.Second)
	a.checkAllOK(t, batches)

	rejected := dl.ByOffset()
	for off, r := range rejected {
		if _, ok := bigs[off]; !ok || r.Reason != "too_large" {
			t.Errorf("record at offset %d dead-lettered (%s: %s); only the %d large lines should be", off, r.Reason, r.Detail, len(bigs))
		}
	}
	for off, size := range bigs {
		r, ok := rejected[off]
		if !ok {
			t.Errorf("large line at offset %d (%d bytes) not dead-lettered", off, size)
			continue
		}
		checkRefusalDetail(t, r.Detail, size)
	}
	for _, r := range rejected {
		t.Logf("a dead letter's detail: %s", r.Detail)
		break
	}

	want := map[int]bool{}
	for _, r := range all {
		if _, big := bigs[r.Pos.Offset]; !big {
			want[seqOf(t, r.Row)] = true
		}
	}
	msgs := consume(t, c, topic, len(want))
	checkOrderedOnce(t, msgs, want)
	for _, m := range msgs {
		if p := javaPartition(javaMurmur2([]byte(m.key)), partitions); m.partition != p {
			t.Errorf("seq %d (key %s) in partition %d, Java's partitioner says %d", m.seq, m.key, m.partition, p)
		}
	}
	st := s.Stats()
	if st.Delivered != int64(len(msgs)) || st.Rejected != int64(len(bigs)) || st.Rebuilds != 0 {
		t.Errorf("Stats = %+v; Kafka holds %d messages, %d lines were too large, and no batch should have been refused whole", st, len(msgs), len(bigs))
	}
	if n := strings.Count(logs.String(), "records dead-lettered"); n != len(bigBatch) {
		t.Errorf("%d WARNs about dead letters, want one per batch with a large line (%d)", n, len(bigBatch))
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "records dead-lettered") && (!strings.Contains(line, "level=WARN") || !strings.Contains(line, "count=1") || !strings.Contains(line, "reason=too_large")) {
			t.Errorf("dead-letter log line lacks WARN, count or reason: %s", line)
		}
	}
}

// An operator lowers a topic's max.message.bytes to 20000 while the loader
// runs with the sink, whose producer was built for the default limit: the
// broker refuses its ~1 MB record batches of ordinary ~700-byte lines.
// The sink fails the batches in flight, rebuilds the producer with
// batches that fit (reading the topic's limit again), and the loader
// replays them: no ordinary line is dead-lettered, and every line ends up
// in Kafka. (Per-key order of first copies is not checked: records of a
// partition sent after a refused batch may land before its replay, the
// exception doc.go names.)
// Real broker (shared): the limit and the refusal are the broker's.
func TestTopicLimitLoweredWhileRunning(t *testing.T) {
	t.Parallel()
	const table, partitions = "events", 3
	c := testenv.Broker(t)
	topic := newTopic(t, c, partitions)
	spool := t.TempDir()
	var logs testenv.SyncBuffer
	sink := newSink(t, c, kafkasink.Config{Topics: []string{topic}, Logger: slogTo(&logs)})
	// Bursts of 1500 random ~700-byte lines: the loader hands the sink
	// batches of up to 2000 records, which librdkafka packs into ~1 MB
	// record batches.
	lw := startLineWriter(t, spool, table, 4<<20, writerPace{max: 9000, burst: 1500, pause: 300 * time.Millisecond, accts: 40, body: 600, random: true})
	run := loadertest.Start(t, loader.Config{Dir: spool, Schema: testSchema(t, map[string]string{table: topic}), Logger: loadertest.Logger(t)},
		loader.SinkSpec{Sink: sink, MaxInFlight: 4})
	testenv.Eventually(t, 60*time.Second, func() bool { return sink.Stats().Delivered >= 1500 }, "the first burst delivered")

	ctx := testenv.Context(t, 3*time.Minute)
	if err := c.SetTopicConfig(ctx, topic, map[string]string{"max.message.bytes": "20000"}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		v, err := c.TopicConfig(ctx, topic, "max.message.bytes")
		return err == nil && v == "20000"
	}, "the broker applies max.message.bytes=20000")
	t.Logf("max.message.bytes lowered to 20000 after %d lines delivered", sink.Stats().Delivered)
	// At least one more burst after the change, so batches meet it.
	n0 := lw.appended()
	testenv.Eventually(t, 30*time.Second, func() bool { return lw.appended() >= n0+1500 || lw.isDone() },
		"a burst appended after the change")

	written := lw.finish()
	end := loadertest.StreamEnd(t, spool, loaderStream)
	testenv.Eventually(t, 2*time.Minute, func() bool { return !run.Position(loaderStream, sink.Name()).Before(end) },
		"kafka checkpoint at the stream end %s", end)
	if err := run.Stop(); err != nil {
		t.Fatal(err)
	}
	st := sink.Stats()
	t.Logf("%d lines; %+v", written, st)
	if st.Rejected != 0 {
		t.Errorf("%d records dead-lettered; every line fits the topic on its own", st.Rejected)
	}
	if st.Rebuilds == 0 {
		t.Errorf("no producer rebuilt: the lowered limit was never hit (test too gentle?)")
	}
	if !strings.Contains(logs.String(), "batch refused as too large") {
		t.Errorf("no WARN about the refused batch:\n%s", logs.String())
	}
	msgs, err := c.ReadTopic(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, m := range toConsumed(t, msgs) {
		seen[m.seq] = true
	}
	for seq := range written {
		if !seen[seq] {
			t.Errorf("line %d not in Kafka", seq)
		}
	}
	t.Logf("%d messages for %d lines (%d repeats from the replays)", len(msgs), written, len(msgs)-len(seen))
}

// A live run on a topic keeping messages for an hour (retention.ms) and
// refusing timestamps more than an hour ahead
// (message.timestamp.after.max.ms), with lines of old, recent and future
// event times mixed in one file. With the default margin (an hour, at most
// half the retention: 30 minutes) the sink
//   - dead-letters exactly the lines older than 30 minutes (reason
//     "retention") and those more than 59 minutes ahead (reason
//     "timestamp_refused"), each with a detail naming the topic, the
//     limit, the record's time and the fixes;
//   - produces every other line, including one 29 minutes old, just
//     inside the bound: a record the broker would keep is never
//     dead-lettered;
//   - counts as acked (ingest_records_acked_total) exactly what Kafka
//     holds, and as rejected what it dead-lettered;
//   - logs one WARN per reason for the batch, with the count.
//
// Real broker (shared): the limits are the topic's, read with
// DescribeConfigs, which librdkafka's mock does not answer. The broker's
// retention check need not run: what the sink dead-letters never reaches
// it, and what it produces is far younger than an hour.
func TestLoaderEventTimeOutsideTopicLimitsDeadLettered(t *testing.T) {
	t.Parallel()
	const table, partitions = "events", 3
	c := testenv.Broker(t)
	topic := testenv.Topic(t, c, kafkaserver.TopicSpec{Partitions: partitions, Configs: map[string]string{
		"retention.ms":                   "3600000",
		"message.timestamp.after.max.ms": "3600000",
	}})
	now := time.Now()
	kind := func(seq int) string {
		switch {
		case seq == 7:
			return "edge-in" // 29 min old: inside the 30 min bound
		case seq == 8:
			return "edge-out" // 31 min old
		case seq%10 == 3:
			return "future" // 2 h ahead
		case seq%3 == 0:
			return "old" // 2 h old
		case seq%3 == 1:
			return "recent" // 20 min old
		default:
			return "current"
		}
	}
	timeOf := map[string]time.Duration{
		"edge-in": -29 * time.Minute, "edge-out": -31 * time.Minute, "future": 2 * time.Hour,
		"old": -2 * time.Hour, "recent": -20 * time.Minute, "current": 0,
	}
	const lines = 90
	spool := t.TempDir()
	dir := filepath.Join(spool, loaderStream)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	wantDead := map[int64]string{} // offset -> reason
	wantKafka := map[int]bool{}
	for seq := range lines {
		k := kind(seq)
		offset := int64(b.Len())
		switch k {
		case "old", "edge-out":
			wantDead[offset] = "retention"
		case "future":
			wantDead[offset] = "timestamp_refused"
		default:
			wantKafka[seq] = true
		}
		fmt.Fprintf(&b, `{"table":%q,"row":{"acct":"acct-%d","seq":%d,"ts":%d,"body":"x"}}`+"\n",
			table, seq%7, seq, now.Add(timeOf[k]).UnixMilli())
	}
	// Written whole before the loader starts, so it reads the lines as
	// one batch: one WARN per reason.
	name := rotatefile.FileName(1, now, ".ndjson")
	if err := os.WriteFile(filepath.Join(dir, name+".tmp"), []byte(b.String()), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, name+".tmp"), filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}

	log, logger := loadertest.NewLog(t)
	sink := newSink(t, c, kafkasink.Config{Topics: []string{topic}, Logger: logger})
	reg := prometheus.NewRegistry()
	run := loadertest.Start(t, loader.Config{Dir: spool, Schema: testSchema(t, map[string]string{table: topic}),
		Logger: loadertest.Logger(t), Registry: reg}, loader.SinkSpec{Sink: sink, MaxInFlight: 4})
	end := loadertest.StreamEnd(t, spool, loaderStream)
	testenv.Eventually(t, 60*time.Second, func() bool {
		return run.Position(loaderStream, "kafka") == end
	}, "the Kafka checkpoint reaching %s", end)

	// Exactly the lines outside the topic's limits are dead letters.
	stateDir := filepath.Join(spool, ".ingest")
	dls := loadertest.DeadLetters(t, stateDir, loaderStream)
	got := map[int64]string{}
	for _, dl := range dls {
		if dl.Sink != "kafka" {
			t.Errorf("dead letter for sink %q at %d: %s", dl.Sink, dl.Offset, dl.Reason)
		}
		got[dl.Offset] = dl.Reason
		for _, want := range []string{"topic " + topic, "the record's event time ", "Fixes: ", "kafka-configs.sh --bootstrap-server " + c.Bootstrap(), "fix the clock or the data"} {
			if !strings.Contains(dl.Detail, want) {
				t.Errorf("dead letter at %d: detail %q lacks %q", dl.Offset, dl.Detail, want)
			}
		}
		switch dl.Reason {
		case "retention":
			if !strings.Contains(dl.Detail, "retention.ms=3600000 (1h0m0s)") || !strings.Contains(dl.Detail, "a margin of 30m0s") {
				t.Errorf("dead letter at %d: detail %q lacks the retention and the margin", dl.Offset, dl.Detail)
			}
		case "timestamp_refused":
			if !strings.Contains(dl.Detail, "message.timestamp.after.max.ms=3600000") {
				t.Errorf("dead letter at %d: detail %q lacks the topic's bound", dl.Offset, dl.Detail)
			}
		}
	}
	if len(got) != len(dls) || !maps.Equal(got, wantDead) {
		t.Fatalf("dead letters (offset: reason) %v, want %v", got, wantDead)
	}

	// Every other line is in Kafka, once, with its event time.
	msgs := consume(t, c, topic, len(wantKafka))
	seen := map[int]bool{}
	for _, m := range msgs {
		seen[m.seq] = true
	}
	if !maps.Equal(seen, wantKafka) {
		missing := []int{}
		for seq := range wantKafka {
			if !seen[seq] {
				missing = append(missing, seq)
			}
		}
		slices.Sort(missing)
		t.Fatalf("Kafka holds %d lines; missing %v", len(seen), missing)
	}
	held := topicSize(t, c, topic)
	acked := loaderMetric(t, reg, "ingest_records_acked_total", loaderStream, "kafka")
	if int(acked) != held || held != len(wantKafka) {
		t.Fatalf("ingest_records_acked_total{sink=kafka} = %v, Kafka holds %d, want both %d", acked, held, len(wantKafka))
	}
	// The delivery counter moves just after the reports that complete a
	// batch, so it may trail the ack.
	testenv.Eventually(t, 10*time.Second, func() bool {
		st := sink.Stats()
		return st.Rejected == int64(len(wantDead)) && st.Delivered == int64(len(wantKafka))
	}, "Stats %v: Rejected %d, Delivered %d", loadertest.Lazy(func() string { return fmt.Sprintf("%+v", sink.Stats()) }), len(wantDead), len(wantKafka))

	// One WARN per reason, with the count.
	count := func(reason string) string {
		n := 0
		for _, r := range wantDead {
			if r == reason {
				n++
			}
		}
		return "count=" + strconv.Itoa(n)
	}
	for _, w := range []struct{ msg, reason string }{
		{"the topic's retention would delete them", "retention"},
		{"the topic refuses their timestamp", "timestamp_refused"},
	} {
		testenv.Eventually(t, 10*time.Second, func() bool {
			return log.Count("level=WARN", w.msg) >= 1
		}, "the WARN for reason %s", w.reason)
		if n := log.Count("level=WARN", w.msg); n != 1 {
			t.Errorf("%d WARNs %q, want 1", n, w.msg)
		}
		if n := log.Count("level=WARN", w.msg, count(w.reason), "reason="+w.reason); n != 1 {
			t.Errorf("the WARN %q lacks %s reason=%s", w.msg, count(w.reason), w.reason)
		}
	}
}

// loaderMetric is the value of the loader's counter name{stream, sink} in reg.
func loaderMetric(tb testing.TB, reg *prometheus.Registry, name, stream, sink string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["stream"] == stream && labels["sink"] == sink {
				return m.GetCounter().GetValue()
			}
		}
	}
	tb.Fatalf("no metric %s{stream=%q,sink=%q}", name, stream, sink)
	return 0
}

// The fix a retention dead letter names, applied while the sink runs: a
// record two hours old is dead-lettered on a topic keeping an hour; once
// the topic's retention.ms is raised to a day on the broker, the sink's
// periodic re-read of the topic configs (shortened here from 5 minutes)
// applies it without a restart, and such a record is produced.
// Real broker (shared): the configs are the broker's (DescribeConfigs,
// IncrementalAlterConfigs), which librdkafka's mock does not serve. Not
// parallel: it shortens a package variable the other tests' sinks read.
func TestRetentionRaisedWhileRunningApplies(t *testing.T) {
	defer kafkasink.SetConfigRefresh(200 * time.Millisecond)()
	c := testenv.Broker(t)
	topic := testenv.Topic(t, c, kafkaserver.TopicSpec{Partitions: 1, Configs: map[string]string{"retention.ms": "3600000"}})
	log, logger := loadertest.NewLog(t)
	s, g := eventsSink(t, c, topic, kafkasink.Config{Logger: logger}, 10)
	old := func() []loader.Record {
		recs := g.records("events", "acct-1")
		recs[0].Time = time.Now().Add(-2 * time.Hour)
		return recs
	}
	dl := &loadertest.Rejects{}
	a := newAcks()
	ctx := testenv.Context(t, 90*time.Second)
	if err := g.submit(ctx, s, g.batch(1, old(), dl), a.fn(1)); err != nil {
		t.Fatal(err)
	}
	a.wait(t, 1, 30*time.Second)
	if err := a.err(1); err != nil {
		t.Fatalf("ack: %v", err)
	}
	if rs := dl.All(); len(rs) != 1 || rs[0].Reason != "retention" {
		t.Fatalf("dead letters %+v, want the record with reason retention", rs)
	}

	if err := c.SetTopicConfig(ctx, topic, map[string]string{"retention.ms": "86400000"}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		return log.Count("topic config changed on the brokers", "retention=24h0m0s") > 0
	}, "the sink reading the raised retention")
	if err := g.submit(ctx, s, g.batch(2, old(), dl), a.fn(2)); err != nil {
		t.Fatal(err)
	}
	a.wait(t, 1, 30*time.Second)
	if err := a.err(2); err != nil {
		t.Fatalf("ack: %v", err)
	}
	if n := len(dl.All()); n != 1 {
		t.Fatalf("%d dead letters after the retention was raised, want still 1", n)
	}
	// The delivery counter moves just after the reports that complete a
	// batch, so it may trail the ack.
	testenv.Eventually(t, 10*time.Second, func() bool {
		st := s.Stats()
		return st.Delivered == 1 && st.Rejected == 1
	}, "Stats %+v: 1 delivered, 1 rejected", loadertest.Lazy(func() string { return fmt.Sprintf("%+v", s.Stats()) }))
	if n := topicSize(t, c, topic); n != 1 {
		t.Fatalf("topic holds %d messages, want the one record produced", n)
	}
}

// BenchmarkLoaderEventTimeDeadLetters loads b.N lines through the loader
// and the sink to a topic keeping an hour: "old" lines are 3 hours old and
// all dead-lettered for their event time, "current" ones are delivered.
// It reports lines/s from the loader's start to its Kafka checkpoint at
// the end of the file. Real broker (shared): the topic's retention is read
// with DescribeConfigs.
//
//	go test -run '^$' -bench LoaderEventTimeDeadLetters -benchtime 20000x ./kafkasink/
func BenchmarkLoaderEventTimeDeadLetters(b *testing.B) {
	for _, age := range []struct {
		name string
		d    time.Duration
	}{{"old", 3 * time.Hour}, {"current", 0}} {
		b.Run(age.name, func(b *testing.B) {
			c := testenv.Broker(b)
			topic := testenv.Topic(b, c, kafkaserver.TopicSpec{Partitions: 3, Configs: map[string]string{"retention.ms": "3600000"}})
			spool := b.TempDir()
			dir := filepath.Join(spool, loaderStream)
			if err := os.MkdirAll(dir, 0o750); err != nil {
				b.Fatal(err)
			}
			var text strings.Builder
			now := time.Now()
			body := strings.Repeat("x", 200)
			for seq := range b.N {
				fmt.Fprintf(&text, `{"table":"events","row":{"acct":"acct-%d","seq":%d,"ts":%d,"body":%q}}`+"\n", seq%7, seq, now.Add(-age.d).UnixMilli(), body)
			}
			if err := os.WriteFile(filepath.Join(dir, rotatefile.FileName(1, now, ".ndjson")), []byte(text.String()), 0o640); err != nil {
				b.Fatal(err)
			}
			sink := newSink(b, c, kafkasink.Config{Topics: []string{topic}, Logger: slog.New(slog.DiscardHandler)})
			b.ResetTimer()
			start := time.Now()
			run := loadertest.Start(b, loader.Config{Dir: spool, Schema: testSchema(b, map[string]string{"events": topic}),
				Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()}, loader.SinkSpec{Sink: sink, MaxInFlight: 4})
			end := loadertest.StreamEnd(b, spool, loaderStream)
			testenv.Eventually(b, 10*time.Minute, func() bool { return run.Position(loaderStream, "kafka") == end }, "the Kafka checkpoint at the end")
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "lines/s")
			b.StopTimer()
			st := sink.Stats()
			if age.d > 0 && st.Rejected != int64(b.N) || age.d == 0 && st.Rejected != 0 {
				b.Fatalf("Stats %+v after %d %s lines", st, b.N, age.name)
			}
			if err := run.Stop(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
