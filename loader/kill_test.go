package loader

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/rotatefile"
)

// logSink commits each batch as one fsynced line of a log file holding both
// the records and the checkpoint: a crash leaves the batch wholly in or
// (torn line) wholly out, like a database transaction.
type logSink struct {
	f   *os.File
	mu  sync.Mutex
	cps map[string]Position
}

type logEntry struct {
	Stream string   `json:"stream"`
	End    Position `json:"end"`
	Seqs   []int    `json:"seqs"`
}

func openLogSink(path string) (*logSink, []logEntry, error) {
	s, entries, err := readLog(path, true)
	if err != nil {
		return nil, nil, err
	}
	s.f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	return s, entries, err
}

// readLog parses the log. Only the sink's owner may cut a torn last entry
// off (repair): a reader racing with a write in progress must leave the
// file alone, or it would cut off an entry that is being committed.
func readLog(path string, repair bool) (*logSink, []logEntry, error) {
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return nil, nil, err
	}
	// A torn last entry was never committed.
	if i := bytes.LastIndexByte(data, '\n'); i+1 != len(data) {
		data = data[:i+1]
		if repair {
			if err := os.Truncate(path, int64(len(data))); err != nil {
				return nil, nil, err
			}
		}
	}
	s := &logSink{cps: map[string]Position{}}
	var entries []logEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var e logEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, nil, fmt.Errorf("log entry %q: %w", sc.Text(), err)
		}
		entries = append(entries, e)
		s.cps[e.Stream] = e.End
	}
	return s, entries, nil
}

func (s *logSink) Name() string { return "log" }

func (s *logSink) Submit(_ context.Context, b *Batch, ack func(error)) error {
	e := logEntry{Stream: b.Stream, End: b.End}
	for _, r := range b.Records {
		e.Seqs = append(e.Seqs, parseGot(r).Seq)
	}
	line, _ := json.Marshal(e)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.f.Write(append(line, '\n')); err != nil {
		return err
	}
	if err := s.f.Sync(); err != nil {
		return err
	}
	s.cps[b.Stream] = b.End
	ack(nil)
	return nil
}

func (s *logSink) Checkpoint(_ context.Context, stream string) (Position, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.cps[stream]
	return p, ok, nil
}

// TestHelperLoaderProcess is the child of TestKillDashNineExactlyOnce: a
// loader feeding a logSink until killed, or until SIGTERM (graceful).
func TestHelperLoaderProcess(t *testing.T) {
	spool := os.Getenv("LOADER_CHILD_SPOOL")
	if spool == "" {
		t.Skip("child process of TestKillDashNineExactlyOnce")
	}
	sink, _, err := openLogSink(os.Getenv("LOADER_CHILD_LOG"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "open log:", err)
		os.Exit(3)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	l, err := New(Config{Dir: spool, Schema: testSchema(t), Batch: BatchConfig{MaxRecords: 100, Linger: time.Millisecond}}, SinkSpec{Sink: sink})
	if err != nil {
		fmt.Fprintln(os.Stderr, "new loader:", err)
		os.Exit(4)
	}
	fmt.Println("running")
	if err := l.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(4)
	}
	os.Exit(0)
}

func TestKillDashNineExactlyOnce(t *testing.T) {
	spool, w := openWriter(t, rotatefile.Options{MaxBytes: 16 << 10, FlushInterval: time.Millisecond})
	logPath := spool + "/../sink.log"
	const n = 15000
	written := appendInBackground(t, w, n, 200, 2*time.Millisecond, func(i int) string { return evLine(i%11, i, strings.Repeat("k", i%150)) })
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperLoaderProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), "LOADER_CHILD_SPOOL="+spool, "LOADER_CHILD_LOG="+logPath)
		cmd.Stderr = os.Stderr
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until it runs, so kills land inside the loader, not in start-up.
		sc := bufio.NewScanner(out)
		for sc.Scan() && sc.Text() != "running" {
		}
		return cmd
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	kills := 0
	for done := false; !done; {
		select {
		case <-written:
			done = kills >= 10
		default:
		}
		cmd := start()
		time.Sleep(time.Duration(rng.IntN(80)) * time.Millisecond) // the kill point
		cmd.Process.Kill()
		cmd.Wait()
		kills++
	}
	// A last, graceful run: SIGTERM must exit 0 once everything is in.
	cmd := start()
	t.Cleanup(func() { cmd.Process.Kill() }) // if the test fails before the SIGTERM
	testenv.Eventually(t, 60*time.Second, func() bool {
		_, entries, err := readLog(logPath, false)
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, e := range entries {
			total += len(e.Seqs)
		}
		return total >= n
	}, "all lines in the log")
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	_, entries, err := readLog(logPath, false)
	if err != nil {
		t.Fatal(err)
	}
	var recs []got
	for _, e := range entries {
		for _, s := range e.Seqs {
			recs = append(recs, got{Seq: s})
		}
	}
	t.Logf("%d kill -9 of the loader, %d batches committed", kills, len(entries))
	checkExactlyOnceInOrder(t, "log", recs, n)
}

// The loader is cancelled at random points while lines keep coming; a sink
// that commits its checkpoint with its data ends with every line once.
func TestCancelAtRandomPointsExactlyOnce(t *testing.T) {
	spool, w := openWriter(t, rotatefile.Options{MaxBytes: 16 << 10, FlushInterval: time.Millisecond})
	sink := newMemSink(t, "mem", true)
	sink.async = true
	cfg := Config{Dir: spool, Schema: testSchema(t), Batch: BatchConfig{MaxRecords: 50, Linger: time.Millisecond}}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n = 20000
	written := appendInBackground(t, w, n, 100, time.Millisecond, func(i int) string { return evLine(i%13, i, strings.Repeat("q", i%100)) })
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	restarts := 0
	for ctx.Err() == nil {
		l, err := New(cfg, sink.spec())
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stopRun := context.WithTimeout(ctx, time.Duration(5+rng.IntN(60))*time.Millisecond)
		if err := l.Run(runCtx); err != nil {
			t.Fatalf("run %d: %v", restarts, err)
		}
		stopRun()
		restarts++
		select {
		case <-written:
			// At least 20 cancels whatever the speed: a faster loader
			// finishes the lines in fewer runs.
			if sink.count() >= n && restarts >= 20 || restarts > 2000 {
				cancel()
			}
		default:
		}
	}
	<-written
	// One last run to pick up whatever the final cancel left.
	_, stop := runLoader(t, cfg, sink.spec())
	testenv.Eventually(t, 30*time.Second, func() bool { return sink.count() >= n }, "final run completes")
	stop()
	t.Logf("%d restarts", restarts)
	if restarts < 20 {
		t.Fatalf("only %d restarts", restarts)
	}
	checkExactlyOnceInOrder(t, "mem", sink.records(), n)
}
