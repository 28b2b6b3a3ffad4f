package config

import (
	"fmt"
	"log/slog"
	"sort"

	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
	"github.com/prometheus/client_golang/prometheus"
)

// Sink kinds, which are also the checkpoint keys and metric labels of
// `ingest run`, and the values of `ingest backfill --sink`.
const (
	SinkDB    = "db"
	SinkKafka = "kafka"
)

// LoaderConfig maps the config file onto the loader's Config. Every command
// that reads the spool (run, backfill, status, doctor) starts from it, so
// they agree on streams, state dir and batch sizes.
func LoaderConfig(cfg *Config, sch *schema.Schema, log *slog.Logger, reg prometheus.Registerer) loader.Config {
	var streams []loader.StreamConfig
	for _, s := range cfg.Streams {
		streams = append(streams, loader.StreamConfig{Name: s.Name, Pattern: s.Pattern, DefaultTable: s.DefaultTable, SealAfter: s.SealAfter})
	}
	return loader.Config{
		Dir: cfg.Spool.Dir, StateDir: cfg.Spool.StateDir, Retention: cfg.Spool.Retention, CacheBytes: int(cfg.Spool.CacheBytes),
		Streams: streams, Schema: sch, Batch: BatchConfig(cfg),
		Logger: log, Registry: reg,
	}
}

// BatchConfig maps the batch keys onto the loader's, which a reload swaps
// while the loader runs.
func BatchConfig(cfg *Config) loader.BatchConfig {
	return loader.BatchConfig{MaxRecords: cfg.Batch.MaxRecords, MaxBytes: int(cfg.Batch.MaxBytes), Linger: cfg.Batch.Linger}
}

// Routes turns each table's selectors into the loader's routes, keyed by
// sink kind ([SinkDB], [SinkKafka]). The config is captured whole, so a
// reload swaps every route at once.
func Routes(cfg *Config) map[string]loader.RouteFunc {
	tables := cfg.Tables
	return map[string]loader.RouteFunc{
		SinkDB: func(t *schema.Table, key string) bool {
			tc := tables[t.Name]
			return tc != nil && tc.DB.Match(key)
		},
		SinkKafka: func(t *schema.Table, key string) bool {
			tc := tables[t.Name]
			return tc != nil && tc.Kafka.Match(key)
		},
	}
}

// Diff lists the route and batch changes from a to b ("key: old -> new"),
// and the keys that changed but only take effect after a restart: a
// running loader can swap routes and batch sizes, not its sinks or files.
func Diff(a, b *Config) (changes, restart []string) {
	names := map[string]bool{}
	for n := range a.Tables {
		names[n] = true
	}
	for n := range b.Tables {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, n := range sorted {
		ta, tb := a.Tables[n], b.Tables[n]
		if ta == nil || tb == nil {
			restart = append(restart, "tables."+n)
			continue
		}
		if s1, s2 := ta.DB.String(), tb.DB.String(); s1 != s2 {
			changes = append(changes, fmt.Sprintf("tables.%s.db: %s -> %s", n, s1, s2))
		}
		if s1, s2 := ta.Kafka.String(), tb.Kafka.String(); s1 != s2 {
			changes = append(changes, fmt.Sprintf("tables.%s.kafka: %s -> %s", n, s1, s2))
		}
		if fmt.Sprint(ta.Table) != fmt.Sprint(tb.Table) {
			restart = append(restart, "tables."+n+" (schema)")
		}
	}
	if a.Batch != b.Batch {
		changes = append(changes, fmt.Sprintf("batch: %+v -> %+v", a.Batch, b.Batch))
	}
	if fmt.Sprint(a.Spool) != fmt.Sprint(b.Spool) {
		restart = append(restart, "spool")
	}
	if fmt.Sprint(a.Streams) != fmt.Sprint(b.Streams) {
		restart = append(restart, "streams")
	}
	if fmt.Sprint(a.Kafka) != fmt.Sprint(b.Kafka) {
		restart = append(restart, "kafka")
	}
	if a.DB != b.DB {
		restart = append(restart, "db")
	}
	if a.Metrics != b.Metrics {
		restart = append(restart, "metrics")
	}
	return changes, restart
}
