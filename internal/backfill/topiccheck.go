package backfill

// The topic configs come from kafkasink.ReadTopicConfigs and the
// arithmetic from kafkasink.TopicConfig.CheckTime, which the live sink
// uses too: a backfill differs only in stopping (exit 2) where the live
// sink dead-letters the record, and in its longer default margin.

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/kafkasink"
	"github.com/dualwrite/ingest/loader"
)

// DefaultRetentionMargin is how long before a topic's retention would let
// the broker delete a record that a backfill still refuses to produce it:
// consumers need time to read what was backfilled.
const DefaultRetentionMargin = 24 * time.Hour

// TopicError says a backfill stopped (or did not start) because a record
// would go to a topic that deletes it soon (its event time is the
// message's timestamp, and retention counts from there) or refuses it
// (message.timestamp.before.max.ms / after.max.ms). The CLI exits 2 on it.
type TopicError struct {
	Topic string
	Table string
	// Setting is the topic config at fault and Limit its value.
	Setting string
	Limit   time.Duration
	// Oldest is the earliest event time the topic takes safely now (zero
	// when the record is too new instead).
	Oldest time.Time
	// Newest is the latest event time it accepts (zero when the record
	// is too old).
	Newest time.Time
	// Time is the record's event time, or --since when the window already
	// reaches too far back; Where is the record's file and offset, or
	// "--since".
	Time    time.Time
	Where   string
	Brokers string
}

func (e *TopicError) Error() string {
	var b strings.Builder
	switch {
	case e.Setting == "retention.ms":
		fmt.Fprintf(&b, "topic %s (tables.%s) keeps messages for retention.ms=%d (%s) counted from their timestamp, the row's event time: "+
			"%s at %s is %s, older than %s (retention less a safety margin), so the broker would delete it at one of its next retention checks; nothing older is produced",
			e.Topic, e.Table, e.Limit.Milliseconds(), e.Limit, e.what(), e.Where, e.Time.UTC().Format(time.RFC3339), e.Oldest.UTC().Format(time.RFC3339))
		fmt.Fprintf(&b, ". Fixes: raise the topic's retention to cover the oldest record (kafka-configs.sh --bootstrap-server %s --alter --entity-type topics --entity-name %s --add-config retention.ms=-1, or a value above the records' age plus %s)", e.Brokers, e.Topic, DefaultRetentionMargin)
	case e.Newest.IsZero():
		fmt.Fprintf(&b, "topic %s (tables.%s) refuses messages whose timestamp, the row's event time, is more than %s=%d (%s) in the past: %s at %s is %s, older than %s; nothing older is produced",
			e.Topic, e.Table, e.Setting, e.Limit.Milliseconds(), e.Limit, e.what(), e.Where, e.Time.UTC().Format(time.RFC3339), e.Oldest.UTC().Format(time.RFC3339))
		fmt.Fprintf(&b, ". Fixes: raise the topic's %s (kafka-configs.sh --bootstrap-server %s --alter --entity-type topics --entity-name %s --add-config %s=9223372036854775807)", e.Setting, e.Brokers, e.Topic, e.Setting)
	default:
		fmt.Fprintf(&b, "topic %s (tables.%s) refuses messages whose timestamp, the row's event time, is more than %s=%d (%s) in the future: %s at %s is %s, after %s; nothing later is produced",
			e.Topic, e.Table, e.Setting, e.Limit.Milliseconds(), e.Limit, e.what(), e.Where, e.Time.UTC().Format(time.RFC3339), e.Newest.UTC().Format(time.RFC3339))
		fmt.Fprintf(&b, ". Fixes: raise the topic's %s, or backfill those records later", e.Setting)
	}
	b.WriteString("; or narrow --since/--until to what the topic keeps, or backfill PostgreSQL only (--sink db)")
	return b.String()
}

func (e *TopicError) what() string {
	if e.Where == "--since" {
		return "the window's start"
	}
	return "the record"
}

// topicLimits are a routed topic's config and the table it was met for.
type topicLimits struct {
	kafkasink.TopicConfig
	table string
}

// check returns a *TopicError when a record of time t, produced now,
// would be deleted soon or refused.
func (l *topicLimits) check(t, now time.Time, margin time.Duration, where, brokers string) *TopicError {
	lim := l.CheckTime(t, now, margin)
	if lim == nil {
		return nil
	}
	return &TopicError{Topic: l.Topic, Table: l.table, Setting: lim.Setting, Limit: lim.Limit,
		Oldest: lim.Oldest, Newest: lim.Newest, Time: t, Where: where, Brokers: brokers}
}

// topicGuard holds the limits of the routed topics and the first record
// refused, and stops the job on it.
type topicGuard struct {
	limits  map[string]*topicLimits // by topic
	margin  time.Duration
	brokers string
	now     func() time.Time

	mu    sync.Mutex
	first *TopicError
	stop  context.CancelCauseFunc
}

// readTopicLimits describes the topics the config routes to Kafka
// (retention.ms, message.timestamp.type and its bounds). A topic that does
// not exist is left to the sink, which names it with the command to create
// it; any other failure is an error: without the configs the backfill
// cannot know it is safe.
func readTopicLimits(ctx context.Context, cfg *config.Config, log *slog.Logger) (map[string]*topicLimits, error) {
	topics := cfg.KafkaTopics()
	if len(topics) == 0 {
		return nil, nil
	}
	tableOf := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Tables)) {
		t := cfg.Tables[name]
		topic := t.Topic
		if topic == "" {
			topic = name
		}
		if _, ok := tableOf[topic]; !ok {
			tableOf[topic] = name
		}
	}
	configs, err := kafkasink.ReadTopicConfigs(ctx, cfg.Kafka.Brokers, cfg.Kafka.Properties, topics)
	if err != nil {
		return nil, fmt.Errorf("kafka: topics %s: backfill reads their retention and timestamp limits (grant DescribeConfigs on the topics, or --no-topic-check skips that, at the risk of records the topic deletes soon or refuses): %w", strings.Join(topics, ", "), err)
	}
	limits := map[string]*topicLimits{}
	for name, c := range configs {
		l := &topicLimits{TopicConfig: c, table: tableOf[name]}
		log.Debug("kafka topic limits", "topic", name, "append_time", c.AppendTime, "retention", c.Retention, "before_max", c.TimestampBefore, "after_max", c.TimestampAfter)
		limits[name] = l
	}
	return limits, nil
}

// checkWindow refuses a window that already reaches further back than a
// topic keeps: before anything is produced.
func (g *topicGuard) checkWindow(w loader.Window) error {
	if w.Since.IsZero() {
		return nil
	}
	now := g.now()
	for _, topic := range slices.Sorted(maps.Keys(g.limits)) {
		if e := g.limits[topic].check(w.Since, now, g.margin, "--since", g.brokers); e != nil {
			return e
		}
	}
	return nil
}

// checkBatch returns the first record of b that its topic would delete
// soon or refuse.
func (g *topicGuard) checkBatch(b *loader.Batch) *TopicError {
	now := g.now()
	for i := range b.Records {
		r := &b.Records[i]
		if r.Table == nil || r.Time.IsZero() {
			continue
		}
		if l := g.limits[r.Table.Topic]; l != nil {
			if e := l.check(r.Time, now, g.margin, b.Stream+"/"+r.Pos.String(), g.brokers); e != nil {
				return e
			}
		}
	}
	return nil
}

// refused is the first record refused, if any.
func (g *topicGuard) refused() *TopicError {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.first
}

// guardedSink refuses a batch holding a record its topic would delete soon
// or refuse, and stops the job: nothing of that batch is produced.
type guardedSink struct {
	loader.Sink
	g *topicGuard
}

func (s guardedSink) Submit(ctx context.Context, b *loader.Batch, ack func(error)) error {
	if e := s.g.checkBatch(b); e != nil {
		s.g.mu.Lock()
		if s.g.first == nil {
			s.g.first = e
		}
		s.g.mu.Unlock()
		s.g.stop(e)
		return e
	}
	return s.Sink.Submit(ctx, b, ack)
}
