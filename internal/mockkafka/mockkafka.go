package mockkafka

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"golang.org/x/sys/unix"

	"github.com/dualwrite/ingest/internal/kafkaserver"
)

// Cluster is an in-process mock Kafka cluster. All methods are safe for
// concurrent use; Close is idempotent.
type Cluster struct {
	mc      *kafka.MockCluster
	brokers int

	closeOnce sync.Once
}

// defaultMetadataTimeout bounds metadata calls when ctx has no deadline:
// librdkafka metadata calls block with a timeout and cannot be cancelled.
const defaultMetadataTimeout = 10 * time.Second

// New starts a mock cluster with broker ids 1..brokers.
func New(brokers int) (*Cluster, error) {
	if brokers < 1 {
		return nil, fmt.Errorf("mockkafka: need at least one broker, got %d", brokers)
	}
	mc, err := newQuietly(brokers)
	if err != nil {
		return nil, fmt.Errorf("mockkafka: start %d brokers: %w", brokers, err)
	}
	return &Cluster{mc: mc, brokers: brokers}, nil
}

// Mock is the underlying cluster, for what this wrapper does not cover
// (e.g. SetRoundtripDuration).
func (c *Cluster) Mock() *kafka.MockCluster { return c.mc }

// Bootstrap is the bootstrap.servers value for clients.
func (c *Cluster) Bootstrap() string { return c.mc.BootstrapServers() }

// Brokers is the number of brokers; their ids are 1..Brokers().
func (c *Cluster) Brokers() int { return c.brokers }

// ReplicationFactor is the replication factor [Cluster.CreateTopic] uses:
// min(brokers, 3), as in a production cluster. The mock does not replicate
// data or move leadership, so a follower's outage changes nothing; what
// makes a broker-down test meaningful is taking down the partition's
// leader, found with [Cluster.Leader]. The mock picks each partition's
// leader at random, so look it up rather than assume one.
func (c *Cluster) ReplicationFactor() int { return min(c.brokers, 3) }

// CreateTopic creates a topic with the given number of partitions.
func (c *Cluster) CreateTopic(name string, partitions int) error {
	if err := c.mc.CreateTopic(name, partitions, c.ReplicationFactor()); err != nil {
		return fmt.Errorf("mockkafka: create topic %q: %w", name, err)
	}
	return nil
}

// TopicExists reports whether the topic exists. It lists all topics rather
// than asking for the one topic by name, because the mock auto-creates a
// topic whenever a client requests its metadata by name, which would make
// the check create what it checks for.
func (c *Cluster) TopicExists(ctx context.Context, name string) (bool, error) {
	md, err := c.metadata(ctx)
	if err != nil {
		return false, err
	}
	_, ok := md.Topics[name]
	return ok, nil
}

// Leader returns the id of the broker leading a partition. The mock never
// moves leadership, not even when the leader is down.
func (c *Cluster) Leader(ctx context.Context, topic string, partition int32) (int32, error) {
	md, err := c.metadata(ctx)
	if err != nil {
		return 0, err
	}
	tm, ok := md.Topics[topic]
	if !ok {
		return 0, fmt.Errorf("mockkafka: leader of %s[%d]: topic does not exist", topic, partition)
	}
	for _, p := range tm.Partitions {
		if p.ID == partition {
			return p.Leader, nil
		}
	}
	return 0, fmt.Errorf("mockkafka: leader of %s[%d]: topic has %d partitions", topic, partition, len(tm.Partitions))
}

// Partitions returns the number of partitions of an existing topic.
func (c *Cluster) Partitions(ctx context.Context, topic string) (int, error) {
	md, err := c.metadata(ctx)
	if err != nil {
		return 0, err
	}
	tm, ok := md.Topics[topic]
	if !ok {
		return 0, fmt.Errorf("mockkafka: topic %q does not exist", topic)
	}
	return len(tm.Partitions), nil
}

// BrokerDown disconnects a broker and refuses new connections to it. Its
// partitions keep it as leader, so produce and fetch for them stall until
// [Cluster.BrokerUp]. id -1 means all brokers.
func (c *Cluster) BrokerDown(id int32) error {
	if err := c.mc.SetBrokerDown(int(id)); err != nil {
		return fmt.Errorf("mockkafka: broker %d down: %w", id, err)
	}
	return nil
}

// BrokerUp lets a broker accept connections again. id -1 means all brokers.
func (c *Cluster) BrokerUp(id int32) error {
	if err := c.mc.SetBrokerUp(int(id)); err != nil {
		return fmt.Errorf("mockkafka: broker %d up: %w", id, err)
	}
	return nil
}

// Close destroys the cluster; clients still connected see their brokers
// vanish. It is idempotent.
func (c *Cluster) Close() {
	c.closeOnce.Do(c.mc.Close)
}

// metadata lists all topics with a short-lived admin client. The admin
// client is used because, unlike producers and consumers, it starts no Go
// goroutines, and a fresh one never answers from a stale cache.
func (c *Cluster) metadata(ctx context.Context) (*kafka.Metadata, error) {
	ac, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": c.Bootstrap()})
	if err != nil {
		return nil, fmt.Errorf("mockkafka: admin client: %w", err)
	}
	defer ac.Close()
	md, err := ac.GetMetadata(nil, true, timeoutMs(ctx))
	if err != nil {
		return nil, fmt.Errorf("mockkafka: list topics: %w", err)
	}
	return md, nil
}

// timeoutMs turns ctx's deadline into a librdkafka timeout.
func timeoutMs(ctx context.Context) int {
	d := defaultMetadataTimeout
	if dl, ok := ctx.Deadline(); ok {
		d = time.Until(dl)
	}
	return max(int(d.Milliseconds()), 1)
}

// Consume reads a topic from the beginning of every partition with a real
// consumer (kafkaserver.Read, the same read as against the real broker)
// until want messages have arrived or ctx ends. Partitions are
// assigned explicitly, so no group rebalance delays the first fetch and no
// offsets are committed: every call sees the whole retained topic. When ctx
// ends first it returns the messages read so far with ctx's error. Order is
// per partition, partitions interleaved.
func (c *Cluster) Consume(ctx context.Context, topic string, want int) ([]*kafka.Message, error) {
	n, err := c.Partitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	return kafkaserver.Read(ctx, c.Bootstrap(), topic, n, want)
}

// newQuietly starts the cluster with stderr pointed at /dev/null: the mock's
// internal client always prints a CONFWARN about bootstrap.servers while it
// starts (it has none by design), which only confuses someone running the
// demo. Other output in that millisecond is lost too; this package is for
// development and tests only.
func newQuietly(brokers int) (*kafka.MockCluster, error) {
	stderrMu.Lock()
	defer stderrMu.Unlock()
	saved, err := unix.Dup(2)
	if err != nil {
		return kafka.NewMockCluster(brokers)
	}
	defer unix.Close(saved)
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return kafka.NewMockCluster(brokers)
	}
	defer null.Close()
	if err := unix.Dup2(int(null.Fd()), 2); err != nil {
		return kafka.NewMockCluster(brokers)
	}
	defer unix.Dup2(saved, 2)
	return kafka.NewMockCluster(brokers)
}

var stderrMu sync.Mutex
