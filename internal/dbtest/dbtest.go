// Package dbtest holds test helpers that need the PostgreSQL sink, which
// internal/testenv cannot import (dbsink's own tests import testenv).
package dbtest

import (
	"testing"
	"time"

	"github.com/dualwrite/ingest/dbsink"
	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/testenv"
)

// Migrate creates cfg's tables and the checkpoint table in the database at
// url, as `ingest migrate` does, failing the test on error.
func Migrate(tb testing.TB, url string, cfg *config.Config) {
	tb.Helper()
	sch, err := cfg.Schema()
	if err != nil {
		tb.Fatal(err)
	}
	ctx := testenv.Context(tb, time.Minute)
	db, err := dbsink.New(ctx, dbsink.Config{URL: url, Schema: sch})
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
}
