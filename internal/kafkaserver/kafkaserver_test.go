package kafkaserver_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m, true) }

// produce sends n keyed messages with a header and waits for every
// delivery report.
func produce(t *testing.T, bootstrap, topic string, n int) {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	dr := make(chan kafka.Event, n)
	for i := range n {
		err := p.Produce(&kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
			Key:            fmt.Appendf(nil, "acct-%d", i%7),
			Value:          fmt.Appendf(nil, "v%d", i),
			Headers:        []kafka.Header{{Key: "n", Value: fmt.Appendf(nil, "%d", i)}},
		}, dr)
		if err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		m := (<-dr).(*kafka.Message)
		if m.TopicPartition.Error != nil {
			t.Fatalf("delivery: %v", m.TopicPartition.Error)
		}
	}
}

// Real broker (shared): a topic made with configs, written by a producer,
// is read back whole with keys and headers, and its watermarks count what
// was read; an unknown topic is not created by asking for it.
func TestBrokerRoundTrip(t *testing.T) {
	c := testenv.Broker(t)
	ctx := testenv.Context(t, 2*time.Minute)
	topic := testenv.Topic(t, c, kafkaserver.TopicSpec{Partitions: 3, Configs: map[string]string{"max.message.bytes": "20000"}})
	produce(t, c.Bootstrap(), topic, 300)
	msgs, err := c.ReadTopic(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 300 {
		t.Fatalf("read %d messages, want 300", len(msgs))
	}
	parts := map[int32]int{}
	for _, m := range msgs {
		parts[m.TopicPartition.Partition]++
		if len(m.Key) == 0 || len(m.Headers) != 1 || m.Headers[0].Key != "n" {
			t.Fatalf("message without key or header: %v", m)
		}
	}
	if len(parts) < 2 {
		t.Errorf("7 keys landed on %d partition(s) of 3", len(parts))
	}
	// Nothing deleted: each partition holds from offset 0 what was read.
	lo, hi, err := c.Watermarks(ctx, topic)
	if err != nil || len(lo) != 3 || len(hi) != 3 {
		t.Fatalf("Watermarks: %v %v %v", lo, hi, err)
	}
	for p := range int32(3) {
		if lo[p] != 0 || hi[p] != int64(parts[p]) {
			t.Errorf("partition %d: watermarks [%d, %d), read %d messages", p, lo[p], hi[p], parts[p])
		}
	}
	if ok, err := c.TopicExists(ctx, "never-made"); err != nil || ok {
		t.Fatalf("TopicExists(never-made) = %v, %v; want false: auto.create.topics.enable is off", ok, err)
	}
	if ok, err := c.TopicExists(ctx, topic); err != nil || !ok {
		t.Fatalf("TopicExists(%s) = %v, %v", topic, ok, err)
	}
}

// Real 3-node cluster: killing a partition's leader moves leadership to
// another node (the mock never does), acks=all produce goes on, and the
// killed node restarts with its data and rejoins.
func TestClusterLeaderMoves(t *testing.T) {
	c := testenv.Cluster(t, 3, nil)
	ctx := testenv.Context(t, 3*time.Minute)
	topic := testenv.Topic(t, c, kafkaserver.TopicSpec{Partitions: 1, Replication: 3,
		Configs: map[string]string{"min.insync.replicas": "2"}})
	produce(t, c.Bootstrap(), topic, 50)
	old, err := c.Leader(ctx, topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(old); err != nil {
		t.Fatal(err)
	}
	if c.Running(old) {
		t.Fatalf("node %d still running after Kill", old)
	}
	testenv.Eventually(t, time.Minute, func() bool {
		l, err := c.Leader(ctx, topic, 0)
		return err == nil && l != old && l > 0
	}, "leadership of %s[0] to move off killed node %d", topic, old)
	produce(t, c.Bootstrap(), topic, 50)
	if err := c.Restart(ctx, old); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.ReadTopic(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 100 {
		t.Fatalf("read %d, want 100", len(msgs))
	}
}

func ExampleStart() {
	ctx := context.Background()
	c, err := kafkaserver.Start(ctx, kafkaserver.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	err = c.CreateTopic(ctx, "events", kafkaserver.TopicSpec{Partitions: 6})
	fmt.Println(err)
}

// A node whose JVM exits during a restart is launched once more, the error
// names both attempts and the log's ERROR lines, and the exited process
// does not block a later Restart ("already running"). Its own one-node
// cluster, with server.properties broken while the node is stopped.
func TestRestartOfANodeThatCannotStart(t *testing.T) {
	c := testenv.Cluster(t, 1, nil)
	ctx := testenv.Context(t, 3*time.Minute)
	id := c.IDs()[0]
	if err := c.Stop(ctx, id); err != nil {
		t.Fatal(err)
	}
	props := filepath.Join(c.Dir(), fmt.Sprintf("node%d", id), "server.properties")
	good, err := os.ReadFile(props)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(props, append(slices.Clone(good), "\nnode.id=not-a-number\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	err = c.Restart(ctx, id)
	if err == nil || strings.Count(err.Error(), "exited during start-up") != 2 || !strings.Contains(err.Error(), "a first attempt") {
		t.Fatalf("Restart with a broken config = %v; want both attempts' start-up exits", err)
	}
	if err := os.WriteFile(props, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(ctx, id); err != nil {
		t.Fatalf("Restart after the fix: %v", err)
	}
}
