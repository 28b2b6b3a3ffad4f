package kafkasink_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/kafkasink"
	"github.com/dualwrite/ingest/loader"
)

// javaMurmur2 is Kafka's org.apache.kafka.common.utils.Utils.murmur2,
// ported line by line for this test only: it is the oracle the partitions
// chosen by librdkafka are checked against, and shares no code with the
// sink (which leaves partitioning to librdkafka's murmur2_random).
func javaMurmur2(data []byte) int32 {
	const (
		seed = uint32(0x9747b28c)
		m    = uint32(0x5bd1e995)
		r    = 24
	)
	length := len(data)
	h := seed ^ uint32(length)
	for i := 0; i < length/4; i++ {
		i4 := i * 4
		k := uint32(data[i4]) | uint32(data[i4+1])<<8 | uint32(data[i4+2])<<16 | uint32(data[i4+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := length &^ 3
	switch length % 4 { // Java's switch falls through from 3 to 1
	case 3:
		h ^= uint32(data[tail+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[tail+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[tail])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// javaPartition is Kafka's BuiltInPartitioner.partitionForKey:
// toPositive(murmur2(key)) % numPartitions.
func javaPartition(hash int32, partitions int) int32 {
	return (hash & 0x7fffffff) % int32(partitions)
}

// kafkaMurmur2Vectors are the expected values of Kafka's own
// UtilsTest.testMurmur2 (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java).
var kafkaMurmur2Vectors = map[string]int32{
	"21":                         -973932308,
	"foobar":                     -790332482,
	"a-little-bit-long-string":   -985981536,
	"a-little-bit-longer-string": -1486304829,
	"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
	"abc": 479470107,
}

// The oracle must itself be right before it judges the sink.
// No Kafka: pure computation.
func TestJavaMurmur2OracleMatchesKafkaVectors(t *testing.T) {
	for key, want := range kafkaMurmur2Vectors {
		if got := javaMurmur2([]byte(key)); got != want {
			t.Errorf("murmur2(%q) = %d, Kafka's UtilsTest says %d", key, got, want)
		}
	}
}

// Every message lands on the partition a Java producer would pick for its
// key. For Kafka's vector keys the expected partition comes straight from
// the hard-coded hashes; for the other keys from the test's own port,
// checked above against the same vectors.
// Real broker (shared): the partition is what a real Kafka stores the
// message in.
func TestPartitionMatchesJavaPartitioner(t *testing.T) {
	t.Parallel()
	c := testenv.Broker(t)
	topicOf := map[string]string{"five": newTopic(t, c, 5), "twelve": newTopic(t, c, 12)}
	partitions := map[string]int{"five": 5, "twelve": 12}
	sch := testSchema(t, topicOf)
	s := newSink(t, c, kafkasink.Config{Topics: []string{topicOf["five"], topicOf["twelve"]}})

	var ks []string
	for k := range kafkaMurmur2Vectors {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	for i := range 200 {
		ks = append(ks, fmt.Sprint(i), fmt.Sprintf("%d", 1_000_000_007*int64(i+1)), fmt.Sprintf("acct-%04d", i))
	}
	g := newGen(t, sch, "api", 16)
	a := newAcks()
	for n, table := range []string{"five", "twelve"} {
		if err := g.submit(t.Context(), s, g.batch(uint64(n+1), g.records(table, ks...), nil), a.fn(n+1)); err != nil {
			t.Fatal(err)
		}
	}
	a.wait(t, 2, 30*time.Second)
	a.checkAllOK(t, 2)

	for table, n := range partitions {
		topic := topicOf[table]
		used := map[int32]bool{}
		msgs := consume(t, c, topic, len(ks))
		for _, m := range msgs {
			var want int32
			if h, ok := kafkaMurmur2Vectors[m.key]; ok {
				want = javaPartition(h, n)
			} else {
				want = javaPartition(javaMurmur2([]byte(m.key)), n)
			}
			if m.partition != want {
				t.Errorf("%s: key %q in partition %d, Java's partitioner says %d", topic, m.key, m.partition, want)
			}
			used[m.partition] = true
		}
		if len(used) != n {
			t.Errorf("%s: %d keys used %d of %d partitions", topic, len(ks), len(used), n)
		}
	}
}

// The message carries what consumers and `ingest verify` rely on.
// Real broker (shared): key, value, headers and timestamp as Kafka stores
// them.
func TestMessageFormat(t *testing.T) {
	t.Parallel()
	c := testenv.Broker(t)
	topic := newTopic(t, c, 2)
	sch := testSchema(t, map[string]string{"raw_item": topic})
	s := newSink(t, c, kafkasink.Config{Topics: []string{topic}})
	g := newGen(t, sch, "api", 8)
	recs := g.records("raw_item", "7", "8", "7")
	a := newAcks()
	if err := g.submit(t.Context(), s, g.batch(1, recs, nil), a.fn(1)); err != nil {
		t.Fatal(err)
	}
	a.wait(t, 1, 30*time.Second)
	a.checkAllOK(t, 1)

	msgs := consume(t, c, topic, len(recs))
	bySeq := map[int]consumed{}
	for _, m := range msgs {
		bySeq[m.seq] = m
	}
	for _, r := range recs {
		seq := seqOf(t, r.Row)
		m, ok := bySeq[seq]
		if !ok {
			t.Fatalf("record %d not consumed", seq)
		}
		if m.key != r.Key || string(m.value) != string(r.Row) {
			t.Errorf("seq %d: key %q value %s; want %q %s", seq, m.key, m.value, r.Key, r.Row)
		}
		wantHdr := map[string]string{
			kafkasink.HeaderTable:    "raw_item",
			kafkasink.HeaderRecordID: r.RecordID,
			kafkasink.HeaderSource:   fmt.Sprintf("api/%s/%d", r.Pos.File, r.Pos.Offset),
		}
		for k, v := range wantHdr {
			if m.headers[k] != v {
				t.Errorf("seq %d: header %s = %q, want %q", seq, k, m.headers[k], v)
			}
		}
		if got := m.timestamp.UnixMilli(); got != ts(seq) {
			t.Errorf("seq %d: timestamp %d, want the row's time %d", seq, got, ts(seq))
		}
	}
	if st := s.Stats(); st.Delivered != 3 {
		t.Errorf("Stats = %+v, want 3 delivered", st)
	}
}

// Batches submitted back to back (the loader keeps several in flight) are
// acked in order, and every account's records arrive once, in file order.
// Real broker (shared): order and exactly-once are read back from Kafka.
func TestPerKeyOrderAcrossBatches(t *testing.T) {
	t.Parallel()
	const batches, perBatch = 20, 250
	c := testenv.Broker(t)
	topic := newTopic(t, c, 4)
	s, g := eventsSink(t, c, topic, kafkasink.Config{}, 64)
	a := newAcks()
	var all [][]loader.Record
	for n := 1; n <= batches; n++ {
		recs := g.records("events", keys(37, perBatch)...)
		all = append(all, recs)
		if err := g.submit(t.Context(), s, g.batch(uint64(n), recs, nil), a.fn(n)); err != nil {
			t.Fatal(err)
		}
	}
	a.wait(t, batches, 30*time.Second)
	a.checkAllOK(t, batches)
	checkOrderedOnce(t, consume(t, c, topic, batches*perBatch), seqs(t, all...))
}

// The leader of some partitions is killed (kill -9) while batches keep
// coming. Kafka elects a new leader among the in-sync replicas
// (replication 3, min.insync.replicas 2), and librdkafka, idempotent,
// resends what was in flight to it: every batch is acked without error, in
// Submit order, and every message is in the topic exactly once, in order
// per key.
// Real 3-node cluster of its own: it kills a broker, and leadership moves
// only on a real cluster.
func TestLeaderKilledNothingLostOrReordered(t *testing.T) {
	t.Parallel()
	// How long the test keeps submitting after the partition leader was
	// killed (at least until leadership has moved):
	// INGEST_KAFKA_OUTAGE=30s go test -run LeaderKilled ./kafkasink/
	brokerOutage := loadertest.EnvDuration(t, "INGEST_KAFKA_OUTAGE", 3*time.Second)
	const partitions = 6
	c := testenv.Cluster(t, 3, nil)
	topic := testenv.Topic(t, c, kafkaserver.TopicSpec{Partitions: partitions, Replication: 3})
	ctx := testenv.Context(t, brokerOutage+3*time.Minute)
	leader, down := leaderOfPartition0(t, ctx, c, topic, partitions)
	ks := keys(30, 30)
	hit := 0
	for _, k := range ks {
		if down[javaPartition(javaMurmur2([]byte(k)), partitions)] {
			hit++
		}
	}
	if hit == 0 {
		t.Fatalf("no key on the killed leader's partitions %v", down)
	}

	// A short reconnect backoff only makes the test quicker.
	s, g := eventsSink(t, c, topic, kafkasink.Config{Properties: map[string]string{"reconnect.backoff.max.ms": "500"}}, 200)
	a := newAcks()
	var all [][]loader.Record
	submit := func(n int) {
		t.Helper()
		recs := g.records("events", ks...)
		all = append(all, recs)
		if err := g.submit(ctx, s, g.batch(uint64(n), recs, nil), a.fn(n)); err != nil {
			t.Fatal(err)
		}
	}
	submit(1) // connect before the outage
	a.wait(t, 1, 30*time.Second)

	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	t.Logf("broker %d (leader of partitions %v, %d of %d keys) killed", leader, slices.Sorted(mapKeys(down)), hit, len(ks))
	n, acked := 1, 1
	moved := false
	for !moved || time.Since(killed) < brokerOutage {
		n++
		submit(n)
		// Each pass waits for an ack or 200 ms, whichever is first: the
		// pace of the loader's batches.
		select {
		case <-a.ch:
			acked++
		case <-time.After(200 * time.Millisecond):
		}
		if !moved {
			if l, err := c.Leader(ctx, topic, 0); err == nil && l != leader && l > 0 {
				moved = true
				t.Logf("partition 0 led by broker %d after %v", l, time.Since(killed).Round(time.Millisecond))
			}
		}
		if time.Since(killed) > 90*time.Second {
			t.Fatal("leadership of partition 0 did not move within 90 s")
		}
	}
	a.wait(t, n-acked, 60*time.Second)
	t.Logf("%d batches submitted after the kill, all acked %v after it", n-1, time.Since(killed).Round(time.Millisecond))
	a.checkAllOK(t, n)
	checkOrderedOnce(t, consume(t, c, topic, n*len(ks)), seqs(t, all...))
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// A record larger than the producer's message.max.bytes is dead-lettered
// with reason too_large before it is sent; the rest of the batch is
// delivered and the batch acked.
// Real broker (shared): the records around it must really be in Kafka.
func TestOversizedRecordIsDeadLettered(t *testing.T) {
	t.Parallel()
	c := testenv.Broker(t)
	topic := newTopic(t, c, 2)
	s, g := eventsSink(t, c, topic, kafkasink.Config{}, 100)
	recs := g.records("events", "a", "b")
	g.body = strings.Repeat("y", 1_200_000) // over the default 1000000
	big := g.records("events", "a")
	g.body = "small"
	recs = append(append(recs, big...), g.records("events", "a", "c")...)

	detail := submitRejectingOne(t, g, s, recs, big[0])
	if !strings.Contains(detail, "message.max.bytes=1000000") {
		t.Errorf("detail %q does not name the limit", detail)
	}
	want := seqs(t, recs)
	delete(want, seqOf(t, big[0].Row))
	checkOrderedOnce(t, consume(t, c, topic, len(want)), want)
	if st := s.Stats(); st.Rejected != 1 || st.Delivered != int64(len(want)) {
		t.Errorf("Stats = %+v, want 1 rejected, %d delivered", st, len(want))
	}
}

// A topic that does not exist is refused before anything is produced to
// it, and the check does not create it: at start-up, with a message naming
// it and the command that creates it, and for a table routed to Kafka after
// start-up (config reload), at its first Submit.
// Real broker (shared): a real broker's metadata, with auto-creation off.
func TestMissingTopic(t *testing.T) {
	t.Parallel()
	c := testenv.Broker(t)
	present := newTopic(t, c, 1)
	missing := "missing_" + present
	// refused checks that err refuses the missing topic alone, and that
	// the check left it missing.
	refused := func(t *testing.T, ctx context.Context, call string, err error) {
		t.Helper()
		var mt *kafkasink.MissingTopicError
		if !errors.As(err, &mt) || !slices.Equal(mt.Topics, []string{missing}) {
			t.Fatalf("%s = %v, want a MissingTopicError for [%s]", call, err, missing)
		}
		if ok, err := c.TopicExists(ctx, missing); err != nil || ok {
			t.Fatalf("after %s: exists=%v err=%v; the check must not create the topic", call, ok, err)
		}
	}

	t.Run("AtStart", func(t *testing.T) {
		t.Parallel()
		ctx := testenv.Context(t, 20*time.Second)
		_, err := kafkasink.New(ctx, kafkasink.Config{Brokers: c.Bootstrap(), Topics: []string{present, missing},
			Logger: loadertest.Logger(t)})
		refused(t, ctx, "New", err)
		msg := err.Error()
		for _, want := range []string{fmt.Sprintf("%q does not exist", missing), "kafka-topics.sh --bootstrap-server " + c.Bootstrap() + " --create --topic " + missing} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q lacks %q", msg, want)
			}
		}
		t.Log(msg)
	})

	t.Run("NewTableAtSubmit", func(t *testing.T) {
		t.Parallel()
		ctx := testenv.Context(t, 20*time.Second)
		sch := testSchema(t, map[string]string{"present": present, "later": missing})
		s := newSink(t, c, kafkasink.Config{Topics: []string{present}})
		g := newGen(t, sch, "api", 8)
		a := newAcks()
		refused(t, ctx, "Submit", g.submit(ctx, s, g.batch(1, g.records("later", "1"), nil), a.fn(1)))
		// The loader may have submitted the next batch before seeing the
		// failure: it fails too, until the stream rewinds.
		if err := g.submit(ctx, s, g.batch(2, g.records("present", "1"), nil), a.fn(2)); !errors.Is(err, kafkasink.ErrEarlierBatchFailed) {
			t.Fatalf("next batch: Submit = %v, want ErrEarlierBatchFailed", err)
		}
		// The rewind (Seq 1) for a table whose topic exists goes through.
		if err := g.submit(ctx, s, g.batch(1, g.records("present", "1"), nil), a.fn(3)); err != nil {
			t.Fatal(err)
		}
		a.wait(t, 1, 30*time.Second)
		if a.err(3) != nil || a.err(1) != nil || a.err(2) != nil {
			t.Fatalf("acks: %v %v %v", a.err(1), a.err(2), a.err(3))
		}
	})
}

// A batch whose epoch an earlier batch failed is acked with
// ErrEarlierBatchFailed even though its messages were delivered: the
// loader replays it, and only a failed ack keeps the stream's nil acks a
// prefix of its batches. The sink reads that from the batch's epoch
// (loader.Batch.Err), which the failed ack fails before it returns; a
// rewind, a new epoch, is acked as usual.
// Real broker (shared): batch 2 is really delivered before it is failed.
func TestBatchOfFailedEpochIsFailedAfterDelivery(t *testing.T) {
	t.Parallel()
	c := testenv.Broker(t)
	topic := newTopic(t, c, 2)
	ctx := testenv.Context(t, time.Minute)
	s, g := eventsSink(t, c, topic, kafkasink.Config{}, 8)
	a := newAcks()
	b1 := g.batch(1, g.records("events", "a", "b"), nil)
	epoch := g.epoch
	// Batch 1's ack stands for the loader's failed ack, which fails the
	// epoch before it returns; it waits until batch 2 is submitted, so
	// that batch 2 is taken while the epoch still stands.
	submitted := make(chan struct{})
	if err := s.Submit(ctx, b1, func(err error) {
		<-submitted
		epoch.Fail(1, "api", errors.New("test: batch 1 failed"))
		a.fn(1)(err)
	}); err != nil {
		t.Fatal(err)
	}
	b2 := g.records("events", "a", "c")
	if err := s.Submit(ctx, g.batch(2, b2, nil), a.fn(2)); err != nil {
		t.Fatalf("batch 2 before batch 1 failed: Submit = %v", err)
	}
	testenv.Eventually(t, 30*time.Second, func() bool { return s.Stats().Delivered == 4 }, "batches 1 and 2 delivered")
	close(submitted)
	a.wait(t, 2, 30*time.Second)
	if err := a.err(2); !errors.Is(err, kafkasink.ErrEarlierBatchFailed) {
		t.Fatalf("batch 2 ack = %v, want ErrEarlierBatchFailed", err)
	}
	// The rewind replays batch 2's lines in a new epoch.
	if err := g.submit(ctx, s, g.batch(1, b2, nil), a.fn(3)); err != nil {
		t.Fatal(err)
	}
	a.wait(t, 1, 30*time.Second)
	if err := a.err(3); err != nil {
		t.Fatalf("replayed batch ack = %v", err)
	}
}

// CreateTopics (development only) creates what is missing with the admin
// API, with the broker's default partitions and replication.
// Real broker (shared): a real CreateTopics request.
func TestCreateTopics(t *testing.T) {
	t.Parallel()
	c := testenv.Broker(t)
	name := "dev_topic-" + newTopic(t, c, 1)
	ctx := testenv.Context(t, 20*time.Second)
	newSink(t, c, kafkasink.Config{Topics: []string{name}, CreateTopics: true})
	if ok, err := c.TopicExists(ctx, name); err != nil || !ok {
		t.Fatalf("exists=%v err=%v; CreateTopics should have created it", ok, err)
	}
	if n, err := c.Partitions(ctx, name); err != nil || n != 1 {
		t.Fatalf("partitions %d (%v), want the broker's num.partitions, 1", n, err)
	}
}

// The mock cluster (`kafka.brokers: embedded`) does not answer the
// CreateTopics admin request; CreateTopics then falls back to asking for
// the topic by name, which makes the mock create it.
// Mock: this is the embedded mode's own fallback; it claims no broker
// behaviour.
//
// Not parallel: the shortened timeout is package state, which the
// parallel tests (TestCreateTopics' real CreateTopics among them) read; a
// sequential test runs while they are all paused, and restores it.
func TestCreateTopicsMockFallback(t *testing.T) {
	defer kafkasink.SetCreateTimeout(300 * time.Millisecond)()
	c := testenv.Kafka(t, 1)
	ctx := testenv.Context(t, 20*time.Second)
	newSinkAt(t, c.Bootstrap(), kafkasink.Config{Topics: []string{"dev_topic"}, CreateTopics: true})
	if ok, err := c.TopicExists(ctx, "dev_topic"); err != nil || !ok {
		t.Fatalf("exists=%v err=%v; CreateTopics should have created it", ok, err)
	}
}

// Close is bounded even when no broker is reachable: the batch that could
// not be delivered fails with ErrClosed (its checkpoint stays) and Close
// returns within ShutdownTimeout, or ctx's deadline if that is sooner.
// Real single-node broker of its own per case: it is killed.
func TestCloseIsBoundedWhenBrokersDown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		shutdown time.Duration
		ctx      time.Duration
	}{
		{"shutdown timeout", 2 * time.Second, time.Minute},
		{"ctx deadline", time.Minute, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := testenv.Cluster(t, 1, nil)
			topic := newTopic(t, c, 3)
			sch := testSchema(t, map[string]string{"events": topic})
			ctx := testenv.Context(t, 60*time.Second)
			s, err := kafkasink.New(ctx, kafkasink.Config{Brokers: c.Bootstrap(), Topics: []string{topic},
				ShutdownTimeout: tc.shutdown, Logger: loadertest.Logger(t)})
			if err != nil {
				t.Fatal(err)
			}
			g := newGen(t, sch, "api", 100)
			a := newAcks()
			if err := g.submit(ctx, s, g.batch(1, g.records("events", keys(10, 10)...), nil), a.fn(1)); err != nil {
				t.Fatal(err)
			}
			a.wait(t, 1, 30*time.Second)
			killAll(t, c)
			if err := g.submit(ctx, s, g.batch(2, g.records("events", keys(10, 10)...), nil), a.fn(2)); err != nil {
				t.Fatal(err)
			}

			cctx, cancel := context.WithTimeout(context.Background(), tc.ctx)
			defer cancel()
			start := time.Now()
			err = s.Close(cctx)
			took := time.Since(start)
			bound := min(tc.shutdown, tc.ctx)
			t.Logf("Close took %v (bound %v): %v", took, bound, err)
			if took > bound+time.Second {
				t.Errorf("Close took %v, bound is %v", took, bound)
			}
			if err != nil {
				t.Errorf("Close = %v; librdkafka should have shut down in time", err)
			}
			select {
			case <-a.ch:
			default:
				t.Fatal("batch 2 not acked when Close returned")
			}
			if err := a.err(2); !errors.Is(err, kafkasink.ErrClosed) {
				t.Errorf("batch 2 ack = %v, want ErrClosed", err)
			}
			if err := g.submit(ctx, s, g.batch(3, g.records("events", "x"), nil), a.fn(3)); !errors.Is(err, kafkasink.ErrClosed) {
				t.Errorf("Submit after Close = %v, want ErrClosed", err)
			}
		})
	}
}

// killAll kill -9s every node of c: no broker answers any more.
func killAll(tb testing.TB, c *kafkaserver.Cluster) {
	tb.Helper()
	for _, id := range c.IDs() {
		if err := c.Kill(id); err != nil {
			tb.Fatal(err)
		}
	}
}

// deliverThenKill delivers batch 1 of g (5 records of table events,
// acked as a.fn(1)), so the producer has a connection and an idempotent
// producer id, then kills every node of c. It returns the records.
func deliverThenKill(t *testing.T, ctx context.Context, c *kafkaserver.Cluster, s loader.Sink, g *gen, a *acks) []loader.Record {
	t.Helper()
	warm := g.records("events", keys(5, 5)...)
	if err := g.submit(ctx, s, g.batch(1, warm, nil), a.fn(1)); err != nil {
		t.Fatal(err)
	}
	a.wait(t, 1, 30*time.Second)
	killAll(t, c)
	return warm
}

// restartAll starts every node of c again and waits until each serves.
func restartAll(tb testing.TB, ctx context.Context, c *kafkaserver.Cluster) {
	tb.Helper()
	for _, id := range c.IDs() {
		if err := c.Restart(ctx, id); err != nil {
			tb.Fatal(err)
		}
	}
}

// A fatal producer error fails the batches in flight with ErrFatal, later
// batches of the stream fail until it rewinds, and the rebuilt producer
// delivers the replay.
// Real single-node broker of its own: it is killed to keep batches in
// flight, and restarted (the fatal error itself is librdkafka's test hook).
func TestFatalErrorRebuildsProducer(t *testing.T) {
	t.Parallel()
	c := testenv.Cluster(t, 1, nil)
	topic := newTopic(t, c, 2)
	ctx := testenv.Context(t, 2*time.Minute)
	s, g := eventsSink(t, c, topic, kafkasink.Config{Properties: map[string]string{"reconnect.backoff.max.ms": "500"}}, 50)
	a := newAcks()
	warm := deliverThenKill(t, ctx, c, s, g, a)

	// Keep two batches in flight: the broker is down.
	b2, b3 := g.records("events", keys(5, 5)...), g.records("events", keys(5, 5)...)
	if err := g.submit(ctx, s, g.batch(2, b2, nil), a.fn(2)); err != nil {
		t.Fatal(err)
	}
	if err := g.submit(ctx, s, g.batch(3, b3, nil), a.fn(3)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return kafkasink.InFlight(s) == 2 }, "batches 2 and 3 produced")
	if got := kafkasink.InjectFatalError(s, kafka.ErrOutOfOrderSequenceNumber); got != kafka.ErrNoError {
		t.Fatalf("inject fatal error: %v", got)
	}
	a.wait(t, 2, 30*time.Second)
	for _, n := range []int{2, 3} {
		if err := a.err(n); !errors.Is(err, kafkasink.ErrFatal) {
			t.Errorf("batch %d ack = %v, want ErrFatal", n, err)
		}
	}
	// Submitted before the loader noticed: fails fast, nothing produced.
	b4 := g.records("events", keys(5, 5)...)
	if err := g.submit(ctx, s, g.batch(4, b4, nil), a.fn(4)); !errors.Is(err, kafkasink.ErrEarlierBatchFailed) {
		t.Fatalf("Submit of batch 4 = %v, want ErrEarlierBatchFailed", err)
	}

	restartAll(t, ctx, c)
	// The loader rewinds to its checkpoint (after batch 1) and replays.
	if err := g.submit(ctx, s, g.batch(1, b2, nil), a.fn(5)); err != nil {
		t.Fatal(err)
	}
	if err := g.submit(ctx, s, g.batch(2, slices.Concat(b3, b4), nil), a.fn(6)); err != nil {
		t.Fatal(err)
	}
	a.wait(t, 2, 60*time.Second)
	for _, n := range []int{5, 6} {
		if err := a.err(n); err != nil {
			t.Errorf("replayed batch %d ack = %v", n, err)
		}
	}
	if st := s.Stats(); st.Rebuilds != 1 {
		t.Errorf("Stats = %+v, want 1 rebuild", st)
	}
	// The old producer's messages never reached the (dead) broker and were
	// purged, so here everything arrives exactly once.
	checkOrderedOnce(t, consume(t, c, topic, 20), seqs(t, warm, b2, b3, b4))
}

// No Kafka: every case is refused by validation or by librdkafka's
// configuration before anything connects.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		cfg   kafkasink.Config
		field string
	}{
		{"no brokers", kafkasink.Config{}, "Brokers"},
		{"embedded", kafkasink.Config{Brokers: "embedded"}, "Brokers"},
		{"bad brokers", kafkasink.Config{Brokers: "localhost"}, "Brokers"},
		{"bootstrap in properties", kafkasink.Config{Brokers: "h:9092", Properties: map[string]string{"bootstrap.servers": "x:1"}}, "Properties[bootstrap.servers]"},
		{"go property", kafkasink.Config{Brokers: "h:9092", Properties: map[string]string{"go.delivery.reports": "false"}}, "Properties[go.delivery.reports]"},
		{"transactions", kafkasink.Config{Brokers: "h:9092", Properties: map[string]string{"transactional.id": "x"}}, "Properties[transactional.id]"},
		{"oauthbearer without oidc", kafkasink.Config{Brokers: "h:9092", Properties: map[string]string{"security.protocol": "SASL_SSL", "sasl.mechanism": "OAUTHBEARER"}}, "Properties[sasl.mechanism]"},
		{"bad topic", kafkasink.Config{Brokers: "h:9092", Topics: []string{"a b"}}, "Topics[0]"},
		{"negative timeout", kafkasink.Config{Brokers: "h:9092", ShutdownTimeout: -1}, "ShutdownTimeout"},
		{"bad max bytes", kafkasink.Config{Brokers: "h:9092", Properties: map[string]string{"message.max.bytes": "lots"}}, "Properties[message.max.bytes]"},
		{"bad batch size", kafkasink.Config{Brokers: "h:9092", Properties: map[string]string{"batch.size": "0"}}, "Properties[batch.size]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := kafkasink.New(t.Context(), tc.cfg)
			var ce *kafkasink.ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field {
				t.Fatalf("New = %v, want a ConfigError for %s", err, tc.field)
			}
		})
	}
	t.Run("unknown librdkafka property", func(t *testing.T) {
		_, err := kafkasink.New(t.Context(), kafkasink.Config{Brokers: "h:9092", Properties: map[string]string{"no.such.property": "1"}})
		if err == nil || !strings.Contains(err.Error(), "no.such.property") {
			t.Fatalf("New = %v, want an error naming the property", err)
		}
	})
}

// A weakening override is allowed (it is the operator's call) but logged.
// Mock: it claims only what New logs, nothing a broker does.
func TestWeakeningPropertiesWarn(t *testing.T) {
	t.Parallel()
	c := testenv.Kafka(t, 1)
	var buf testenv.SyncBuffer
	newSinkAt(t, c.Bootstrap(), kafkasink.Config{
		Properties: map[string]string{"enable.idempotence": "false", "acks": "1", "delivery.timeout.ms": "1000", "partitioner": "consistent_random"},
		Logger:     slogTo(&buf),
	})
	out := buf.String()
	for _, want := range []string{"enable.idempotence=false", "acks=1", "message.timeout.ms=1000", "partitioner=consistent_random"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks a warning about %s:\n%s", want, out)
		}
	}
}

// When librdkafka's queue is full (here: 50 messages while the only broker
// is down), Submit waits for room instead of failing or spinning, gives up
// when its ctx ends (without calling ack), and finishes once the broker is
// back.
// Real single-node broker of its own: it is killed and restarted.
func TestBackpressureWaitsForRoom(t *testing.T) {
	t.Parallel()
	c := testenv.Cluster(t, 1, nil)
	events, side := newTopic(t, c, 2), newTopic(t, c, 2)
	ctx := testenv.Context(t, 2*time.Minute)
	sch := testSchema(t, map[string]string{"events": events, "side": side})
	s := newSink(t, c, kafkasink.Config{Topics: []string{events, side}, Properties: map[string]string{
		"queue.buffering.max.messages": "50", "reconnect.backoff.max.ms": "500"}})
	g := newGen(t, sch, "api", 100)
	a := newAcks()
	warm := deliverThenKill(t, ctx, c, s, g, a)

	// A second stream's batch (to another topic) fills the queue and then
	// times out waiting: Submit hands it over at once, and its ack says why
	// it failed.
	other := newGen(t, sch, "other", 100)
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if err := other.submit(short, s, other.batch(1, other.records("side", keys(5, 60)...), nil), a.fn(100)); err != nil {
		t.Fatalf("Submit = %v, want nil (the producer goroutine waits for room)", err)
	}
	a.wait(t, 1, 30*time.Second)
	if err := a.err(100); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ack of a batch that found the queue full until its 500ms ctx ended = %v, want DeadlineExceeded", err)
	}

	// The main stream's next batch waits for room until the broker is back.
	big := g.records("events", keys(7, 200)...)
	if err := g.submit(ctx, s, g.batch(2, big, nil), a.fn(2)); err != nil {
		t.Fatal(err)
	}
	select { // the broker stays down for a second: no ack may come
	case n := <-a.ch:
		t.Fatalf("batch %d acked (%v) while the queue was full and the broker down", n, a.err(n))
	case <-time.After(time.Second):
	}
	restartAll(t, ctx, c)
	a.wait(t, 1, 60*time.Second)
	if err := a.err(2); err != nil {
		t.Fatalf("batch 2 ack = %v", err)
	}
	checkOrderedOnce(t, consume(t, c, events, len(warm)+len(big)), seqs(t, warm, big))
}

// Partitions reports each topic's partitions and those without a leader,
// for ingest doctor. Real broker (shared): the metadata a real cluster
// gives; the leaderless case needs a broker killed (not here).
func TestPartitions(t *testing.T) {
	t.Parallel()
	c := testenv.Broker(t)
	three, one := newTopic(t, c, 3), newTopic(t, c, 1)
	s := newSink(t, c, kafkasink.Config{Topics: []string{three, one, three}})
	got, err := s.Partitions(testenv.Context(t, 20*time.Second))
	want := []kafkasink.TopicPartitions{{Topic: three, Partitions: 3}, {Topic: one, Partitions: 1}}
	if three > one {
		want[0], want[1] = want[1], want[0]
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Partitions = %+v, %v; want %+v", got, err, want)
	}
}
