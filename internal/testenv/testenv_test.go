package testenv

import (
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeTB records Fatalf/Skipf instead of ending the real test, so the
// policy can be checked. Like the real ones they end the calling goroutine.
type fakeTB struct {
	testing.TB
	fatal, skip string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fakeTB) Skipf(format string, args ...any) {
	f.skip = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// runTB runs fn on its own goroutine, as the testing package runs a test,
// and waits until it returned or called Goexit.
func runTB(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
}

func TestPostgresMissingBinariesPolicy(t *testing.T) {
	empty := t.TempDir()
	for _, tc := range []struct {
		name      string
		ci, req   string
		wantFatal bool
	}{
		{name: "developer skips", wantFatal: false},
		{name: "CI=true fails", ci: "true", wantFatal: true},
		{name: "INGEST_REQUIRE_SERVICES=1 fails", req: "1", wantFatal: true},
		{name: "CI=false skips", ci: "false", wantFatal: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PG_BIN", empty)
			t.Setenv("CI", tc.ci)
			t.Setenv("INGEST_REQUIRE_SERVICES", tc.req)
			f := &fakeTB{TB: t}
			runTB(func() { Postgres(f) })
			got := f.skip
			if tc.wantFatal {
				got = f.fatal
				if f.skip != "" {
					t.Fatalf("skipped, want failure: %s", f.skip)
				}
			} else if f.fatal != "" {
				t.Fatalf("failed, want skip: %s", f.fatal)
			}
			if !strings.Contains(got, "apt-get install -y postgresql") {
				t.Fatalf("message lacks the install hint: %q", got)
			}
		})
	}
}

func TestEventually(t *testing.T) {
	t.Run("condition met", func(t *testing.T) {
		var n atomic.Int32
		Eventually(t, 5*time.Second, func() bool { return n.Add(1) >= 5 }, "counter reaches 5")
		if got := n.Load(); got != 5 {
			t.Fatalf("cond called %d times, want 5", got)
		}
	})
	t.Run("timeout fails", func(t *testing.T) {
		f := &fakeTB{TB: t}
		start := time.Now()
		runTB(func() { Eventually(f, 50*time.Millisecond, func() bool { return false }, "never %s", "true") })
		if !strings.Contains(f.fatal, "timed out after 50ms waiting for: never true") {
			t.Fatalf("fatal message = %q", f.fatal)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Fatalf("took %v to time out after 50ms", el)
		}
	})
}

func TestKafkaCleanup(t *testing.T) {
	var bootstrap string
	t.Run("inner", func(t *testing.T) {
		c := Kafka(t, 2)
		bootstrap = c.Bootstrap()
		for _, addr := range strings.Split(bootstrap, ",") {
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatalf("broker %s not listening: %v", addr, err)
			}
			conn.Close()
		}
	})
	// The subtest's cleanup has run: the brokers must be gone.
	for _, addr := range strings.Split(bootstrap, ",") {
		if conn, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
			conn.Close()
			t.Errorf("broker %s still listening after cleanup", addr)
		}
	}
}
