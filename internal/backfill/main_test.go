package backfill_test

import (
	"testing"

	"github.com/dualwrite/ingest/internal/testenv"
)

// Every goroutine a job starts (pipelines, sinks, consumers) ends before
// Run returns; testenv.Main checks that after stopping the shared broker.
func TestMain(m *testing.M) {
	testenv.Main(m, true)
}
