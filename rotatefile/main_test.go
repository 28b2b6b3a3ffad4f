package rotatefile

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them: every
// Writer starts two (the write loop and the sync loop), and Close must stop
// both, also after a write failed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
