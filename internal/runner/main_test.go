package runner

import (
	"testing"

	"github.com/dualwrite/ingest/internal/testenv"
)

// The shared real broker (testenv.Broker) is stopped after the tests, and
// only then goleak runs: Run starts goroutines of its own (loader, reload,
// the Kafka sink's start) and every one must be gone once it returned.
func TestMain(m *testing.M) { testenv.Main(m, true) }
