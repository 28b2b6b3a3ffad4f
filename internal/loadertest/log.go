package loadertest

import (
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/dualwrite/ingest/internal/testenv"
)

// Logger logs to the test's log at Info and above (INGEST_TEST_LOG=debug
// for Debug too, such as librdkafka's debug lines), which go test shows
// for a failed test or with -v. Lines that arrive after the test ended
// (from a sink's goroutines still closing) are dropped: testing panics on
// them.
func Logger(tb testing.TB) *slog.Logger {
	w := &tbWriter{tb: tb}
	tb.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	level := slog.LevelInfo
	if os.Getenv("INGEST_TEST_LOG") == "debug" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type tbWriter struct {
	mu   sync.Mutex
	tb   testing.TB
	done bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// Log collects log lines for a test to search.
type Log struct{ testenv.SyncBuffer }

// NewLog returns a log and a logger writing to it at Info and above; if
// the test fails, the log's last 8 KiB are printed.
func NewLog(tb testing.TB) (*Log, *slog.Logger) {
	l := &Log{}
	tb.Cleanup(func() {
		if tb.Failed() {
			s := l.String()
			if len(s) > 8<<10 {
				s = "...\n" + s[len(s)-8<<10:]
			}
			tb.Logf("log (tail):\n%s", s)
		}
	})
	return l, slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// Count returns how many log lines contain every one of parts.
func (l *Log) Count(parts ...string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		ok := line != ""
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			n++
		}
	}
	return n
}
