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

// The examples' config: payments, and an audit trail that the database
// keeps in a schema of its own.
var exampleTables = map[string]*schema.Table{
	"payment": {Key: "account", ID: "id", Time: "at", Columns: map[string]string{
		"account": "bigint", "id": "uuid", "at": "timestamptz", "amount": "numeric", "meta": "jsonb"}},
	"audit": {Key: "account", DBTable: "archive.audit", Columns: map[string]string{"account": "bigint", "note": "text"}},
}

func exampleSchema() *schema.Schema {
	s, err := schema.New(exampleTables)
	if err != nil {
		log.Fatal(err) // each problem prefixed with the table's name
	}
	return s
}

// What `ingest schema sql` prints: the schemas of qualified tables, the
// tables in name order (the id is the primary key, the key NOT NULL),
// then the checkpoint table.
func ExampleDDL() {
	fmt.Print(dbsink.DDL(exampleSchema()))
	// Output:
	// -- ingest: destination tables and the Postgres sink's checkpoint table.
	// -- Generated from the config; safe to run repeatedly.
	//
	// CREATE SCHEMA IF NOT EXISTS "archive";
	//
	// CREATE TABLE IF NOT EXISTS "archive"."audit" (
	// 	"account" bigint NOT NULL,
	// 	"note" text
	// );
	//
	// CREATE TABLE IF NOT EXISTS "payment" (
	// 	"account" bigint NOT NULL,
	// 	"amount" numeric,
	// 	"at" timestamptz,
	// 	"id" uuid,
	// 	"meta" jsonb,
	// 	PRIMARY KEY ("id")
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
		Schema: exampleSchema(),
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
	s := exampleSchema()
	sink, err := dbsink.New(ctx, dbsink.Config{URL: os.Getenv("INGEST_DB_URL"), Schema: s})
	if err != nil {
		log.Fatal(err)
	}
	defer sink.Close()

	line := []byte(`{"table":"payment","row":{"account":42,"id":"bad3a155-585f-47cb-bc3e-51767d52c2a2","at":"2019-11-28T13:35:56Z","amount":12.50,"meta":{"card":"visa"}}}`)
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
	sink, err := dbsink.New(ctx, dbsink.Config{URL: os.Getenv("INGEST_DB_URL"), Schema: exampleSchema()})
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
