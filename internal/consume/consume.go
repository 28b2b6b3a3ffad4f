package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dualwrite/ingest/dbsink"
	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/kafkasink"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
)

// Defaults of [Options].
const (
	// DefaultMaxInFlight is 4 although a partition's batches commit one
	// at a time: pausing a partition makes librdkafka drop what it had
	// prefetched of it and fetch it again on resume, and at 2 (one
	// committing, one queued) that happened at every batch, so the batch
	// after the queued one was still being fetched when its turn came
	// (docs/consume.md, throughput). The cost is memory: up to 4 batches
	// (batch.max_bytes each) per partition.
	DefaultMaxInFlight   = 4
	DefaultRevokeTimeout = 10 * time.Second
	DefaultStopTimeout   = 30 * time.Second
	// DeadLetterSuffix makes a source topic's default dead-letter topic.
	DeadLetterSuffix = ".dlq"
)

// Options configure [Run]. The zero value consumes every configured table
// in the default group, dead-lettering to <topic>.dlq.
type Options struct {
	// Group is the consumer group id (default: the config's
	// consume.group, else "ingest-<database name>", the database of
	// db.url; see [GroupOf]). The group also names the checkpoints in
	// PostgreSQL: two groups loading the same database keep apart.
	Group string
	// Tables limits consumption to these tables (default: every table of
	// the config).
	Tables []string
	// Since starts a partition that has no checkpoint in PostgreSQL (a new
	// group) at the first offset whose timestamp is at or after Since,
	// instead of the partition's beginning. With Reset it applies to every
	// partition.
	Since time.Time
	// Reset moves the group's checkpoints in PostgreSQL, before joining
	// the group, to Since (or to the beginning of each partition when
	// Since is zero). Every other consumer of the group must be stopped.
	Reset bool
	// DeadLetterTopic receives bad messages (default: <source
	// topic>.dlq, per source topic). It must exist.
	DeadLetterTopic string
	// DeadLetterFile, when set, receives bad messages as JSON lines
	// (loader.DeadLetter) instead of a topic, fsynced before the offset
	// moves past them.
	DeadLetterFile string
	// MaxInFlight bounds the batches per partition handed to PostgreSQL
	// and not yet committed (default 4): the partition is paused at the
	// bound, which is the backpressure of a slow database.
	MaxInFlight int
	// PoolSize is the number of PostgreSQL connections (default 4); a
	// batch uses one, so it bounds how many partitions load at once.
	PoolSize int32
	// RevokeTimeout bounds how long a revoked partition's batches in
	// flight may finish before they are abandoned (default 10s).
	RevokeTimeout time.Duration
	// StopTimeout bounds the same at shutdown (default 30s).
	StopTimeout time.Duration
	// Logger receives the consumer's logs; nil discards them.
	Logger *slog.Logger
	// Registry receives the metrics; nil makes one with the Go and process
	// collectors.
	Registry *prometheus.Registry
	// Started, if set, is called with the metrics address (or "") once
	// the consumer has subscribed.
	Started func(metricsAddr string)
	// Properties are extra librdkafka consumer properties, applied last
	// (tests use them to shorten session timeouts).
	Properties map[string]string
}

// SinkName returns the dbsink name, the first key of the checkpoint rows,
// of a consumer group: "consume:<group>".
func SinkName(group string) string { return "consume:" + group }

// Stream returns the dbsink stream, the second key of the checkpoint rows,
// of a partition: "<topic>/<partition>". Its checkpoint's Offset is the
// next Kafka offset to load.
func Stream(topic string, partition int32) string {
	return topic + "/" + strconv.Itoa(int(partition))
}

// DefaultGroup returns the default group of a database URL:
// "ingest-<database name>".
func DefaultGroup(dbURL string) (string, error) {
	pc, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return "", fmt.Errorf("db.url: %w", err)
	}
	if pc.Database == "" {
		return "", errors.New("db.url names no database: set consume.group in the config, --group or INGEST_CONSUME_GROUP")
	}
	return "ingest-" + pc.Database, nil
}

// GroupOf resolves the consumer group: flag (the --group flag or
// INGEST_CONSUME_GROUP, which the CLI passes as flag) over the config's
// consume.group over [DefaultGroup].
func GroupOf(cfg *config.Config, flag string) (string, error) {
	switch {
	case flag != "":
		return flag, nil
	case cfg.Consume.Group != "":
		return cfg.Consume.Group, nil
	}
	return DefaultGroup(cfg.DB.URL)
}

// ArgError is a problem with the config or the options, which the CLI
// reports as a usage error.
type ArgError struct{ Err error }

func (e *ArgError) Error() string { return e.Err.Error() }
func (e *ArgError) Unwrap() error { return e.Err }

func argErrorf(format string, args ...any) error { return &ArgError{fmt.Errorf(format, args...)} }

// topicTables maps each consumed topic to the tables whose records it
// carries (usually one).
type topicTables map[string][]*schema.Table

func (tt topicTables) topics() []string {
	ts := make([]string, 0, len(tt))
	for t := range tt {
		ts = append(ts, t)
	}
	slices.Sort(ts)
	return ts
}

// selectTables resolves Options.Tables against the schema.
func selectTables(sch *schema.Schema, names []string) (topicTables, error) {
	tt := topicTables{}
	if len(names) == 0 {
		for _, t := range sch.Tables() {
			tt[t.Topic] = append(tt[t.Topic], t)
		}
		return tt, nil
	}
	for _, n := range names {
		t, ok := sch.Lookup(n)
		if !ok {
			var known []string
			for _, t := range sch.Tables() {
				known = append(known, t.Name)
			}
			return nil, argErrorf("--tables: no table %q in the config (tables: %s)", n, strings.Join(known, ", "))
		}
		if !slices.Contains(tt[t.Topic], t) {
			tt[t.Topic] = append(tt[t.Topic], t)
		}
	}
	return tt, nil
}

// consumerProperties are the prefixes of kafka.properties a consumer takes
// too (connection, security, client identity); the rest tune the file
// loader's producer. The same list as `ingest verify`'s.
var consumerProperties = []string{
	"security.", "sasl.", "ssl.", "ssl_", "enable.ssl", "socket.", "broker.", "api.version", "client.",
	"metadata.", "topic.metadata", "reconnect.", "retry.backoff", "connections.max.idle.ms", "debug", "log_level",
}

func kafkaConfig(cfg *config.Config, extra map[string]string) kafka.ConfigMap {
	cm := kafka.ConfigMap{"bootstrap.servers": cfg.Kafka.Brokers}
	for k, v := range cfg.Kafka.Properties {
		for _, p := range consumerProperties {
			if strings.HasPrefix(k, p) {
				cm[k] = v
				break
			}
		}
	}
	for k, v := range extra {
		cm[k] = v
	}
	return cm
}

// Run consumes the configured tables' topics in the group and loads every
// message into PostgreSQL exactly once, until ctx ends (nil after a
// graceful stop) or a failure that retrying cannot fix (an error naming
// the topic, partition and offsets). See the package documentation.
func Run(ctx context.Context, cfg *config.Config, o Options) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o.Logger = log
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.RevokeTimeout <= 0 {
		o.RevokeTimeout = DefaultRevokeTimeout
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = DefaultStopTimeout
	}
	if !cfg.DBEnabled() {
		return argErrorf("db.url is empty: consume loads into PostgreSQL (set db.url, --db-url or INGEST_DB_URL)")
	}
	if !cfg.KafkaEnabled() || cfg.Kafka.Brokers == "embedded" {
		return argErrorf("kafka.brokers: consume needs a real Kafka cluster, got %q", cfg.Kafka.Brokers)
	}
	if err := kafkasink.CheckOAuthBearer(cfg.Kafka.Properties); err != nil {
		return argErrorf("kafka.properties: %w", err)
	}
	if o.DeadLetterFile != "" && o.DeadLetterTopic != "" {
		return argErrorf("a dead-letter topic and a dead-letter file are exclusive")
	}
	if o.Reset && o.Since.IsZero() {
		log.Warn("--reset without --since: every partition restarts at its beginning")
	}
	sch, err := cfg.Schema()
	if err != nil {
		return &ArgError{err}
	}
	tt, err := selectTables(sch, o.Tables)
	if err != nil {
		return err
	}
	if o.Group, err = GroupOf(cfg, o.Group); err != nil {
		return &ArgError{err}
	}
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		o.Registry = reg
	}

	db, err := dbsink.New(ctx, dbsink.Config{URL: cfg.DB.URL, Schema: sch, Name: SinkName(o.Group), Logger: log, PoolSize: o.PoolSize})
	if err != nil {
		return &ArgError{fmt.Errorf("db.url: %w", err)}
	}
	defer db.Close()
	// The pool connects lazily: open its first connection now, beside the
	// topic check and the group join, instead of in the assignment, which
	// reads each partition's checkpoint from it. A failure is left to
	// those reads, which retry.
	warmCtx, stopWarm := context.WithCancel(ctx)
	warmed := make(chan struct{})
	go func() {
		defer close(warmed)
		_ = db.Ping(warmCtx)
	}()
	defer func() {
		stopWarm()
		<-warmed
	}()

	c := &consumer{cfg: cfg, o: o, log: log.With("group", o.Group), db: db, tables: tt}
	// Start the group join (a few round trips to the coordinator, ~0.25 s
	// of every run in the bench row) before the topics are checked and
	// the dead letters opened, so that it overlaps them; the assignment
	// comes with run's first Poll. A reset rewrites the checkpoints before
	// this member joins.
	if !o.Reset {
		if err := c.subscribe(); err != nil {
			return err
		}
	}
	running := false
	defer func() {
		if c.k != nil && !running {
			c.k.Close()
		}
	}()

	if err := checkTopics(ctx, cfg, tt, o); err != nil {
		return err
	}
	dl, err := newDeadLetters(ctx, cfg, o)
	if err != nil {
		return err
	}
	defer dl.close()
	c.dl = dl

	if o.Reset {
		if err := reset(ctx, cfg, db, tt, o); err != nil {
			return err
		}
		if err := c.subscribe(); err != nil {
			return err
		}
	}

	c.m = newMetrics(reg, tt)
	running = true
	return c.run(ctx)
}

// checkTopics fails when a consumed topic or a dead-letter topic does not
// exist: subscribing to a missing topic would wait silently, and a missing
// dead-letter topic would stop loading at the first bad message.
func checkTopics(ctx context.Context, cfg *config.Config, tt topicTables, o Options) error {
	ac, err := kafka.NewAdminClient(ptr(kafkaConfig(cfg, nil)))
	if err != nil {
		return &ArgError{fmt.Errorf("kafka (kafka.brokers, kafka.properties): %w", err)}
	}
	defer ac.Close()
	want := tt.topics()
	if o.DeadLetterFile == "" {
		for _, t := range tt.topics() {
			want = append(want, deadLetterTopic(o, t))
		}
	}
	slices.Sort(want)
	want = slices.Compact(want)
	var missing []string
	for _, t := range want {
		for {
			md, err := ac.GetMetadata(&t, false, timeoutMs(ctx, 10*time.Second))
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("kafka: metadata of topic %s: %w", t, ctx.Err())
				}
				o.Logger.Warn("kafka: no metadata yet, retrying", "topic", t, "err", err)
				continue
			}
			if tm, ok := md.Topics[t]; !ok || tm.Error.Code() == kafka.ErrUnknownTopicOrPart || len(tm.Partitions) == 0 {
				missing = append(missing, t)
			}
			break
		}
	}
	if len(missing) > 0 {
		return argErrorf("kafka: missing topic(s) %s: create them (kafka-topics.sh --create --topic NAME), or pass --dead-letter-file for dead letters",
			strings.Join(missing, ", "))
	}
	return nil
}

func deadLetterTopic(o Options, source string) string {
	if o.DeadLetterTopic != "" {
		return o.DeadLetterTopic
	}
	return source + DeadLetterSuffix
}

// reset writes the group's checkpoints for every partition of every
// consumed topic: the offset of Since, or the partition's beginning.
func reset(ctx context.Context, cfg *config.Config, db *dbsink.Sink, tt topicTables, o Options) error {
	c, err := kafka.NewConsumer(ptr(kafkaConfig(cfg, map[string]string{"group.id": o.Group + "-reset", "enable.auto.commit": "false"})))
	if err != nil {
		return fmt.Errorf("kafka consumer: %w", err)
	}
	defer c.Close()
	for _, topic := range tt.topics() {
		md, err := c.GetMetadata(&topic, false, timeoutMs(ctx, 30*time.Second))
		if err != nil {
			return fmt.Errorf("reset: metadata of topic %s: %w", topic, err)
		}
		var tps []kafka.TopicPartition
		for _, p := range md.Topics[topic].Partitions {
			tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: p.ID})
		}
		starts, err := startOffsets(ctx, c, tps, o.Since)
		if err != nil {
			return fmt.Errorf("reset: %w", err)
		}
		for _, tp := range starts {
			pos := loader.Position{Offset: int64(tp.Offset)}
			if err := db.SetCheckpoint(ctx, Stream(topic, tp.Partition), pos); err != nil {
				return fmt.Errorf("reset: topic %s partition %d: %w", topic, tp.Partition, err)
			}
			o.Logger.Info("reset: checkpoint set", "group", o.Group, "topic", topic, "partition", tp.Partition, "offset", pos.Offset)
		}
	}
	return nil
}

// startOffsets resolves, per partition, the first offset to load when
// PostgreSQL holds no checkpoint: that of since (OffsetsForTimes: the
// first message whose timestamp is at or after it; the end of the
// partition when there is none), or the beginning (the low watermark)
// when since is zero. The result holds absolute offsets.
func startOffsets(ctx context.Context, c *kafka.Consumer, tps []kafka.TopicPartition, since time.Time) ([]kafka.TopicPartition, error) {
	out := make([]kafka.TopicPartition, len(tps))
	copy(out, tps)
	if !since.IsZero() {
		q := make([]kafka.TopicPartition, len(tps))
		for i, tp := range tps {
			q[i] = tp
			q[i].Offset = kafka.Offset(since.UnixMilli())
		}
		res, err := c.OffsetsForTimes(q, timeoutMs(ctx, 30*time.Second))
		if err != nil {
			return nil, fmt.Errorf("offsets for time %s: %w", since.Format(time.RFC3339Nano), err)
		}
		for i := range out {
			var r *kafka.TopicPartition
			for j := range res {
				if *res[j].Topic == *out[i].Topic && res[j].Partition == out[i].Partition {
					r = &res[j]
				}
			}
			if r == nil || r.Error != nil {
				return nil, fmt.Errorf("offsets for time: topic %s partition %d: no answer (%v)", *out[i].Topic, out[i].Partition, r)
			}
			out[i].Offset = r.Offset
		}
	}
	for i := range out {
		if since.IsZero() || out[i].Offset < 0 {
			// No message at or after since (-1): start at the end.
			// Beginning: the low watermark.
			lo, hi, err := c.QueryWatermarkOffsets(*out[i].Topic, out[i].Partition, timeoutMs(ctx, 30*time.Second))
			if err != nil {
				return nil, fmt.Errorf("watermarks of topic %s partition %d: %w", *out[i].Topic, out[i].Partition, err)
			}
			if since.IsZero() {
				out[i].Offset = kafka.Offset(lo)
			} else {
				out[i].Offset = kafka.Offset(hi)
			}
		}
	}
	return out, nil
}

func ptr[T any](v T) *T { return &v }

// timeoutMs is max, or less when ctx ends sooner, in librdkafka's int ms.
func timeoutMs(ctx context.Context, limit time.Duration) int {
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d < limit {
			limit = d
		}
	}
	return int(max(limit, time.Millisecond) / time.Millisecond)
}
