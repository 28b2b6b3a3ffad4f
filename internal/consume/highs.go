package consume

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// highsEvery is how often the high watermarks of paused partitions are
// asked of the broker, and highsTimeout how long one answer may take.
const (
	highsEvery   = 5 * time.Second
	highsTimeout = 3 * time.Second
)

// highs asks the broker for the high watermarks of the partitions the poll
// loop names, on a goroutine of its own. A paused partition is not
// fetched, so the watermark librdkafka learns from fetches stops growing
// exactly when the partition's lag does; asking on the poll loop blocked it
// for up to the query's timeout, and under load a short timeout missed
// every answer and left the lag gauge where it was.
type highs struct {
	k   *kafka.Consumer
	log *slog.Logger
	mu  sync.Mutex
	// want are the partitions to ask about, set by the poll loop; got the
	// last answer per partition.
	want []tpKey
	got  map[tpKey]int64
}

func newHighs(k *kafka.Consumer, log *slog.Logger) *highs {
	return &highs{k: k, log: log, got: map[tpKey]int64{}}
}

// ask sets the partitions to ask about from now on (nil: none).
func (h *highs) ask(keys []tpKey) {
	h.mu.Lock()
	h.want = keys
	h.mu.Unlock()
}

// high returns the last high watermark the broker gave for key, -1 if none.
func (h *highs) high(key tpKey) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if v, ok := h.got[key]; ok {
		return v
	}
	return -1
}

// run asks every highsEvery until ctx ends. Its owner cancels ctx and waits
// for it before closing the consumer.
func (h *highs) run(ctx context.Context) {
	t := time.NewTicker(highsEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.mu.Lock()
		keys := h.want
		h.mu.Unlock()
		for _, key := range keys {
			if ctx.Err() != nil {
				return
			}
			_, hi, err := h.k.QueryWatermarkOffsets(key.topic, key.partition, int(highsTimeout/time.Millisecond))
			if err != nil {
				// The gauge keeps its last value until an answer comes.
				h.log.Debug("kafka: high watermark of a paused partition not answered; lag gauge not refreshed",
					"topic", key.topic, "partition", key.partition, "err", err)
				continue
			}
			h.mu.Lock()
			h.got[key] = max(h.got[key], hi)
			h.mu.Unlock()
		}
	}
}
