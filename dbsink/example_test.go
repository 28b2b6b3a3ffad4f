package dbsink_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/dualwrite/ingest/dbsink"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
)

func rawItemSchema() *schema.Schema {
	s, err := schema.New(map[string]*schema.Table{
		"raw_item": {
			Key: "project_id", ID: "uuid", Time: "timestamp",
			Columns: map[string]string{"project_id": "bigint", "timestamp": "bigint", "body": "text",
				"version": "integer", "billable": "integer", "uuid": "uuid"},
		},
	})
	if err != nil {
		panic(err)
	}
	return s
}

// What `ingest schema sql` prints.
func ExampleDDL() {
	fmt.Print(dbsink.DDL(rawItemSchema()))
	// Output:
	// -- ingest: destination tables and the Postgres sink's checkpoint table.
	// -- Generated from the config; safe to run repeatedly.
	//
	// CREATE TABLE IF NOT EXISTS "raw_item" (
	// 	"billable" integer,
	// 	"body" text,
	// 	"project_id" bigint NOT NULL,
	// 	"timestamp" bigint,
	// 	"uuid" uuid,
	// 	"version" integer,
	// 	PRIMARY KEY ("uuid")
	// );
	//
	// CREATE TABLE IF NOT EXISTS "ingest_checkpoints" (
	// 	"sink" text NOT NULL,
	// 	"stream" text NOT NULL,
	// 	"file" text NOT NULL,
	// 	"offset" bigint NOT NULL,
	// 	"updated_at" timestamptz NOT NULL DEFAULT now(),
	// 	PRIMARY KEY ("sink", "stream")
	// );
}

// A sink's life: create, migrate (what `ingest migrate` does), find where
// a stream resumes, store batches, close. In `ingest run` the loader makes
// the Checkpoint and Submit calls.
func ExampleNew() {
	ctx := context.Background()
	sink, err := dbsink.New(ctx, dbsink.Config{
		URL:    os.Getenv("INGEST_DB_URL"),
		Schema: rawItemSchema(),
		Logger: slog.Default(),
	})
	if err != nil {
		log.Fatal(err) // a *dbsink.ConfigError per bad field
	}
	defer sink.Close()
	if err := sink.Migrate(ctx); err != nil {
		log.Fatal(err)
	}

	// The loader resumes each stream where this sink's last committed
	// batch ended.
	pos, ok, err := sink.Checkpoint(ctx, "api")
	if err != nil {
		log.Fatal(err)
	}
	if !ok {
		pos = loader.Position{File: "000001-20191128T133556Z.ndjson"}
	}
	fmt.Println("resume at", pos)
}

// Submit stores a batch in one transaction with the sink's checkpoint and
// acknowledges it before returning. Rows the sink cannot store go to the
// batch's dead-letter queue through Reject.
func ExampleSink_Submit() {
	ctx := context.Background()
	s := rawItemSchema()
	sink, err := dbsink.New(ctx, dbsink.Config{URL: os.Getenv("INGEST_DB_URL"), Schema: s})
	if err != nil {
		log.Fatal(err)
	}
	defer sink.Close()

	line := []byte(`{"table":"raw_item","row":{"project_id":1,"timestamp":1574948156,"body":"eJyN","version":2,"billable":1,"uuid":"bad3a155-585f-47cb-bc3e-51767d52c2a2"}}`)
	rec, err := s.Decode(line, "")
	if err != nil {
		log.Fatal(err) // the loader dead-letters such a line
	}
	start := loader.Position{File: "000001", Offset: 0}
	end := loader.Position{File: "000001", Offset: int64(len(line)) + 1}
	batch := loader.NewBatch("api", start, end,
		[]loader.Record{{Record: rec, Pos: start, Line: line, RecordID: rec.ID}},
		func(ctx context.Context, r *loader.Record, reason, detail string) error {
			log.Printf("dead letter at %v: %s: %s", r.Pos, reason, detail)
			return nil
		})

	// Retries of transient errors are unlimited: bound them with ctx.
	// Submit returns at once; ack comes once the transaction committed or
	// failed, from a goroutine of the sink (Close waits for it).
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	acked := make(chan error, 1)
	if err := sink.Submit(ctx, batch, func(err error) { acked <- err }); err != nil {
		log.Fatal(err) // only after Close
	}
	if err := <-acked; errors.Is(err, context.DeadlineExceeded) {
		log.Print("database still down; the loader replays from the checkpoint later")
	}
}

// Retryable tells a transient failure (worth waiting out) from one that
// needs a person, e.g. for Migrate at start-up.
func ExampleRetryable() {
	ctx := context.Background()
	sink, err := dbsink.New(ctx, dbsink.Config{URL: os.Getenv("INGEST_DB_URL"), Schema: rawItemSchema()})
	if err != nil {
		log.Fatal(err)
	}
	defer sink.Close()
	for {
		err := sink.Migrate(ctx)
		if err == nil {
			break
		}
		if !dbsink.Retryable(err) {
			log.Fatal(err)
		}
		time.Sleep(time.Second)
	}
}
