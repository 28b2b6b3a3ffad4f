package kafkasink_test

import (
	"encoding/base64"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/kafkasink"
	"github.com/dualwrite/ingest/loader"
)

// topicLimit is the max.message.bytes of the topics in these tests: far
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
	sch := testSchema(t, map[string]string{"events": topic})
	var logs testenv.SyncBuffer
	s := newSink(t, c, kafkasink.Config{Topics: []string{topic}, Logger: slogTo(&logs)})
	rng := rand.New(rand.NewPCG(1, 2))
	g := newGen(t, sch, "api", 0)
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
	sch := testSchema(t, map[string]string{"events": topic})
	var logs testenv.SyncBuffer
	s := newSink(t, c, kafkasink.Config{Topics: []string{topic}, Logger: slogTo(&logs)})
	rng := rand.New(rand.NewPCG(3, 4))
	g := newGen(t, sch, "api", 0)
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
