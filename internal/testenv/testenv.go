package testenv

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/mockkafka"
	"github.com/dualwrite/ingest/internal/pgserver"
)

// startTimeout bounds starting a service; initdb plus start-up takes a few
// seconds, more on a loaded CI machine running packages in parallel.
const startTimeout = 2 * time.Minute

// RequireServices reports whether a missing service must fail a test
// instead of skipping it: true when CI or INGEST_REQUIRE_SERVICES is set to
// a true value (1, t, true, ...).
func RequireServices() bool {
	return envTrue("CI") || envTrue("INGEST_REQUIRE_SERVICES")
}

func envTrue(name string) bool {
	v, err := strconv.ParseBool(os.Getenv(name))
	return err == nil && v
}

// Postgres starts a throwaway PostgreSQL server for the test and stops and
// removes it in cleanup. See [PostgresWith].
func Postgres(tb testing.TB) *pgserver.Server {
	tb.Helper()
	return PostgresWith(tb, pgserver.Options{})
}

// PostgresWith is [Postgres] with options. When the server binaries are
// missing it skips the test, or fails it under [RequireServices]. If the
// test fails, cleanup logs the tail of the server log.
func PostgresWith(tb testing.TB, opts pgserver.Options) *pgserver.Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	srv, err := pgserver.Start(ctx, opts)
	startErr(tb, "postgres", err, pgserver.ErrNotInstalled)
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("postgres log (tail):\n%s", srv.LogTail())
		}
		if err := srv.Close(); err != nil {
			tb.Errorf("close postgres: %v", err)
		}
	})
	return srv
}

// startErr applies the package's one policy to a service's start error:
// a service that is not installed (err is notInstalled) skips the test, or
// fails it under [RequireServices]; any other error fails it.
func startErr(tb testing.TB, service string, err, notInstalled error) {
	tb.Helper()
	if errors.Is(err, notInstalled) {
		if RequireServices() {
			tb.Fatalf("%v\n(CI or INGEST_REQUIRE_SERVICES is set: a missing service fails the run)", err)
		}
		tb.Skipf("skipping: %v", err)
	}
	if err != nil {
		tb.Fatalf("start %s: %v", service, err)
	}
}

// Kafka starts a mock Kafka cluster with the given number of brokers for
// the test and destroys it in cleanup. It needs nothing installed:
// librdkafka, mock brokers included, is linked into the test binary.
func Kafka(tb testing.TB, brokers int) *mockkafka.Cluster {
	tb.Helper()
	c, err := mockkafka.New(brokers)
	if err != nil {
		tb.Fatalf("start mock kafka: %v", err)
	}
	tb.Cleanup(c.Close)
	return c
}

// Context returns a context that ends after d or when the test finishes,
// whichever is first: a hung call fails the test with a clear error instead
// of running into the global test timeout.
func Context(tb testing.TB, d time.Duration) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), d)
	tb.Cleanup(cancel)
	return ctx
}

// Eventually polls cond until it returns true and fails the test if that
// does not happen within timeout; msg (a format with args) says what was
// awaited. The poll interval starts at 1ms and backs off to 100ms, so fast
// conditions are seen at once and slow ones do not burn CPU. Call it from
// the test goroutine (it may call FailNow).
func Eventually(tb testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for: "+msg, append([]any{timeout}, args...)...)
		}
		timer := time.NewTimer(min(wait, time.Until(deadline)+time.Millisecond))
		select {
		case <-tb.Context().Done():
			timer.Stop()
			tb.Fatalf("test ended while waiting for: "+msg, args...)
		case <-timer.C:
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// SyncBuffer collects output (a child process's, a logger's) while the test
// reads it; safe for concurrent use.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
