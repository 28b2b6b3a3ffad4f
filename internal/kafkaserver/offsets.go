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
	_, hi, err := c.Watermarks(ctx, topic)
	return hi, err
}

// Watermarks returns the low and high watermark of each partition of an
// existing topic (index = partition): a partition holds hi-lo messages
// now, and lo moves up as retention deletes. A broker's error (e.g.
// NOT_LEADER for a partition just made) is wrapped, for errors.As.
func (c *Cluster) Watermarks(ctx context.Context, topic string) (lo, hi []int64, err error) {
	n, cons, err := c.topicConsumer(ctx, topic)
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = cons.Close() }() // never joined its group
	lo, hi = make([]int64, n), make([]int64, n)
	for p := range int32(n) {
		lo[p], hi[p], err = cons.QueryWatermarkOffsets(topic, p, timeoutMs(ctx, 10*time.Second))
		if err != nil {
			return nil, nil, fmt.Errorf("kafkaserver: watermarks of %s[%d]: %w", topic, p, err)
		}
	}
	return lo, hi, nil
}
