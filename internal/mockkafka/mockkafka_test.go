package mockkafka_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.uber.org/goleak"

	"github.com/dualwrite/ingest/internal/mockkafka"
	"github.com/dualwrite/ingest/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newProducer returns a producer configured like the Kafka sink's defaults
// (acks=all, idempotence, Java-compatible partitioner), closed in cleanup.
// Its Events channel (errors, logs) is drained so it can never fill up.
func newProducer(t *testing.T, c *mockkafka.Cluster) *kafka.Producer {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers":  c.Bootstrap(),
		"acks":               "all",
		"enable.idempotence": true,
		"partitioner":        "murmur2_random",
		"linger.ms":          5,
	})
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for ev := range p.Events() {
			t.Logf("producer event: %v", ev)
		}
	}()
	t.Cleanup(func() {
		p.Close() // closes Events, which ends the drain goroutine
		<-drained
	})
	return p
}

// deliver waits for one delivery report and fails the test on error.
func deliver(t *testing.T, ch <-chan kafka.Event, timeout time.Duration) *kafka.Message {
	t.Helper()
	select {
	case ev := <-ch:
		m, ok := ev.(*kafka.Message)
		if !ok {
			t.Fatalf("delivery channel got %T: %v", ev, ev)
		}
		if m.TopicPartition.Error != nil {
			t.Fatalf("delivery of %s failed: %v", m.Key, m.TopicPartition.Error)
		}
		return m
	case <-time.After(timeout):
		t.Fatalf("no delivery report within %v", timeout)
		return nil
	}
}

func TestProduceConsumeRoundTrip(t *testing.T) {
	t.Parallel()
	const (
		topic      = "raw_item"
		partitions = 4
		accounts   = 20
		n          = 300
	)
	c := testenv.Kafka(t, 3)
	ctx := testenv.Context(t, 15*time.Second)
	if err := c.CreateTopic(topic, partitions); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Partitions(ctx, topic); err != nil || got != partitions {
		t.Fatalf("Partitions = %d, %v; want %d", got, err, partitions)
	}
	p := newProducer(t, c)

	reports := make(chan kafka.Event, n)
	for i := range n {
		err := p.Produce(&kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &[]string{topic}[0], Partition: kafka.PartitionAny},
			Key:            fmt.Appendf(nil, "%d", i%accounts),
			Value:          fmt.Appendf(nil, "event-%03d", i),
		}, reports)
		if err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	// Where each value was acknowledged: the consumer must find it there.
	acked := make(map[string]kafka.TopicPartition, n)
	for range n {
		m := deliver(t, reports, 10*time.Second)
		acked[string(m.Value)] = m.TopicPartition
	}

	msgs, err := c.Consume(ctx, topic, n)
	if err != nil {
		t.Fatalf("consume: %v (got %d)", err, len(msgs))
	}
	if len(msgs) != n {
		t.Fatalf("consumed %d messages, want %d", len(msgs), n)
	}
	partOfKey := map[string]int32{}
	lastOfKey := map[string]string{}
	usedParts := map[int32]bool{}
	for _, m := range msgs {
		key, val := string(m.Key), string(m.Value)
		a, ok := acked[val]
		if !ok {
			t.Fatalf("consumed %q, which was never produced (or twice)", val)
		}
		delete(acked, val)
		if a.Partition != m.TopicPartition.Partition || a.Offset != m.TopicPartition.Offset {
			t.Errorf("%s: acked at %d@%d, consumed at %d@%d", val, a.Partition, a.Offset,
				m.TopicPartition.Partition, m.TopicPartition.Offset)
		}
		if want := fmt.Sprintf("%d", mustIndex(t, val)%accounts); key != want {
			t.Errorf("%s has key %q, want %q", val, key, want)
		}
		// All events of one account in one partition, in production order.
		if p, seen := partOfKey[key]; seen && p != m.TopicPartition.Partition {
			t.Errorf("key %s in partitions %d and %d", key, p, m.TopicPartition.Partition)
		}
		partOfKey[key] = m.TopicPartition.Partition
		usedParts[m.TopicPartition.Partition] = true
		if val <= lastOfKey[key] {
			t.Errorf("key %s: %s consumed after %s", key, val, lastOfKey[key])
		}
		lastOfKey[key] = val
	}
	if len(usedParts) < 2 {
		t.Errorf("%d accounts all landed in %d partition(s): keys are not spread", accounts, len(usedParts))
	}
}

func mustIndex(t *testing.T, val string) int {
	t.Helper()
	var i int
	if _, err := fmt.Sscanf(val, "event-%d", &i); err != nil {
		t.Fatalf("value %q: %v", val, err)
	}
	return i
}

func TestTopicExistsDoesNotCreate(t *testing.T) {
	t.Parallel()
	c := testenv.Kafka(t, 1)
	ctx := testenv.Context(t, 15*time.Second)

	for i := range 2 { // the first check must not create it for the second
		ok, err := c.TopicExists(ctx, "never_created")
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			t.Fatalf("check %d: never-created topic exists", i+1)
		}
	}
	if _, err := c.Consume(ctx, "never_created", 1); err == nil {
		t.Fatal("Consume of a missing topic succeeded")
	}
	if ok, err := c.TopicExists(ctx, "never_created"); err != nil || ok {
		t.Fatalf("after Consume: exists=%v err=%v; Consume must not create topics", ok, err)
	}

	if err := c.CreateTopic("created", 2); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.TopicExists(ctx, "created"); err != nil || !ok {
		t.Fatalf("created topic: exists=%v err=%v", ok, err)
	}
}

// The leader of a partition goes down: a message to it stays queued in the
// producer (the mock does not fail over), and is delivered once the broker
// is back. A follower going down changes nothing.
func TestBrokerDownDelaysDelivery(t *testing.T) {
	t.Parallel()
	const topic = "events"
	c := testenv.Kafka(t, 3)
	ctx := testenv.Context(t, 15*time.Second)
	if err := c.CreateTopic(topic, 3); err != nil {
		t.Fatal(err)
	}
	leader, err := c.Leader(ctx, topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := newProducer(t, c)
	reports := make(chan kafka.Event, 10)
	produce := func(val string) {
		t.Helper()
		err := p.Produce(&kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &[]string{topic}[0], Partition: 0},
			Key:            []byte("acct"),
			Value:          []byte(val),
		}, reports)
		if err != nil {
			t.Fatalf("produce %s: %v", val, err)
		}
	}
	// Connect and deliver once, so the outage hits an established producer.
	produce("warm-up")
	deliver(t, reports, 10*time.Second)

	// A follower's outage does not hold up acks=all.
	follower := leader%3 + 1
	if err := c.BrokerDown(follower); err != nil {
		t.Fatal(err)
	}
	produce("follower-down")
	deliver(t, reports, 10*time.Second)
	if err := c.BrokerUp(follower); err != nil {
		t.Fatal(err)
	}

	if err := c.BrokerDown(leader); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Leader(ctx, topic, 0); err != nil || got != leader {
		t.Fatalf("leader after BrokerDown = %d, %v; the mock should keep %d", got, err, leader)
	}
	produce("leader-down")
	// A negative check needs a wait: a second is many round trips on
	// localhost, so a delivery that was going to happen would have.
	select {
	case ev := <-reports:
		t.Fatalf("delivery while the leader is down: %v", ev)
	case <-time.After(time.Second):
	}
	if p.Len() == 0 {
		t.Fatal("producer has nothing pending while the leader is down")
	}

	if err := c.BrokerUp(leader); err != nil {
		t.Fatal(err)
	}
	m := deliver(t, reports, 10*time.Second)
	if string(m.Value) != "leader-down" || m.TopicPartition.Partition != 0 {
		t.Fatalf("delivered %s to partition %d", m.Value, m.TopicPartition.Partition)
	}
	msgs, err := c.Consume(ctx, topic, 3)
	if err != nil {
		t.Fatalf("consume: %v", err)
	}
	var got []string
	for _, m := range msgs {
		got = append(got, string(m.Value))
	}
	if fmt.Sprint(got) != "[warm-up follower-down leader-down]" {
		t.Fatalf("partition 0 holds %q", got)
	}
}

func TestNewRejectsZeroBrokers(t *testing.T) {
	if _, err := mockkafka.New(0); err == nil {
		t.Fatal("New(0) succeeded")
	}
}
