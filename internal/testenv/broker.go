package testenv

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dualwrite/ingest/internal/kafkaserver"
	"go.uber.org/goleak"
)

// The package's shared broker: one real Kafka node per test binary,
// started by the first test that asks and stopped by [Main].
var shared struct {
	once sync.Once
	c    *kafkaserver.Cluster
	err  error
}

// Broker returns this test binary's real Apache Kafka broker (one combined
// KRaft node, internal/kafkaserver), starting it on first use (~10 s). Tests
// share it and keep apart by topic ([Topic]); a test that kills or restarts
// brokers starts its own with [Cluster] instead. The package's TestMain must
// be [Main], which stops it. Without Java or Maven the test skips, or fails
// under [RequireServices].
func Broker(tb testing.TB) *kafkaserver.Cluster {
	tb.Helper()
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		shared.c, shared.err = kafkaserver.Start(ctx, kafkaserver.Options{})
	})
	startErr(tb, "kafka", shared.err, kafkaserver.ErrNotInstalled)
	c := shared.c
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("shared kafka broker log:\n%s", c.LogTail(1, 40))
		}
	})
	return c
}

// Cluster starts a real Kafka cluster of its own for one test (nodes
// combined broker+controller nodes; 3 take ~20 s) with extra broker
// properties, and stops it in cleanup, logging each node's log tail if the
// test failed.
func Cluster(tb testing.TB, nodes int, props map[string]string) *kafkaserver.Cluster {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	c, err := kafkaserver.Start(ctx, kafkaserver.Options{Nodes: nodes, Props: props})
	startErr(tb, "kafka", err, kafkaserver.ErrNotInstalled)
	tb.Cleanup(func() {
		if tb.Failed() {
			for _, id := range c.IDs() {
				tb.Logf("%s", c.LogTail(id, 40))
			}
		}
		c.Close()
	})
	return c
}

var topicSeq atomic.Int64

var notTopicChar = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// Topic creates a topic named after the test (unique within the binary)
// on c and returns its name.
func Topic(tb testing.TB, c *kafkaserver.Cluster, spec kafkaserver.TopicSpec) string {
	tb.Helper()
	name := notTopicChar.ReplaceAllString(tb.Name(), "_")
	name = strings.Trim(name, "_")
	if len(name) > 180 {
		name = name[:180]
	}
	name = fmt.Sprintf("%s-%d", name, topicSeq.Add(1))
	if err := c.CreateTopic(Context(tb, startTimeout), name, spec); err != nil {
		tb.Fatalf("%v", err)
	}
	return name
}

// Main is TestMain for packages that use [Broker]: it runs the tests,
// stops the shared broker, and, with leaks set, fails the run if a test
// left a goroutine behind (goleak, checked after the broker is gone so its
// process reaper is not counted).
func Main(m *testing.M, leaks bool) {
	code := m.Run()
	if shared.c != nil {
		shared.c.Close()
	}
	if code == 0 && leaks {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
