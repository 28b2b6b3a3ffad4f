package kafkaserver

import (
	"context"
	"fmt"
	"time"
)

// EndOffsets returns the high watermark of each partition of an existing
// topic (index = partition): how many messages each holds, without reading
// them. Reading a topic that a producer is still filling can take long,
// since the read ends only when it has caught up with the producer.
func (c *Cluster) EndOffsets(ctx context.Context, topic string) ([]int64, error) {
	n, cons, err := c.topicConsumer(ctx, topic)
	if err != nil {
		return nil, err
	}
	defer func() { _ = cons.Close() }() // never joined its group
	ends := make([]int64, n)
	for p := range int32(n) {
		_, hi, err := cons.QueryWatermarkOffsets(topic, p, timeoutMs(ctx, 10*time.Second))
		if err != nil {
			return nil, fmt.Errorf("kafkaserver: watermarks of %s[%d]: %w", topic, p, err)
		}
		ends[p] = hi
	}
	return ends, nil
}
