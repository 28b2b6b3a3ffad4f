package kafkaserver

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// TopicSpec describes a topic for [Cluster.CreateTopic].
type TopicSpec struct {
	// Partitions defaults to 1.
	Partitions int
	// Replication defaults to min(nodes, 3).
	Replication int
	// Configs are topic configs, e.g. "max.message.bytes",
	// "min.insync.replicas", "retention.ms".
	Configs map[string]string
}

// admin makes a short-lived admin client. Admin clients start no Go
// goroutines (goleak-checked packages use this), and a fresh one never
// answers from a stale metadata cache.
func admin(bootstrap string) (*kafka.AdminClient, error) {
	ac, err := kafka.NewAdminClient(&kafka.ConfigMap{
		"bootstrap.servers": bootstrap,
		"log_level":         0, // connection refused while a node is down is expected
	})
	if err != nil {
		return nil, fmt.Errorf("kafkaserver: admin client: %w", err)
	}
	return ac, nil
}

// timeoutMs turns ctx's deadline into a librdkafka timeout, at most max.
func timeoutMs(ctx context.Context, max time.Duration) int {
	d := max
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		d = time.Until(dl)
	}
	return int(d.Milliseconds()) + 1
}

// waitBrokers polls each node directly (bootstrap = that node alone, so a
// peer's cached view cannot answer for it) until its metadata response
// lists every node in ids, or a JVM exits, or ctx ends.
func (c *Cluster) waitBrokers(ctx context.Context, ids []int32) error {
	var last error
	for {
		if err := c.exited(ids); err != nil {
			return err
		}
		last = c.brokersAnswer(ctx, ids)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			var logs string
			for _, id := range ids {
				logs += c.LogTail(id, 30)
			}
			return fmt.Errorf("kafkaserver: nodes %v not ready: %v (%w)\n%s", ids, last, ctx.Err(), logs)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *Cluster) brokersAnswer(ctx context.Context, ids []int32) error {
	for _, id := range ids {
		n, _ := c.node(id)
		ac, err := admin(n.addr())
		if err != nil {
			return err
		}
		md, err := ac.GetMetadata(nil, true, timeoutMs(ctx, 2*time.Second))
		ac.Close()
		if err != nil {
			return fmt.Errorf("node %d: %w", id, err)
		}
		seen := map[int32]bool{}
		for _, b := range md.Brokers {
			seen[b.ID] = true
		}
		if !seen[id] {
			return fmt.Errorf("node %d answers but is not registered yet", id)
		}
		if id == ids[0] {
			// At start every node must be in the cluster before topics
			// with replication > 1 can be made.
			for _, want := range ids {
				if !seen[want] {
					return fmt.Errorf("node %d not yet in metadata", want)
				}
			}
		}
	}
	return nil
}

// CreateTopic creates a topic and returns once every partition has a
// leader, so a producer that starts right after finds it.
func (c *Cluster) CreateTopic(ctx context.Context, name string, spec TopicSpec) error {
	if spec.Partitions <= 0 {
		spec.Partitions = 1
	}
	if spec.Replication <= 0 {
		spec.Replication = min(len(c.nodes), 3)
	}
	ac, err := admin(c.Bootstrap())
	if err != nil {
		return err
	}
	defer ac.Close()
	res, err := ac.CreateTopics(ctx, []kafka.TopicSpecification{{
		Topic: name, NumPartitions: spec.Partitions, ReplicationFactor: spec.Replication, Config: spec.Configs,
	}})
	if err != nil {
		return fmt.Errorf("kafkaserver: create topic %s: %w", name, err)
	}
	for _, r := range res {
		if r.Error.Code() != kafka.ErrNoError {
			return fmt.Errorf("kafkaserver: create topic %s: %w", name, r.Error)
		}
	}
	for {
		md, err := ac.GetMetadata(&name, false, timeoutMs(ctx, 5*time.Second))
		if err == nil {
			if tm, ok := md.Topics[name]; ok && tm.Error.Code() == kafka.ErrNoError && len(tm.Partitions) == spec.Partitions {
				ready := true
				for _, p := range tm.Partitions {
					ready = ready && p.Leader >= 1 && p.Error.Code() == kafka.ErrNoError
				}
				if ready {
					return c.waitServing(ctx, name, spec.Partitions)
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafkaserver: topic %s created but its partitions have no leader yet: %w", name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitServing returns once every partition's leader answers a watermark
// query: metadata names a leader a moment before that leader serves the
// partition, and a test reading right after creating the topic would get
// NOT_LEADER_OR_FOLLOWER.
func (c *Cluster) waitServing(ctx context.Context, topic string, partitions int) error {
	cons, err := c.consumer()
	if err != nil {
		return err
	}
	defer func() { _ = cons.Close() }()
	for p := range int32(partitions) {
		for {
			_, _, err := cons.QueryWatermarkOffsets(topic, p, timeoutMs(ctx, 5*time.Second))
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("kafkaserver: topic %s[%d] created but not served: %v (%w)", topic, p, err, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// metadata of one topic (must exist) from a fresh admin client.
func (c *Cluster) topic(ctx context.Context, name string) (kafka.TopicMetadata, error) {
	ac, err := admin(c.Bootstrap())
	if err != nil {
		return kafka.TopicMetadata{}, err
	}
	defer ac.Close()
	md, err := ac.GetMetadata(&name, false, timeoutMs(ctx, 10*time.Second))
	if err != nil {
		return kafka.TopicMetadata{}, fmt.Errorf("kafkaserver: metadata of %s: %w", name, err)
	}
	tm, ok := md.Topics[name]
	if !ok || tm.Error.Code() != kafka.ErrNoError {
		return kafka.TopicMetadata{}, fmt.Errorf("kafkaserver: topic %s: %v", name, tm.Error)
	}
	return tm, nil
}

// TopicExists reports whether the topic exists. The brokers never create a
// topic because a client asked for it, so asking by name is safe here.
func (c *Cluster) TopicExists(ctx context.Context, name string) (bool, error) {
	ac, err := admin(c.Bootstrap())
	if err != nil {
		return false, err
	}
	defer ac.Close()
	md, err := ac.GetMetadata(nil, true, timeoutMs(ctx, 10*time.Second))
	if err != nil {
		return false, fmt.Errorf("kafkaserver: list topics: %w", err)
	}
	_, ok := md.Topics[name]
	return ok, nil
}

// Partitions returns the number of partitions of an existing topic.
func (c *Cluster) Partitions(ctx context.Context, topic string) (int, error) {
	tm, err := c.topic(ctx, topic)
	if err != nil {
		return 0, err
	}
	return len(tm.Partitions), nil
}

// Leader returns the id of the node leading a partition now; on a real
// cluster it moves when the leader goes down.
func (c *Cluster) Leader(ctx context.Context, topic string, partition int32) (int32, error) {
	tm, err := c.topic(ctx, topic)
	if err != nil {
		return 0, err
	}
	for _, p := range tm.Partitions {
		if p.ID == partition {
			return p.Leader, nil
		}
	}
	return 0, fmt.Errorf("kafkaserver: %s has no partition %d", topic, partition)
}

// consumerSeq makes group ids unique: the consumer never joins its group
// (partitions are assigned explicitly), but librdkafka requires one.
var consumerSeq atomic.Int64

func (c *Cluster) consumer() (*kafka.Consumer, error) { return newConsumer(c.Bootstrap()) }

func newConsumer(bootstrap string) (*kafka.Consumer, error) {
	cons, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":    bootstrap,
		"group.id":             fmt.Sprintf("kafkaserver-read-%d", consumerSeq.Add(1)),
		"enable.auto.commit":   false,
		"enable.partition.eof": true,
		"auto.offset.reset":    "earliest",
		"log_level":            3,
	})
	if err != nil {
		return nil, fmt.Errorf("kafkaserver: consumer: %w", err)
	}
	return cons, nil
}

// topicConsumer returns how many partitions an existing topic has and a
// consumer to query or read them with, which the caller closes.
func (c *Cluster) topicConsumer(ctx context.Context, topic string) (int, *kafka.Consumer, error) {
	n, err := c.Partitions(ctx, topic)
	if err != nil {
		return 0, nil, err
	}
	cons, err := c.consumer()
	return n, cons, err
}

// ReadTopic reads every message a topic holds now, from the start of each
// partition to its high watermark at the time of the call, with keys,
// headers and timestamps. Order is per partition, partitions interleaved.
func (c *Cluster) ReadTopic(ctx context.Context, topic string) ([]*kafka.Message, error) {
	return c.read(ctx, topic, -1)
}

// Consume reads a topic from the beginning until want messages have
// arrived (waiting for more to be produced) or ctx ends; then it returns
// what it read with ctx's error.
func (c *Cluster) Consume(ctx context.Context, topic string, want int) ([]*kafka.Message, error) {
	return c.read(ctx, topic, want)
}

func (c *Cluster) read(ctx context.Context, topic string, want int) ([]*kafka.Message, error) {
	n, err := c.Partitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	return Read(ctx, c.Bootstrap(), topic, n, want)
}

// Read reads the n partitions of topic on the Kafka at bootstrap, this
// package's brokers or librdkafka's mock cluster (mockkafka reads through
// it too), from the start of each partition: with want < 0 every message
// the partitions hold at the call, else until want messages have arrived
// (waiting for more to be produced) or ctx ends, when it returns what it
// read with ctx's error. A consumer's transient errors (a broker down in a
// fault test) are retried by the consumer itself; a fatal one ends the
// read.
func Read(ctx context.Context, bootstrap, topic string, n, want int) ([]*kafka.Message, error) {
	cons, err := newConsumer(bootstrap)
	if err != nil {
		return nil, err
	}
	defer func() { _ = cons.Close() }() // only leaves a never-joined group

	open := map[int32]bool{} // partitions still to read to their high watermark
	assign := make([]kafka.TopicPartition, 0, n)
	for p := range int32(n) {
		assign = append(assign, kafka.TopicPartition{Topic: &topic, Partition: p, Offset: kafka.OffsetBeginning})
		if want < 0 {
			lo, hi, err := cons.QueryWatermarkOffsets(topic, p, timeoutMs(ctx, 10*time.Second))
			if err != nil {
				return nil, fmt.Errorf("kafkaserver: watermarks of %s[%d]: %w", topic, p, err)
			}
			if hi > lo {
				open[p] = true
			}
		}
	}
	if want < 0 && len(open) == 0 {
		return nil, nil
	}
	if err := cons.Assign(assign); err != nil {
		return nil, fmt.Errorf("kafkaserver: assign %s: %w", topic, err)
	}
	var msgs []*kafka.Message
	for (want < 0 && len(open) > 0) || (want >= 0 && len(msgs) < want) {
		if err := ctx.Err(); err != nil {
			return msgs, fmt.Errorf("kafkaserver: read %s: got %d messages: %w", topic, len(msgs), err)
		}
		// A short poll keeps ctx cancellation responsive.
		switch ev := cons.Poll(50).(type) {
		case *kafka.Message:
			if ev.TopicPartition.Error != nil {
				return msgs, fmt.Errorf("kafkaserver: read %s: %w", topic, ev.TopicPartition.Error)
			}
			msgs = append(msgs, ev)
		case kafka.PartitionEOF:
			delete(open, ev.Partition)
		case kafka.Error:
			if ev.IsFatal() {
				return msgs, fmt.Errorf("kafkaserver: read %s: %w", topic, ev)
			}
		}
	}
	return msgs, nil
}
