package backfill_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a job starts (pipelines, sinks, consumers) ends before
// Run returns.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
