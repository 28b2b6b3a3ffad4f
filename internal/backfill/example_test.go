package backfill_test

import (
	"context"
	"errors"
	"log"
	"os"
	"time"

	"github.com/dualwrite/ingest/internal/backfill"
	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/loader"
)

// Replay March's archive of stream "api" to Kafka for two accounts that
// were just cut over, at most 5000 lines a second. Run it again after an
// interruption to resume.
func ExampleRun() {
	cfg, err := config.Load("/etc/ingest/ingest.yaml")
	if err != nil {
		log.Fatal(err)
	}
	sum, err := backfill.Run(context.Background(), cfg, backfill.Options{
		Paths:    []string{"/var/spool/ingest/.ingest/archive/api"},
		Sinks:    []string{"kafka"},
		Accounts: []string{"42", "57"},
		Window:   loader.Window{Since: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), Until: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)},
		Rate:     5000,
		Progress: backfill.ProgressLog,
		Out:      os.Stderr,
	})
	if sum != nil {
		sum.WriteText(os.Stdout)
	}
	if errors.Is(err, backfill.ErrIncomplete) {
		log.Fatal("interrupted: run again to resume")
	}
	if err != nil {
		log.Fatal(err)
	}
}

func ExampleSummary_WriteText() {
	sum := &backfill.Summary{
		Job: "3f2a9c1b7d04", Streams: 1, Files: 12, Bytes: 50 << 20, DoneBytes: 50 << 20, Elapsed: 14 * time.Second, Complete: true,
		LinesRead: 20000, Disk: backfill.DiskSummary{LinesRead: 20000, LinesDecoded: 20000},
		Sinks: []backfill.SinkSummary{
			{Sink: "kafka", Checkpoint: "backfill-kafka-3f2a9c1b7d04", LinesRead: 20000, Delivered: 1500, Filtered: 18000, NotRouted: 500, Complete: true},
		},
	}
	sum.WriteText(os.Stdout)
	// Output:
	// backfill complete: job 3f2a9c1b7d04 (generation 0), 1 stream(s), 12 file(s), 50.0 MiB of 50.0 MiB acknowledged by every sink, in 14s
	// lines read this run: 20,000; invalid lines dead-lettered this run: 0
	// from disk: 20,000 lines read, 20,000 decoded, 0 shared between sinks, 0 span(s) re-read by a sink behind the others
	// SINK   CHECKPOINT                   LINES READ  DELIVERED  SKIPPED BY FILTER  NOT ROUTED  REJECTED  COMPLETE
	// kafka  backfill-kafka-3f2a9c1b7d04  20000       1500       18000              500         0         true
}
