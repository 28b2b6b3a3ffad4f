package kafkasink

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/dualwrite/ingest/loader"
)

// A broker checks a topic's max.message.bytes against each record batch it
// is sent (after compression), not against each record: with librdkafka's
// batch.size at 1,000,000 bytes and a topic limit of 20,000, every batch
// of ordinary records is refused as too large. So the sink reads each
// topic's limit when it checks the topic and keeps the producer's
// batch.size under the smallest (librdkafka has one batch.size per
// producer, not per topic). Then a batch is refused only when one record
// is too large on its own, and librdkafka sends such a record, larger than
// batch.size, in a batch by itself (a message that does not fit the
// current batch starts the next one, and nothing joins a batch that is
// already over batch.size). See generation.refused for what happens when
// a batch is refused anyway.

// describeTimeout bounds the DescribeConfigs admin request
// ([ReadTopicConfigs]). librdkafka's mock cluster (`kafka.brokers:
// embedded`) does not implement it; there the request fails at once or
// times out, and the sink keeps its batch.size.
var describeTimeout = 5 * time.Second

// minBatchSize is as low as the sink takes batch.size when it shrinks it
// after refusals: a record larger than this is sent alone, so the broker's
// refusal of it is about the record.
const minBatchSize = 1024

// fitBatch is the largest batch.size whose batches a topic with limit
// max.message.bytes accepts. Besides the records, a batch carries 61 bytes
// of header and 12 of log overhead, and compression can add a little to
// data that does not compress (lz4 and zstd frame headers, gzip blocks):
// 2% plus 1 KiB covers all of them.
func fitBatch(limit int) int {
	return max(limit-limit/50-1024, limit/2, 1)
}

// wantBatchSize is the batch.size a new producer gets: the configured one,
// lowered to fit every topic's known limit and by refusals seen so far.
// Caller holds topicsMu.
func (s *Sink) wantBatchSizeLocked() int {
	n := min(s.cfg.batchSize, s.batchCap)
	for _, limit := range s.limits {
		n = min(n, fitBatch(limit))
	}
	return n
}

func (s *Sink) wantBatchSize() int {
	s.topicsMu.Lock()
	defer s.topicsMu.Unlock()
	return s.wantBatchSizeLocked()
}

// knownTopics are the topics seen to exist.
func (s *Sink) knownTopics() []string {
	s.topicsMu.Lock()
	defer s.topicsMu.Unlock()
	return slices.Collect(maps.Keys(s.known))
}

// topicLimit is topic's max.message.bytes, or 0 when it is not known.
func (s *Sink) topicLimit(topic string) int {
	s.topicsMu.Lock()
	defer s.topicsMu.Unlock()
	return s.limits[topic]
}

// learnLimits reads the configs of topics (DescribeConfigs, with
// [ReadTopicConfigs]): max.message.bytes, which bounds the producer's
// batch.size, and the retention and timestamp bounds, which decide the
// records send dead-letters instead of producing. With all false only the
// topics whose max.message.bytes is not known are read (after a refusal
// forgot one); the topic check reads them all, so a config changed on the
// broker is picked up when topics are re-checked. A failure (no
// DescribeConfigs permission, the mock cluster) is logged and keeps what
// was known: batch.size stays as it is (refused batches then shrink it,
// generation.refused), and records are produced whatever their event time.
func (s *Sink) learnLimits(ctx context.Context, topics []string, all bool) {
	var ask []string
	s.topicsMu.Lock()
	for _, t := range topics {
		if _, ok := s.limits[t]; all || !ok {
			ask = append(ask, t)
		}
	}
	s.topicsMu.Unlock()
	if len(ask) == 0 {
		return
	}
	configs, err := ReadTopicConfigs(ctx, s.cfg.Brokers, s.cfg.Properties, ask)
	if err != nil {
		s.log.Warn("kafkasink: cannot read the topics' configs; batch.size stays as configured (batches the broker refuses as too large shrink it), and records are produced whatever their event time",
			"topics", ask, "batch_size", s.wantBatchSize(), "err", err)
	}
	if len(configs) == 0 {
		return
	}
	// Only what is new is logged: the refresh reads every topic again
	// every configRefreshEvery.
	var changed, fresh []string
	s.topicsMu.Lock()
	for t, c := range configs {
		if c.MaxMessageBytes > 0 {
			s.limits[t] = c.MaxMessageBytes
		}
		switch old, ok := s.configs[t]; {
		case !ok:
			fresh = append(fresh, t)
		case old != c:
			changed = append(changed, t)
			fresh = append(fresh, t)
		}
		s.configs[t] = c
	}
	want := s.wantBatchSizeLocked()
	s.topicsMu.Unlock()
	for _, t := range changed {
		c := configs[t]
		s.log.Info("kafkasink: topic config changed on the brokers; applied", "topic", t, "max.message.bytes", c.MaxMessageBytes,
			"retention", c.Retention, "timestamp_before_max", c.TimestampBefore, "timestamp_after_max", c.TimestampAfter, "append_time", c.AppendTime)
	}
	for _, t := range fresh {
		c := configs[t]
		if c.MaxMessageBytes > 0 && fitBatch(c.MaxMessageBytes) < s.cfg.batchSize {
			s.log.Info("kafkasink: topic limits the producer's batch size", "topic", t, "max.message.bytes", c.MaxMessageBytes, "batch_size", want)
		}
		if c.Retention > 0 || c.TimestampBefore > 0 || c.TimestampAfter > 0 {
			s.log.Debug("kafkasink: topic time limits", "topic", t, "append_time", c.AppendTime, "retention", c.Retention,
				"timestamp_before_max", c.TimestampBefore, "timestamp_after_max", c.TimestampAfter, "retention_margin", s.cfg.RetentionMargin)
		}
	}
}

// configRefreshEvery is how often the sink reads its topics' configs
// again, so that a retention or a limit changed on the brokers (raised
// after records were dead-lettered for it, say) applies without a
// restart. A variable so tests can shorten it.
var configRefreshEvery = 5 * time.Minute

// refreshConfigs reads again the configs of the topics read before (none
// on the mock cluster, which does not answer), and replaces the producer
// if a max.message.bytes lowered since needs smaller batches. Supervisor
// goroutine only: Close waits for it, and the read stops when Close
// starts.
func (s *Sink) refreshConfigs() {
	s.topicsMu.Lock()
	topics := slices.Sorted(maps.Keys(s.configs))
	s.topicsMu.Unlock()
	if len(topics) == 0 {
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	stop := afterClose(s.closing, cancel)
	s.learnLimits(ctx, topics, true)
	stop()
	cancel()
	s.fitProducer()
}

// topicConfig is what the sink read of topic's config, or nil.
func (s *Sink) topicConfig(topic string) *TopicConfig {
	s.topicsMu.Lock()
	defer s.topicsMu.Unlock()
	c, ok := s.configs[topic]
	if !ok {
		return nil
	}
	return &c
}

// headerBytes is the size of a record's header keys and values as the
// sink sends them.
func headerBytes(b *loader.Batch, r *loader.Record) int {
	n := len(HeaderTable) + len(r.Table.Name) + len(HeaderRecordID) + len(r.RecordID) + len(HeaderSource)
	return n + len(b.Stream) + 1 + len(r.Pos.File) + 1 + len(strconv.FormatInt(r.Pos.Offset, 10))
}

// recordBytes is a lower bound of a record's size in a record batch
// (librdkafka adds a few bytes of varints per record and header), which is
// what batch.size is compared with.
func recordBytes(b *loader.Batch, r *loader.Record) int {
	return len(r.Key) + len(r.Row) + headerBytes(b, r)
}
