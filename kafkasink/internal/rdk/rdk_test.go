package rdk_test

import (
	"bytes"
	"fmt"
	"maps"
	"strconv"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/kafkasink/internal/rdk"
)

// TestMain stops the shared real broker (testenv.Broker) after the tests
// and then checks for leaked goroutines.
func TestMain(m *testing.M) { testenv.Main(m, true) }

var headerNames = []string{"h.table", "h.id", "h.src"}

func newProducer(tb testing.TB, bootstrap string, extra map[string]string) *rdk.Producer {
	tb.Helper()
	return newProducerHeaders(tb, bootstrap, extra, headerNames)
}

func newProducerHeaders(tb testing.TB, bootstrap string, extra map[string]string, headers []string) *rdk.Producer {
	tb.Helper()
	conf := map[string]string{
		"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": "true",
		"linger.ms": "5", "compression.type": "lz4", "message.timeout.ms": "0",
		"partitioner": "murmur2_random",
	}
	maps.Copy(conf, extra)
	p, err := rdk.New(conf, headers)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// pollUntil polls p until want reports arrived, returning them by opaque.
func pollUntil(tb testing.TB, p *rdk.Producer, want int, deadline time.Duration) map[uint64]rdk.Report {
	tb.Helper()
	pl := p.Poller(1000)
	got := map[uint64]rdk.Report{}
	var reports []rdk.Report
	end := time.Now().Add(deadline)
	for len(got) < want {
		if time.Now().After(end) {
			tb.Fatalf("got %d of %d delivery reports within %v", len(got), want, deadline)
		}
		var ev *rdk.Event
		reports, ev = pl.Poll(100*time.Millisecond, reports)
		for _, r := range reports {
			if _, dup := got[r.Opaque]; dup {
				tb.Fatalf("second report for opaque %d", r.Opaque)
			}
			got[r.Opaque] = r
		}
		if ev != nil && !ev.Log && ev.Err.IsFatal() {
			tb.Fatalf("fatal error: %v", ev.Err)
		}
	}
	return got
}

// Every message is delivered with its key, value, timestamp and headers,
// and every report carries the opaque of its message.
// Real broker (shared): what is checked is what Kafka stored.
func TestProduceRoundTrip(t *testing.T) {
	c := testenv.Broker(t)
	name := testenv.Topic(t, c, kafkaserver.TopicSpec{Partitions: 4})
	p := newProducer(t, c.Bootstrap(), nil)
	defer p.Close()
	topic, err := p.Topic(name)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	ts := time.UnixMilli(1_700_000_000_123)
	var b rdk.Batch
	for i := range n {
		b.Add(topic, fmt.Sprintf("k%d", i%17), fmt.Appendf(nil, `{"i":%d}`, i), ts, uint64(i+1))
		b.HeaderString(name)
		b.Header(fmt.Appendf(nil, "id-%d", i))
		b.Header(nil)
	}
	if next, err := p.Produce(&b, 0); next != n || err != nil {
		t.Fatalf("Produce = %d, %v; want %d, nil", next, err, n)
	}
	got := pollUntil(t, p, n, 30*time.Second)
	for i := range n {
		r, ok := got[uint64(i+1)]
		if !ok || r.Err != kafka.ErrNoError || r.Partition < 0 || r.Partition >= 4 || r.Topic() != name {
			t.Fatalf("report for message %d: %+v (found %v)", i, r, ok)
		}
	}

	msgs, err := c.ReadTopic(testenv.Context(t, 30*time.Second), name)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != n {
		t.Fatalf("topic holds %d messages, want %d", len(msgs), n)
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		var i int
		if _, err := fmt.Sscanf(string(m.Value), `{"i":%d}`, &i); err != nil {
			t.Fatalf("value %q: %v", m.Value, err)
		}
		if want := fmt.Sprintf("k%d", i%17); string(m.Key) != want {
			t.Fatalf("message %d: key %q, want %q", i, m.Key, want)
		}
		if !m.Timestamp.Equal(ts) {
			t.Fatalf("message %d: timestamp %v, want %v", i, m.Timestamp, ts)
		}
		wantH := [][2]string{{"h.table", name}, {"h.id", fmt.Sprintf("id-%d", i)}, {"h.src", ""}}
		if len(m.Headers) != len(wantH) {
			t.Fatalf("message %d: headers %v", i, m.Headers)
		}
		for j, h := range m.Headers {
			if h.Key != wantH[j][0] || !bytes.Equal(h.Value, []byte(wantH[j][1])) {
				t.Fatalf("message %d: header %d = %s=%q, want %s=%q", i, j, h.Key, h.Value, wantH[j][0], wantH[j][1])
			}
		}
		seen[string(m.Value)] = true
	}
	if len(seen) != n {
		t.Fatalf("consumed %d distinct messages, want %d", len(seen), n)
	}
}

// A message over message.max.bytes is refused at its index; the caller
// carries on after it.
// Mock: librdkafka refuses the message itself, before any broker sees it.
func TestProduceTooLarge(t *testing.T) {
	c := testenv.Kafka(t, 1)
	p := newProducer(t, c.Bootstrap(), map[string]string{"message.max.bytes": "10000"})
	defer p.Close()
	topic, _ := p.Topic("big")
	var b rdk.Batch
	b.Add(topic, "k", []byte("small"), time.Time{}, 1)
	b.Add(topic, "k", make([]byte, 20000), time.Time{}, 2)
	b.Add(topic, "k", []byte("small"), time.Time{}, 3)
	next, err := p.Produce(&b, 0)
	if next != 1 || err == nil || err.(kafka.Error).Code() != kafka.ErrMsgSizeTooLarge {
		t.Fatalf("Produce = %d, %v; want 1, message size too large", next, err)
	}
	if next, err = p.Produce(&b, next+1); next != 3 || err != nil {
		t.Fatalf("Produce from 2 = %d, %v; want 3, nil", next, err)
	}
	if err := p.Purge(); err != nil {
		t.Fatal(err)
	}
}

// A bad property is an error naming it; a fatal error arrives as a fatal
// event and stays readable.
// Mock: both are librdkafka's own (the fatal error is its test hook); no
// broker behaviour is claimed.
func TestConfigErrorAndFatal(t *testing.T) {
	if _, err := rdk.New(map[string]string{"no.such.property": "1"}, nil); err == nil || !bytes.Contains([]byte(err.Error()), []byte("no.such.property")) {
		t.Fatalf("New with a bad property: %v", err)
	}
	c := testenv.Kafka(t, 1)
	p := newProducer(t, c.Bootstrap(), nil)
	defer p.Close()
	if code := p.TestFatalError(kafka.ErrOutOfOrderSequenceNumber, "test"); code != kafka.ErrNoError {
		t.Fatalf("TestFatalError = %v", code)
	}
	pl := p.Poller(10)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, ev := pl.Poll(100*time.Millisecond, nil)
		if ev != nil && !ev.Log {
			if !ev.Err.IsFatal() || ev.Err.Code() != kafka.ErrOutOfOrderSequenceNumber {
				t.Fatalf("error event %v (fatal %v), want fatal out-of-order sequence", ev.Err, ev.Err.IsFatal())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no fatal error event")
		}
	}
	if err := p.FatalError(); err == nil {
		t.Fatal("FatalError = nil after a fatal error")
	}
}

// Topics lists existing topics with their partition counts, and not
// absent ones.
// Real broker (shared): a real broker's metadata.
func TestTopics(t *testing.T) {
	c := testenv.Broker(t)
	exists := testenv.Topic(t, c, kafkaserver.TopicSpec{Partitions: 3})
	p := newProducer(t, c.Bootstrap(), nil)
	defer p.Close()
	ts, err := p.Topics(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if ti := ts[exists]; ti.Partitions != 3 || ti.Err != kafka.ErrNoError {
		t.Fatalf("topic %s: %+v", exists, ti)
	}
	if _, ok := ts["absent_"+exists]; ok {
		t.Fatal("absent topic listed")
	}
}

// BenchmarkProduce is the binding's throughput on the Kafka sink's
// traffic shape (2 KB values, three headers), delivery reports included,
// and without headers (what kcat -P sends): the difference is what the
// sink's headers cost inside librdkafka. It produces to the test binary's
// shared real broker (one node).
//
//	go test -run '^$' -bench Produce -benchtime 200000x ./kafkasink/internal/rdk/
func BenchmarkProduce(b *testing.B) {
	for _, headers := range []int{3, 0} {
		b.Run(fmt.Sprintf("headers=%d", headers), func(b *testing.B) { benchProduce(b, headers) })
	}
}

func benchProduce(b *testing.B, headers int) {
	c := testenv.Broker(b)
	name := testenv.Topic(b, c, kafkaserver.TopicSpec{Partitions: 6})
	p := newProducerHeaders(b, c.Bootstrap(), map[string]string{"linger.ms": "10", "batch.num.messages": "10000",
		"batch.size": "1000000", "queue.buffering.max.kbytes": "262144", "queue.buffering.max.messages": "100000"},
		headerNames[:headers])
	defer p.Close()
	topic, _ := p.Topic(name)
	value := bytes.Repeat([]byte("x"), 2000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pl := p.Poller(4096)
		var reports []rdk.Report
		for n := 0; n < b.N; {
			reports, _ = pl.Poll(100*time.Millisecond, reports)
			n += len(reports)
		}
	}()
	b.SetBytes(int64(len(value)))
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU(b)
	var batch rdk.Batch
	var id, src [32]byte
	for i := 0; i < b.N; {
		batch.Reset()
		for j := 0; j < 256 && i < b.N; j, i = j+1, i+1 {
			batch.Add(topic, strconv.Itoa(i%5000), value, time.Time{}, uint64(i+1))
			if headers > 0 {
				batch.HeaderString("bench")
				batch.Header(strconv.AppendInt(id[:0], int64(i), 10))
				batch.Header(strconv.AppendInt(src[:0], int64(i), 10))
			}
		}
		for from := 0; from < batch.Len(); {
			var err error
			if from, err = p.Produce(&batch, from); err != nil {
				if err.(kafka.Error).Code() != kafka.ErrQueueFull {
					b.Fatal(err)
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	<-done
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/msg")
}

// HasController tells a real cluster, whose controller is one of its
// brokers, from librdkafka's mock cluster, whose metadata names controller
// 0, none of its brokers: admin requests for the controller would wait
// forever on the mock.
// Real broker (shared) and mock: the point is how the two differ.
func TestHasController(t *testing.T) {
	for name, bootstrap := range map[string]string{"real": testenv.Broker(t).Bootstrap(), "mock": testenv.Kafka(t, 1).Bootstrap()} {
		p := newProducer(t, bootstrap, nil)
		ok, err := p.HasController(10 * time.Second)
		p.Close()
		if err != nil || ok != (name == "real") {
			t.Errorf("%s cluster: HasController = %v, %v; want %v", name, ok, err, name == "real")
		}
	}
}
