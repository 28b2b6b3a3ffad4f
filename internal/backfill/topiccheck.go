package backfill

// The topic check belongs with the Kafka sink (kafkasink/topics.go reads
// topic metadata at start-up and when a topic is first met); it lives here
// until kafkasink exposes topic configs, and reads them with its own admin
// client.

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/dualwrite/ingest/internal/config"
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

// topicLimits are what a topic does with a message's timestamp: delete it
// after retention, refuse it before/after the bounds (zero: no limit).
type topicLimits struct {
	topic, table string
	appendTime   bool // LogAppendTime: the broker's time, nothing to check
	retention    time.Duration
	before       time.Duration
	after        time.Duration
}

// margin is the retention safety margin, at most half the retention so a
// short one still takes recent records.
func (l *topicLimits) margins(margin time.Duration) (ret, before time.Duration) {
	return min(margin, l.retention/2), min(margin, l.before/2)
}

// check returns a *TopicError when a record of time t, produced now, would
// be deleted soon or refused.
func (l *topicLimits) check(t, now time.Time, margin time.Duration, where, brokers string) *TopicError {
	if l.appendTime || t.IsZero() {
		return nil
	}
	retMargin, beforeMargin := l.margins(margin)
	e := &TopicError{Topic: l.topic, Table: l.table, Time: t, Where: where, Brokers: brokers}
	if l.retention > 0 {
		if oldest := now.Add(-l.retention + retMargin); t.Before(oldest) {
			e.Setting, e.Limit, e.Oldest = "retention.ms", l.retention, oldest
			return e
		}
	}
	if l.before > 0 {
		if oldest := now.Add(-l.before + beforeMargin); t.Before(oldest) {
			e.Setting, e.Limit, e.Oldest = "message.timestamp.before.max.ms", l.before, oldest
			return e
		}
	}
	if l.after > 0 {
		// A minute's margin: the record is produced a moment after the check.
		if newest := now.Add(l.after - time.Minute); t.After(newest) {
			e.Setting, e.Limit, e.Newest = "message.timestamp.after.max.ms", l.after, newest
			return e
		}
	}
	return nil
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
	cm := kafka.ConfigMap{"bootstrap.servers": cfg.Kafka.Brokers}
	for k, v := range cfg.Kafka.Properties {
		if connectionProperty(k) {
			cm[k] = v
		}
	}
	ac, err := kafka.NewAdminClient(&cm)
	if err != nil {
		return nil, fmt.Errorf("kafka admin client (kafka.brokers, kafka.properties): %w", err)
	}
	defer ac.Close()
	res := make([]kafka.ConfigResource, len(topics))
	for i, t := range topics {
		res[i] = kafka.ConfigResource{Type: kafka.ResourceTopic, Name: t}
	}
	// A broker answers in milliseconds; librdkafka's mock cluster never
	// does: fail in seconds, not at the caller's deadline.
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := ac.DescribeConfigs(dctx, res)
	if err != nil {
		return nil, fmt.Errorf("kafka: describe the configs of topics %s (backfill reads their retention and timestamp limits; --no-topic-check skips that, at the risk of records the topic deletes soon or refuses): %w", strings.Join(topics, ", "), err)
	}
	limits := map[string]*topicLimits{}
	for _, r := range out {
		switch r.Error.Code() {
		case kafka.ErrNoError:
		case kafka.ErrUnknownTopicOrPart:
			continue
		default:
			return nil, fmt.Errorf("kafka: describe the configs of topic %s (backfill reads its retention and timestamp limits: grant DescribeConfigs on the topic, or --no-topic-check skips that, at the risk of records the topic deletes soon or refuses): %w", r.Name, r.Error)
		}
		l := &topicLimits{topic: r.Name, table: tableOf[r.Name], appendTime: r.Config["message.timestamp.type"].Value == "LogAppendTime"}
		for key, dst := range map[string]*time.Duration{
			"retention.ms": &l.retention, "message.timestamp.before.max.ms": &l.before, "message.timestamp.after.max.ms": &l.after,
		} {
			e, ok := r.Config[key]
			if !ok {
				continue
			}
			ms, err := strconv.ParseInt(e.Value, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("kafka: topic %s: %s=%q is not a number: %w", r.Name, key, e.Value, err)
			}
			// -1 (retention) is "forever"; Long.MAX (the bounds' default)
			// overflows a Duration: both are no limit.
			if ms > 0 && ms < int64(1<<63-1)/int64(time.Millisecond) {
				*dst = time.Duration(ms) * time.Millisecond
			}
		}
		log.Debug("kafka topic limits", "topic", l.topic, "append_time", l.appendTime, "retention", l.retention, "before_max", l.before, "after_max", l.after)
		limits[r.Name] = l
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

// connectionProperty: kafka.properties an admin client takes too
// (connection, security, client identity); the producer's tuning would
// only draw librdkafka warnings.
func connectionProperty(k string) bool {
	for _, p := range []string{"security.", "sasl.", "ssl.", "ssl_", "enable.ssl", "socket.", "broker.", "api.version", "client.", "reconnect.", "retry.backoff", "connections.max.idle.ms"} {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}
