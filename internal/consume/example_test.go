package consume_test

import (
	"context"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/consume"
)

// Run loads PostgreSQL from the config's tables' topics until a signal:
// what `ingest consume --config ingest.yaml --since -24h` does. It needs
// the database migrated (`ingest migrate`) and the topics and their .dlq
// topics created.
func ExampleRun() {
	cfg, err := config.Load("ingest.yaml")
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = consume.Run(ctx, cfg, consume.Options{
		Group:  "ingest-replica",
		Since:  time.Now().Add(-24 * time.Hour), // for partitions without a checkpoint
		Logger: slog.Default(),
	})
	if err != nil {
		log.Fatal(err)
	}
}
