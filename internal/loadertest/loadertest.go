// Package loadertest is what the tests of the loader and its sinks share:
// a loader running on a spool in the background, an in-memory sink, the
// dead letters and file checkpoints a run leaves in its state directory,
// the end of a stream, sealed files written into a stream's archive, a
// test's config (ConfigYAML, LoadConfig), test loggers, positive values
// from the environment, and PostgreSQL helpers (a connection closed in
// cleanup, or one per question for polls and for servers a test stops)
// that the sinks', backfill's, verify's, consume's and the runner's tests
// share.
// Polling with a deadline is testenv.Eventually.
//
// It imports the loader, so the loader's own in-package tests (package
// loader) cannot use it; they keep their helpers in loader/helpers_test.go.
package loadertest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/rotatefile"
)

// stopTimeout bounds how long Stop waits for Run to return: a sink's
// Close may wait for its brokers or database (the Kafka sink's shutdown
// timeout is 30 s by default), and a stuck loader must fail the test
// rather than hang it.
const stopTimeout = 90 * time.Second

// Running is a loader running in the background, started by Start.
type Running struct {
	Loader *loader.Loader

	cancel  context.CancelFunc
	done    chan struct{}
	err     error // Run's error, valid once done is closed
	once    sync.Once
	stopErr error
}

// Start creates a loader and runs it until Stop or the test's cleanup
// cancels it.
func Start(tb testing.TB, cfg loader.Config, sinks ...loader.SinkSpec) *Running {
	tb.Helper()
	l, err := loader.New(cfg, sinks...)
	if err != nil {
		tb.Fatalf("loader.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{Loader: l, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = l.Run(ctx)
	}()
	tb.Cleanup(func() { _ = r.Stop() })
	return r
}

// Stop cancels the run and returns Run's error; later calls return the
// same.
func (r *Running) Stop() error {
	r.once.Do(func() {
		r.cancel()
		select {
		case <-r.done:
			r.stopErr = r.err
		case <-time.After(stopTimeout):
			r.stopErr = errors.New("loader did not stop within 90 s")
		}
	})
	return r.stopErr
}

// Alive reports whether Run has not returned yet.
func (r *Running) Alive() bool {
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// Err is Run's error once it returned (Alive is false), else nil.
func (r *Running) Err() error {
	if r.Alive() {
		return nil
	}
	return r.err
}

// Position is the loader's checkpoint of sink on stream.
func (r *Running) Position(stream, sink string) loader.Position {
	return r.Loader.Positions()[stream][sink]
}

// DeadLetters returns every dead letter of stream under stateDir.
func DeadLetters(tb testing.TB, stateDir, stream string) []loader.DeadLetter {
	tb.Helper()
	dls, err := loader.ReadDeadLetters(stateDir, stream)
	if err != nil {
		tb.Fatal(err)
	}
	return dls
}

// FileCheckpoint reads a sink's checkpoint of stream from the loader's
// file store (loader.StateLayout.Checkpoints), where the loader keeps the
// checkpoints of sinks that do not own theirs: the position a restart
// resumes from (loader.FileStore.Load); ok is false while there is none.
func FileCheckpoint(tb testing.TB, stateDir, sink, stream string) (pos loader.Position, ok bool) {
	tb.Helper()
	pos, ok, err := loader.FileStore{Dir: loader.StateLayout{Dir: stateDir}.Checkpoints()}.Load(context.Background(), sink, stream)
	if err != nil {
		tb.Fatal(err)
	}
	return pos, ok
}

// StreamEnd is the position after the last byte of the newest file of a
// stream (active or sealed): where every sink's checkpoint ends once
// everything appended so far is loaded (the loader never deletes the file
// its checkpoints are in).
func StreamEnd(tb testing.TB, spool, stream string) loader.Position {
	tb.Helper()
	dir := filepath.Join(spool, stream)
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var end loader.Position
	for _, e := range entries {
		key, _ := strings.CutSuffix(e.Name(), rotatefile.ActiveSuffix)
		if _, ok := rotatefile.ParseName(key); !ok || key < end.File {
			continue
		}
		info, err := e.Info()
		if err != nil {
			tb.Fatal(err)
		}
		end = loader.Position{File: key, Offset: info.Size()}
	}
	if end.File == "" {
		tb.Fatalf("stream end: no file in %s", dir)
	}
	return end
}

// ArchiveDir creates and returns stream's archive directory in the
// default state dir under spool (loader.StateLayout.Archive), where the
// loader keeps the sealed files it loaded and backfill and verify tests
// put the files they replay.
func ArchiveDir(tb testing.TB, spool, stream string) string {
	tb.Helper()
	dir := loader.StateLayout{Dir: filepath.Join(spool, loader.DefaultStateSubdir)}.Archive(stream)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// WriteSealed writes lines into dir as the sealed file seq of a stream,
// created at created (rotatefile.FileName), as rotatefile leaves it.
func WriteSealed(tb testing.TB, dir string, seq uint64, created time.Time, lines string) {
	tb.Helper()
	if err := os.WriteFile(filepath.Join(dir, rotatefile.FileName(seq, created, ".ndjson")), []byte(lines), 0o640); err != nil {
		tb.Fatal(err)
	}
}

// Lazy is formatted by calling it, so that a message passed to
// testenv.Eventually shows the state when it gave up, not when it began.
type Lazy func() string

func (f Lazy) String() string { return f() }

// EnvInt reads a positive integer from the environment (for a larger or
// smaller benchmark), def when unset. A malformed value fails the test
// rather than silently running with the default.
func EnvInt(tb testing.TB, name string, def int) int {
	tb.Helper()
	return envPositive(tb, name, def, strconv.Atoi, "a positive integer such as 8")
}

// EnvDuration reads a duration from the environment (for lengthening or
// shortening a long test), def when unset. A malformed value fails the
// test rather than silently running with the default.
func EnvDuration(tb testing.TB, name string, def time.Duration) time.Duration {
	tb.Helper()
	return envPositive(tb, name, def, time.ParseDuration, "a positive duration such as 20s")
}

func envPositive[T ~int | ~int64](tb testing.TB, name string, def T, parse func(string) (T, error), want string) T {
	tb.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := parse(v)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want %s", name, v, want)
	}
	return n
}
