package kafkasink_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/kafkasink"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
)

// TestMain stops the shared real broker (testenv.Broker) after the tests
// and then checks for leaked goroutines.
func TestMain(m *testing.M) { testenv.Main(m, true) }

// testSchema has one table per entry of topicOf (table name -> topic), all
// shaped alike: key "acct" (text), "seq" (bigint, the record's number in
// the test), event time "ts" (epoch ms) and a text body. Table and topic
// differ because the real broker's topics are made per test (testenv.Topic)
// and their names are not table names.
func testSchema(tb testing.TB, topicOf map[string]string) *schema.Schema {
	tb.Helper()
	tables := map[string]*schema.Table{}
	for table, topic := range topicOf {
		tables[table] = &schema.Table{
			Key: "acct", Time: "ts", Topic: topic,
			Columns: map[string]string{"acct": "text", "seq": "bigint", "ts": "bigint", "body": "text"},
		}
	}
	s, err := schema.New(tables)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// gen makes loader records the way the loader does: offline lines decoded
// by the schema, positions in a file of the stream. seq numbers are global
// to the test so a consumer can check order and duplicates.
type gen struct {
	tb     testing.TB
	s      *schema.Schema
	stream string
	file   string
	offset int64
	seq    int
	body   string
	// epoch is the loader's epoch of the batches g makes: a batch with
	// Seq 1 (a rewind) starts a new one. epochs maps each batch to its
	// epoch, for submit.
	epoch  *loader.Epoch
	epochs sync.Map
}

func newGen(tb testing.TB, s *schema.Schema, stream string, bodySize int) *gen {
	return &gen{tb: tb, s: s, stream: stream, file: "000001-20250101T000000Z.ndjson", body: strings.Repeat("x", bodySize)}
}

// ts is the event time of record seq: distinct per record, so the test can
// check that the message timestamp came from the row. Recent, because a
// real broker deletes messages older than the topic's retention.ms
// (7 days by default) soon after they arrive.
func ts(seq int) int64 { return tsBase + int64(seq) }

var tsBase = time.Now().Add(-time.Hour).UnixMilli()

// records returns one record per key.
func (g *gen) records(table string, keys ...string) []loader.Record {
	g.tb.Helper()
	out := make([]loader.Record, 0, len(keys))
	for _, k := range keys {
		g.seq++
		line := fmt.Appendf(nil, `{"table":%q,"row":{"acct":%q,"seq":%d,"ts":%d,"body":%q}}`, table, k, g.seq, ts(g.seq), g.body)
		rec, err := g.s.Decode(line, "")
		if err != nil {
			g.tb.Fatalf("decode %s: %v", line, err)
		}
		pos := loader.Position{File: g.file, Offset: g.offset}
		out = append(out, loader.Record{
			Record:   rec,
			RecordID: fmt.Sprintf("%s/%s/%d", g.stream, g.file, g.offset),
			Pos:      pos,
			Line:     line,
		})
		g.offset += int64(len(line)) + 1
	}
	return out
}

// batch wraps records into a batch with seq; rejects go to dl.
func (g *gen) batch(seq uint64, recs []loader.Record, dl *loadertest.Rejects) *loader.Batch {
	start := loader.Position{File: g.file}
	if len(recs) > 0 {
		start = recs[0].Pos
	}
	var reject func(context.Context, *loader.Record, string, string) error
	if dl != nil {
		reject = dl.Reject
	}
	b := loader.NewBatch(g.stream, start, loader.Position{File: g.file, Offset: g.offset}, recs, reject)
	if seq <= 1 || g.epoch == nil {
		g.epoch = loader.NewEpoch()
	}
	b.InEpoch(g.epoch, seq)
	g.epochs.Store(b, g.epoch)
	return b
}

// submit hands b, made by g.batch, to s as the loader does: a Submit error,
// or a failed ack before it returns, fails b's epoch, which voids the later
// batches of the epoch ([loader.Batch.Err]).
func (g *gen) submit(ctx context.Context, s loader.Sink, b *loader.Batch, ack func(error)) error {
	e, ok := g.epochs.Load(b)
	if !ok {
		g.tb.Fatalf("batch %d of %s was not made by gen.batch", b.Seq, b.Stream)
	}
	epoch := e.(*loader.Epoch)
	err := s.Submit(ctx, b, func(err error) {
		if err != nil {
			epoch.Fail(b.Seq, b.Stream, err)
		}
		ack(err)
	})
	if err != nil {
		epoch.Fail(b.Seq, b.Stream, err)
	}
	return err
}

// acks collects the outcome of submitted batches.
type acks struct {
	mu    sync.Mutex
	calls map[int]int // batch number -> ack calls
	errs  map[int]error
	order []int
	ch    chan int
}

func newAcks() *acks {
	return &acks{calls: map[int]int{}, errs: map[int]error{}, ch: make(chan int, 1000)}
}

// fn returns the ack function of batch n.
func (a *acks) fn(n int) func(error) {
	return func(err error) {
		a.mu.Lock()
		a.calls[n]++
		a.errs[n] = err
		a.order = append(a.order, n)
		a.mu.Unlock()
		a.ch <- n
	}
}

// wait waits for n more acks and fails the test after timeout.
func (a *acks) wait(tb testing.TB, n int, timeout time.Duration) {
	tb.Helper()
	deadline := time.After(timeout)
	for range n {
		select {
		case <-a.ch:
		case <-deadline:
			a.mu.Lock()
			defer a.mu.Unlock()
			tb.Fatalf("timed out after %v waiting for acks; have %d: %v", timeout, len(a.order), a.order)
		}
	}
}

func (a *acks) err(n int) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.errs[n]
}

// checkAllOK checks that batches 1..n were each acked once, with nil, in order.
func (a *acks) checkAllOK(tb testing.TB, n int) {
	tb.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := 1; i <= n; i++ {
		if a.calls[i] != 1 || a.errs[i] != nil {
			tb.Errorf("batch %d: %d ack calls, err %v; want one, nil", i, a.calls[i], a.errs[i])
		}
	}
	for i, n := range a.order {
		if n != i+1 {
			tb.Errorf("ack order %v, want submit order", a.order)
			break
		}
	}
}

// newTopic creates a fresh topic with the given partitions on c
// (replication min(nodes, 3)) and returns its name.
func newTopic(tb testing.TB, c *kafkaserver.Cluster, partitions int) string {
	tb.Helper()
	return testenv.Topic(tb, c, kafkaserver.TopicSpec{Partitions: partitions})
}

// newSink starts a sink on c for the given topics, closed in cleanup.
func newSink(tb testing.TB, c *kafkaserver.Cluster, cfg kafkasink.Config) *kafkasink.Sink {
	tb.Helper()
	return newSinkAt(tb, c.Bootstrap(), cfg)
}

// eventsSink starts a sink on c (newSink) for topic, the topic of the one
// table "events", and returns it with a gen of stream "api" whose records
// have bodySize-byte bodies: the set-up of most tests of one sink.
func eventsSink(tb testing.TB, c *kafkaserver.Cluster, topic string, cfg kafkasink.Config, bodySize int) (*kafkasink.Sink, *gen) {
	tb.Helper()
	cfg.Topics = []string{topic}
	return newSink(tb, c, cfg), newGen(tb, testSchema(tb, map[string]string{"events": topic}), "api", bodySize)
}

// newSinkAt starts a sink on brokers (the mock's, for the tests that claim
// no broker behaviour), closed in cleanup.
func newSinkAt(tb testing.TB, brokers string, cfg kafkasink.Config) *kafkasink.Sink {
	tb.Helper()
	cfg.Brokers = brokers
	if cfg.Logger == nil {
		cfg.Logger = loadertest.Logger(tb)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := kafkasink.New(ctx, cfg)
	if err != nil {
		tb.Fatalf("kafkasink.New: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	return s
}

// consumed is one message read back, with what the test checks.
type consumed struct {
	key       string
	seq       int
	partition int32
	offset    kafka.Offset
	headers   map[string]string
	timestamp time.Time
	value     []byte
}

// consume reads everything topic holds (up to the high watermarks, which
// cover every acked message: acks=all answers once the high watermark has
// passed it) and checks that it is want messages, so extra copies fail
// the test as well as missing ones.
func consume(tb testing.TB, c *kafkaserver.Cluster, topic string, want int) []consumed {
	tb.Helper()
	ctx := testenv.Context(tb, 60*time.Second)
	msgs, err := c.ReadTopic(ctx, topic)
	if err != nil {
		tb.Fatalf("read %s: %v (got %d, want %d)", topic, err, len(msgs), want)
	}
	if len(msgs) != want {
		tb.Errorf("topic %s holds %d messages, want %d", topic, len(msgs), want)
	}
	return toConsumed(tb, msgs)
}

func toConsumed(tb testing.TB, msgs []*kafka.Message) []consumed {
	tb.Helper()
	out := make([]consumed, len(msgs))
	for i, m := range msgs {
		h := map[string]string{}
		for _, hd := range m.Headers {
			h[hd.Key] = string(hd.Value)
		}
		out[i] = consumed{
			key: string(m.Key), seq: seqOf(tb, m.Value), partition: m.TopicPartition.Partition,
			offset: m.TopicPartition.Offset, headers: h, timestamp: m.Timestamp, value: m.Value,
		}
	}
	return out
}

// seqOf is rowSeq for rows that must have a seq (the generator's own and
// the lineWriter's): a row without one fails the test.
func seqOf(tb testing.TB, row []byte) int {
	tb.Helper()
	n, err := rowSeq(row)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// checkOrderedOnce checks that seqs 1..n (minus skip) each appear exactly
// once, and that per key they appear in increasing order.
func checkOrderedOnce(tb testing.TB, msgs []consumed, want map[int]bool) {
	tb.Helper()
	seen := map[int]int{}
	last := map[string]int{}
	part := map[string]int32{}
	for _, m := range msgs {
		seen[m.seq]++
		if m.seq <= last[m.key] {
			tb.Errorf("key %s: seq %d after %d", m.key, m.seq, last[m.key])
		}
		last[m.key] = m.seq
		if p, ok := part[m.key]; ok && p != m.partition {
			tb.Errorf("key %s in partitions %d and %d", m.key, p, m.partition)
		}
		part[m.key] = m.partition
	}
	for seq := range want {
		if seen[seq] != 1 {
			tb.Errorf("seq %d consumed %d times, want once", seq, seen[seq])
		}
	}
	for seq, n := range seen {
		if !want[seq] {
			tb.Errorf("seq %d consumed %d times, never expected", seq, n)
		}
	}
}

func seqs(tb testing.TB, recs ...[]loader.Record) map[int]bool {
	tb.Helper()
	m := map[int]bool{}
	for _, rs := range recs {
		for _, r := range rs {
			m[seqOf(tb, r.Row)] = true
		}
	}
	return m
}

// keys returns n account keys "acct-0".."acct-<n-1>", repeated to length l.
func keys(n, l int) []string {
	out := make([]string, l)
	for i := range out {
		out[i] = fmt.Sprintf("acct-%d", i%n)
	}
	return out
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// leaderOfPartition0 returns the broker leading partition 0 of topic, the
// one a test kills, and the partitions (of the first partitions) it leads,
// which go down with it.
func leaderOfPartition0(tb testing.TB, ctx context.Context, c *kafkaserver.Cluster, topic string, partitions int) (leader int32, down map[int32]bool) {
	tb.Helper()
	leader, err := c.Leader(ctx, topic, 0)
	if err != nil {
		tb.Fatal(err)
	}
	down = map[int32]bool{}
	for p := range int32(partitions) {
		if l, err := c.Leader(ctx, topic, p); err != nil {
			tb.Fatal(err)
		} else if l == leader {
			down[p] = true
		}
	}
	return leader, down
}

// submitRejectingOne submits recs as one batch, which must be acked nil
// with exactly one record dead-lettered, big, as too_large, and returns
// that dead letter's detail.
func submitRejectingOne(t *testing.T, g *gen, s loader.Sink, recs []loader.Record, big loader.Record) string {
	t.Helper()
	dl := &loadertest.Rejects{}
	a := newAcks()
	if err := g.submit(t.Context(), s, g.batch(1, recs, dl), a.fn(1)); err != nil {
		t.Fatal(err)
	}
	a.wait(t, 1, 30*time.Second)
	a.checkAllOK(t, 1)
	rejected := dl.ByOffset()
	if len(rejected) != 1 || rejected[big.Pos.Offset].Reason != "too_large" {
		t.Fatalf("dead letters %+v, want only offset %d too_large", rejected, big.Pos.Offset)
	}
	return rejected[big.Pos.Offset].Detail
}
