// Package sinks builds the sinks a config enables, for every command that
// writes to them or reads their checkpoints: `ingest run` and the demo
// (mode [Live]), `ingest backfill` ([Backfill]), and status, doctor and
// migrate ([ReadOnly]). It is the one place that maps the config's db and
// kafka keys onto dbsink.Config and kafkasink.Config, sets each sink's
// route from the config's selectors, and gives each mode its batches in
// flight, so the commands cannot drift apart.
//
// In [Live] mode the Kafka sink starts in the background ([kafkasink.Start]),
// so that a broker outage at start never holds up PostgreSQL; [Set.Lazy]
// gives the caller its readiness check and the fatal errors found after
// Build returned. What stays with the caller: `ingest run` sets up an
// embedded mock cluster; backfill names the sinks after its job and guards
// Kafka with the topics' retention.
package sinks

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/dualwrite/ingest/dbsink"
	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/kafkasink"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
)

// Mode is what the sinks are built for; it picks the batches in flight.
type Mode int

const (
	// Live is `ingest run`: latency and a memory bound matter.
	Live Mode = iota
	// Backfill is `ingest backfill`: a fixed set of files, throughput matters.
	Backfill
	// ReadOnly is status, doctor and migrate: the sinks are opened to read
	// checkpoints, check tables and topics or create tables; they load
	// nothing, so their specs have no route and no batches in flight.
	ReadOnly
)

// Batches in flight per stream and sink, by mode: how many batches the
// loader hands a sink before the first is acknowledged.
const (
	// LiveDBInFlight: a second batch queued behind the one PostgreSQL is
	// committing adds to every line's wait, and the sink stores a stream's
	// batches one at a time anyway.
	LiveDBInFlight = 1
	// LiveKafkaInFlight bounds memory, and the lines a crash can repeat:
	// after a kill -9 Kafka gets again at most LiveKafkaInFlight ×
	// batch.max_records lines per stream (cmd/ingest's kill test holds
	// the loader to it).
	LiveKafkaInFlight = 4
	// BackfillDBInFlight: the loader reads and decodes the next batch
	// while PostgreSQL loads one: 250k lines in a median 5.9 s instead of
	// 6.9 s with 1.
	BackfillDBInFlight = 2
	// BackfillKafkaInFlight: a backfill is throughput-bound on the
	// delivery-report round trip; eight batches (16,000 messages of the
	// default size) keep librdkafka busy where four left the pipeline
	// waiting for acks a third of the time.
	BackfillKafkaInFlight = 8
)

// MaxInFlight is the batches in flight of a sink kind in a mode (0 for
// [ReadOnly] and unknown kinds).
func MaxInFlight(m Mode, kind string) int {
	switch {
	case m == Live && kind == config.SinkDB:
		return LiveDBInFlight
	case m == Live && kind == config.SinkKafka:
		return LiveKafkaInFlight
	case m == Backfill && kind == config.SinkDB:
		return BackfillDBInFlight
	case m == Backfill && kind == config.SinkKafka:
		return BackfillKafkaInFlight
	}
	return 0
}

// KafkaSink is a Kafka sink as [Set] holds it: a [kafkasink.Sink], or in
// [Live] mode the [kafkasink.Lazy] that [kafkasink.Start] returns.
type KafkaSink interface {
	loader.Sink
	Close(ctx context.Context) error
}

// Options say which sinks to build and how.
type Options struct {
	Mode Mode
	// Kinds are the sinks to build ([config.SinkDB], [config.SinkKafka]),
	// each of which must be enabled; empty: every enabled sink.
	Kinds []string
	// Name gives a kind's sink name, its checkpoint key; nil: the kind.
	Name   func(kind string) string
	Logger *slog.Logger // nil: discard
	// TuneKafka adjusts the Kafka sink's config before it is built
	// (bootstrap servers of an embedded cluster, topic creation, the
	// retention margin).
	TuneKafka func(*kafkasink.Config)
	// Wrap wraps each built sink before it goes into Specs (the ack
	// tracer, backfill's retention guard).
	Wrap func(kind string, s loader.Sink) loader.Sink
}

// Set is the built sinks. Close it once the loader stopped.
type Set struct {
	// Specs are the loader's sinks: wrapped, each with its route and its
	// mode's batches in flight, PostgreSQL first.
	Specs []loader.SinkSpec
	// Kinds maps a sink name to its kind.
	Kinds map[string]string
	DB    *dbsink.Sink // nil unless built
	Kafka KafkaSink    // nil unless built
	// Lazy is Kafka in [Live] mode, started in the background: Build
	// already returned the missing topic or config error its first attempt
	// found when a broker accepted a connection; the caller watches Fatal
	// for one found later and serves Ready. nil in the other modes.
	Lazy *kafkasink.Lazy

	log     *slog.Logger
	closers []func()
}

// Close releases the sinks, the last built first. A Kafka sink gets 15 s
// to deliver what it holds; a failure is logged, as nothing is left to do.
func (s *Set) Close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// Build builds the sinks of cfg for o.Mode. Its error names the config key
// at fault ("db sink (db.url): ..."); a kafkasink error stays reachable
// with errors.As (ConfigError, MissingTopicError). Nothing is left open
// when it fails.
func Build(ctx context.Context, cfg *config.Config, sch *schema.Schema, o Options) (*Set, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	kinds := slices.Clone(o.Kinds)
	if len(kinds) == 0 {
		if cfg.DBEnabled() {
			kinds = append(kinds, config.SinkDB)
		}
		if cfg.KafkaEnabled() {
			kinds = append(kinds, config.SinkKafka)
		}
	}
	// PostgreSQL first, whatever order the caller gave: the specs' order
	// is the order the loader names them in and closes them in reverse.
	slices.SortStableFunc(kinds, func(a, b string) int { return kindRank(a) - kindRank(b) })
	set := &Set{Kinds: map[string]string{}, log: log}
	var routes map[string]loader.RouteFunc
	if o.Mode != ReadOnly {
		routes = config.Routes(cfg)
	}
	for _, kind := range slices.Compact(kinds) {
		name := kind
		if o.Name != nil {
			name = o.Name(kind)
		}
		var sink loader.Sink
		switch kind {
		case config.SinkDB:
			if !cfg.DBEnabled() {
				set.Close()
				return nil, fmt.Errorf("db sink: db.url is empty (set it in the config, --db-url or INGEST_DB_URL)")
			}
			db, err := dbsink.New(ctx, dbsink.Config{URL: cfg.DB.URL, Schema: sch, Name: name, Logger: log})
			if err != nil {
				set.Close()
				return nil, fmt.Errorf("db sink (db.url): %w", err)
			}
			set.closers = append(set.closers, db.Close)
			set.DB, sink = db, db
		case config.SinkKafka:
			if !cfg.KafkaEnabled() {
				set.Close()
				return nil, fmt.Errorf("kafka sink: kafka.brokers is empty")
			}
			kc := kafkasink.Config{
				Brokers: cfg.Kafka.Brokers, Properties: cfg.Kafka.Properties, Topics: cfg.KafkaTopics(),
				Name: name, Logger: log,
			}
			if o.TuneKafka != nil {
				o.TuneKafka(&kc)
			}
			var ks KafkaSink
			if o.Mode == Live {
				lz := kafkasink.Start(ctx, kc)
				// A missing topic must fail Build before any sink loads a
				// line, or the database would be ahead of a Kafka that never
				// starts. With no broker reachable this returns at once, and
				// the check comes later on lz.Fatal.
				if err := lz.StartErr(ctx); err != nil {
					closeKafka(lz, name, log)
					set.Close()
					return nil, fmt.Errorf("kafka sink (kafka.brokers): %w", err)
				}
				set.Lazy, ks = lz, lz
			} else {
				s, err := kafkasink.New(ctx, kc)
				if err != nil {
					set.Close()
					return nil, fmt.Errorf("kafka sink (kafka.brokers): %w", err)
				}
				ks = s
			}
			set.closers = append(set.closers, func() { closeKafka(ks, name, log) })
			set.Kafka, sink = ks, ks
		default:
			set.Close()
			return nil, fmt.Errorf("unknown sink %q (want %s or %s)", kind, config.SinkDB, config.SinkKafka)
		}
		set.Kinds[name] = kind
		if o.Wrap != nil {
			sink = o.Wrap(kind, sink)
		}
		set.Specs = append(set.Specs, loader.SinkSpec{Sink: sink, Route: routes[kind], MaxInFlight: MaxInFlight(o.Mode, kind)})
	}
	return set, nil
}

// closeKafka gives a Kafka sink 15 s to deliver what it holds.
func closeKafka(ks KafkaSink, name string, log *slog.Logger) {
	cctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := ks.Close(cctx); err != nil {
		log.Warn("kafka sink close", "sink", name, "err", err)
	}
}

func kindRank(kind string) int {
	if kind == config.SinkDB {
		return 0
	}
	return 1
}
