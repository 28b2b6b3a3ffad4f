package inspect

import (
	"context"

	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/sinks"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
)

// Sink names, as the loader's checkpoints and metrics know them.
const (
	SinkDB    = config.SinkDB
	SinkKafka = config.SinkKafka
)

// Checkpoints returns how to read each enabled sink's checkpoints: the
// Kafka sink's from the loader's file store under the state dir, the
// PostgreSQL sink's from its table. close releases the database pool.
func Checkpoints(ctx context.Context, cfg *config.Config, sch *schema.Schema) (map[string]loader.CheckpointFunc, func(), error) {
	checkpoints := map[string]loader.CheckpointFunc{}
	closeFn := func() {}
	if cfg.KafkaEnabled() {
		store := loader.FileStore{Dir: loader.StateLayout{Dir: cfg.Spool.StateDir}.Checkpoints()}
		checkpoints[SinkKafka] = func(ctx context.Context, stream string) (loader.Position, bool, error) {
			return store.Load(ctx, SinkKafka, stream)
		}
	}
	if cfg.DBEnabled() {
		set, err := sinks.Build(ctx, cfg, sch, sinks.Options{Mode: sinks.ReadOnly, Kinds: []string{SinkDB}})
		if err != nil {
			return nil, closeFn, err
		}
		closeFn = set.Close
		checkpoints[SinkDB] = set.DB.Checkpoint
	}
	return checkpoints, closeFn, nil
}
