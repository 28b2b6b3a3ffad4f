package kafkasink

import (
	"context"
	"fmt"
	"slices"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// TopicPartitions is what the brokers say of one topic's partitions.
type TopicPartitions struct {
	Topic      string
	Partitions int
	// Leaderless are the partitions with no leader, or listed with an
	// error: produce requests for them wait until one is elected.
	Leaderless []int32
}

// Partitions asks the brokers (one metadata request) for the partitions of
// the sink's topics ([Config].Topics), in topic order: what ingest doctor
// reports. A topic the brokers do not list has 0 partitions.
func (s *Sink) Partitions(ctx context.Context) ([]TopicPartitions, error) {
	g, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	g.use.RLock()
	defer g.use.RUnlock()
	md, err := g.p.GetMetadata(nil, true, timeoutMs(timeout(ctx)))
	if err != nil {
		return nil, fmt.Errorf("kafkasink: list topics on %s: %w", s.cfg.Brokers, err)
	}
	topics := slices.Clone(s.cfg.Topics)
	slices.Sort(topics)
	out := make([]TopicPartitions, 0, len(topics))
	for _, t := range slices.Compact(topics) {
		tp := TopicPartitions{Topic: t}
		for _, p := range md.Topics[t].Partitions {
			tp.Partitions++
			if p.Leader < 0 || p.Error.Code() != kafka.ErrNoError {
				tp.Leaderless = append(tp.Leaderless, p.ID)
			}
		}
		slices.Sort(tp.Leaderless)
		out = append(out, tp)
	}
	return out, nil
}
