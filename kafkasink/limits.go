package kafkasink

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

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

// describeTimeout bounds the DescribeConfigs admin request. librdkafka's
// mock cluster (`kafka.brokers: embedded`) does not implement it; there the
// request fails at once or times out, and the sink keeps its batch.size.
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

// learnLimits reads the max.message.bytes of topics whose limit is not
// known yet. The value a broker describes for a topic is the one it
// enforces: the topic's own setting, or else the broker's
// message.max.bytes (or Kafka's default, 1048588). A failure (no
// DescribeConfigs permission, the mock cluster) is logged and leaves the
// producer's batch.size as it is: refused batches then shrink it
// (generation.refused).
func (s *Sink) learnLimits(ctx context.Context, topics []string) {
	var ask []kafka.ConfigResource
	s.topicsMu.Lock()
	for _, t := range topics {
		if _, ok := s.limits[t]; !ok {
			ask = append(ask, kafka.ConfigResource{Type: kafka.ResourceTopic, Name: t})
		}
	}
	s.topicsMu.Unlock()
	if len(ask) == 0 {
		return
	}
	limits, err := s.describeLimits(ctx, ask)
	if err != nil {
		s.log.Warn("kafkasink: cannot read the topics' max.message.bytes; batch.size stays as configured, and batches the broker refuses as too large shrink it",
			"topics", topics, "batch_size", s.wantBatchSize(), "err", err)
	}
	if len(limits) == 0 {
		return
	}
	s.topicsMu.Lock()
	for t, l := range limits {
		s.limits[t] = l
	}
	want := s.wantBatchSizeLocked()
	s.topicsMu.Unlock()
	for t, l := range limits {
		if fitBatch(l) < s.cfg.batchSize {
			s.log.Info("kafkasink: topic limits the producer's batch size", "topic", t, "max.message.bytes", l, "batch_size", want)
		}
	}
}

// describeLimits asks the brokers for the topics' max.message.bytes.
func (s *Sink) describeLimits(ctx context.Context, res []kafka.ConfigResource) (map[string]int, error) {
	conf := kafka.ConfigMap{}
	for k, v := range s.cfg.conf {
		conf[k] = v
	}
	// The admin client is a librdkafka producer underneath: an idempotent
	// one would ask the cluster for a producer id it never uses.
	conf["enable.idempotence"] = false
	ac, err := kafka.NewAdminClient(&conf)
	if err != nil {
		return nil, fmt.Errorf("admin client: %w", err)
	}
	defer ac.Close()
	dctx, cancel := context.WithTimeout(ctx, describeTimeout)
	defer cancel()
	results, err := ac.DescribeConfigs(dctx, res)
	if err != nil {
		return nil, fmt.Errorf("describe topic configs: %w", err)
	}
	limits := map[string]int{}
	var errs []error
	for _, r := range results {
		if r.Error.Code() != kafka.ErrNoError {
			errs = append(errs, fmt.Errorf("topic %s: %w", r.Name, r.Error))
			continue
		}
		e, ok := r.Config["max.message.bytes"]
		if !ok {
			errs = append(errs, fmt.Errorf("topic %s: no max.message.bytes in its config", r.Name))
			continue
		}
		n, err := strconv.Atoi(e.Value)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("topic %s: max.message.bytes %q", r.Name, e.Value))
			continue
		}
		limits[r.Name] = n
	}
	if len(errs) > 0 {
		return limits, fmt.Errorf("describe topic configs: %w", errors.Join(errs...))
	}
	return limits, nil
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
