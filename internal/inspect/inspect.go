package inspect

import (
	"context"
	"path/filepath"

	"github.com/dualwrite/ingest/dbsink"
	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
)

// Sink names, as the loader's checkpoints and metrics know them.
const (
	SinkDB    = "db"
	SinkKafka = "kafka"
)

// Checkpoints returns how to read each enabled sink's checkpoints: the
// Kafka sink's from the loader's file store under the state dir, the
// PostgreSQL sink's from its table. close releases the database pool.
func Checkpoints(ctx context.Context, cfg *config.Config, sch *schema.Schema) (map[string]loader.CheckpointFunc, func(), error) {
	sinks := map[string]loader.CheckpointFunc{}
	closeFn := func() {}
	if cfg.KafkaEnabled() {
		store := loader.FileStore{Dir: filepath.Join(cfg.Spool.StateDir, "checkpoints")}
		sinks[SinkKafka] = func(ctx context.Context, stream string) (loader.Position, bool, error) {
			return store.Load(ctx, SinkKafka, stream)
		}
	}
	if cfg.DBEnabled() {
		db, err := dbsink.New(ctx, dbsink.Config{URL: cfg.DB.URL, Schema: sch, Name: SinkDB})
		if err != nil {
			return nil, closeFn, err
		}
		closeFn = db.Close
		sinks[SinkDB] = db.Checkpoint
	}
	return sinks, closeFn, nil
}
