package pgserver_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dualwrite/ingest/internal/pgserver"
)

// A throwaway server for a demo or a benchmark: start, use, close. Tests
// use testenv.Postgres instead, which adds skip/fail policy and cleanup.
func ExampleStart() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := pgserver.Start(ctx, pgserver.Options{})
	if err != nil {
		log.Fatal(err) // errors.Is(err, pgserver.ErrNotInstalled): print it, it says how to install
	}
	defer srv.Close()

	conn, err := pgx.Connect(ctx, srv.URL())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(ctx)
	var v int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&v); err != nil {
		log.Fatal(err)
	}
	fmt.Println(v)
}

// A crash in the middle of a test: committed rows survive, the server runs
// WAL recovery on the next Start.
func ExampleServer_Kill() {
	ctx := context.Background()
	srv, err := pgserver.Start(ctx, pgserver.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	// ... commit some rows, leave a transaction open ...
	if err := srv.Kill(); err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		log.Fatal(err)
	}
	// ... committed rows are there, the open transaction is gone ...
}
