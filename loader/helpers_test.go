package loader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dualwrite/ingest/rotatefile"
	"github.com/dualwrite/ingest/schema"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// testSchema has one table, "ev", keyed by account, with a sequence number
// and the append time in nanoseconds so tests can check order and latency.
func testSchema(tb testing.TB) *schema.Schema {
	tb.Helper()
	s, err := schema.New(map[string]*schema.Table{
		"ev": {Key: "account", Columns: map[string]string{
			"account": "bigint", "seq": "bigint", "at": "bigint", "pad": "text",
		}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func evLine(account, seq int, pad string) string {
	return fmt.Sprintf(`{"table":"ev","row":{"account":%d,"seq":%d,"at":%d,"pad":%q}}`, account, seq, time.Now().UnixNano(), pad)
}

// evLines is the lines seq from..to-1 of table ev, account seq%accounts,
// each ending in a newline: a stream's file written by hand.
func evLines(from, to, accounts int, pad string) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		b.WriteString(evLine(i%accounts, i, pad) + "\n")
	}
	return b.String()
}

// evLinesWithBad is n lines of which those at i%every == at are malformed
// JSON (dead-lettered) and the rest good lines of table ev, seq 0..good-1
// and account seq%accounts, each ending in a newline.
func evLinesWithBad(n, every, at, accounts int, pad string) (data string, good, bad int) {
	var b strings.Builder
	for i := range n {
		if i%every == at {
			b.WriteString(`{"table":"ev","row":{"account":` + "\n")
			bad++
			continue
		}
		b.WriteString(evLine(good%accounts, good, pad) + "\n")
		good++
	}
	return b.String(), good, bad
}

// firstFile is the name rotatefile gives a stream's first file, for tests
// that write a stream's files by hand.
const firstFile = "0000000000000001-20261206T000000.000Z.ndjson"

// writeStreamFile writes data as the file name of stream under spool,
// creating the stream's directory, and returns that directory.
func writeStreamFile(tb testing.TB, spool, stream, name, data string) string {
	tb.Helper()
	dir := filepath.Join(spool, stream)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o640); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// openWriter opens a rotatefile writer, as the API embeds it, on stream
// "api" (unless opts names another) of a new spool directory (unless
// opts.Dir is set), and returns the spool directory. The writer is closed
// when the test ends; a test may close it sooner.
func openWriter(tb testing.TB, opts rotatefile.Options) (string, *rotatefile.Writer) {
	tb.Helper()
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	if opts.Stream == "" {
		opts.Stream = "api"
	}
	w, err := rotatefile.Open(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { w.Close() })
	return opts.Dir, w
}

// appendEv appends the lines seq from..to-1 of table ev, account
// seq%accounts, through w.
func appendEv(tb testing.TB, w *rotatefile.Writer, from, to, accounts int, pad string) {
	tb.Helper()
	for i := from; i < to; i++ {
		if err := w.Append([]byte(evLine(i%accounts, i, pad))); err != nil {
			tb.Fatal(err)
		}
	}
}

// appendInBackground appends n lines, line(i) for i in 0..n-1, through w
// from a goroutine, pausing for pause every `every` lines as an API does
// between bursts of requests, so that the loader tails a file that is
// still growing. The channel is closed once it is done; a failed append is
// reported with t.Error and ends it.
func appendInBackground(t *testing.T, w *rotatefile.Writer, n, every int, pause time.Duration, line func(i int) string) <-chan struct{} {
	written := make(chan struct{})
	go func() {
		defer close(written)
		for i := range n {
			if err := w.Append([]byte(line(i))); err != nil {
				t.Error(err)
				return
			}
			if i%every == 0 {
				time.Sleep(pause)
			}
		}
	}()
	return written
}

// metricValue is the value of a counter or a gauge.
func metricValue(tb testing.TB, c prometheus.Metric) float64 {
	tb.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		tb.Fatal(err)
	}
	if m.Counter != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// got is a record as a test sink stored it.
type got struct {
	Seq     int       `json:"seq"`
	Account string    `json:"account"`
	At      int64     `json:"at"`
	Pos     Position  `json:"pos"`
	Stored  time.Time `json:"stored"`
}

func parseGot(r Record) got {
	row := string(r.Row)
	field := func(name string) int64 {
		i := strings.Index(row, `"`+name+`":`)
		if i < 0 {
			return -1
		}
		rest := row[i+len(name)+3:]
		j := strings.IndexAny(rest, ",}")
		v, _ := strconv.ParseInt(rest[:j], 10, 64)
		return v
	}
	return got{Seq: int(field("seq")), Account: r.Key, At: field("at"), Pos: r.Pos, Stored: time.Now()}
}

// memSink is an in-process sink that stores records and its checkpoint
// together under one lock, like a database transaction: it owns its
// checkpoint, so it must end with every line exactly once.
type memSink struct {
	name string
	// ownCheckpoint makes it a CheckpointOwner; otherwise the loader's file
	// store keeps its checkpoint.
	ownCheckpoint bool
	delay         time.Duration // per batch, before storing
	async         bool          // ack from another goroutine, after Submit returned

	failing atomic.Bool // while set, batches fail
	refuse  atomic.Bool // while set, Submit itself returns an error
	batches atomic.Int64

	mu    sync.Mutex
	queue chan func()
	recs  []got
	cp    map[string]Position
	wg    sync.WaitGroup
}

func newMemSink(tb testing.TB, name string, own bool) *memSink {
	s := &memSink{name: name, ownCheckpoint: own, cp: map[string]Position{}}
	tb.Cleanup(s.close)
	return s
}

// close stops the async worker; registered as a cleanup after the loader's.
func (s *memSink) close() {
	s.mu.Lock()
	if s.queue != nil {
		close(s.queue)
		s.queue = nil
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *memSink) Name() string { return s.name }

var errSinkDown = errors.New("test sink is down")

func (s *memSink) Submit(ctx context.Context, b *Batch, ack func(error)) error {
	if s.refuse.Load() {
		return errSinkDown
	}
	do := func() {
		if s.delay > 0 {
			select {
			case <-time.After(s.delay):
			case <-ctx.Done():
				ack(ctx.Err())
				return
			}
		}
		if s.failing.Load() {
			ack(errSinkDown)
			return
		}
		s.store(b.Stream, b.End, b.Records)
		s.batches.Add(1)
		ack(nil)
	}
	if s.async {
		s.mu.Lock()
		if s.queue == nil {
			// One worker keeps commits in submit order, as a real sink must:
			// a checkpoint may never move back.
			s.queue = make(chan func(), 64)
			s.wg.Go(func() {
				for f := range s.queue {
					f()
				}
			})
		}
		q := s.queue
		s.mu.Unlock()
		q <- do
		return nil
	}
	do()
	return nil
}

// store commits records with end, their stream's checkpoint, under one
// lock, as a database transaction commits rows with the checkpoint.
func (s *memSink) store(stream string, end Position, recs []Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		s.recs = append(s.recs, parseGot(r))
	}
	s.cp[stream] = end
}

// memOwner is memSink with its own checkpoint.
type memOwner struct{ *memSink }

func (s memOwner) Checkpoint(_ context.Context, stream string) (Position, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.cp[stream]
	return p, ok, nil
}

func (s *memSink) spec() SinkSpec {
	if s.ownCheckpoint {
		return SinkSpec{Sink: memOwner{s}, MaxInFlight: 4}
	}
	return SinkSpec{Sink: s, MaxInFlight: 4}
}

func (s *memSink) records() []got {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]got(nil), s.recs...)
}

func (s *memSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.recs)
}

// checkExactlyOnceInOrder fails unless recs hold seq 0..n-1 once each, in
// order (the tests write from one goroutine, so file order is seq order).
func checkExactlyOnceInOrder(tb testing.TB, name string, recs []got, n int) {
	tb.Helper()
	if len(recs) != n {
		seen := map[int]int{}
		for _, r := range recs {
			seen[r.Seq]++
		}
		var missing, dup []int
		for i := range n {
			if seen[i] == 0 && len(missing) < 10 {
				missing = append(missing, i)
			}
			if seen[i] > 1 && len(dup) < 10 {
				dup = append(dup, i)
			}
		}
		tb.Fatalf("%s: %d records, want %d (first missing %v, first duplicated %v)", name, len(recs), n, missing, dup)
	}
	for i, r := range recs {
		if r.Seq != i {
			tb.Fatalf("%s: record %d has seq %d (lost, duplicated or reordered)", name, i, r.Seq)
		}
	}
}

// runLoader runs a loader in the background; the returned stop cancels it
// and returns Run's error.
func runLoader(tb testing.TB, cfg Config, sinks ...SinkSpec) (l *Loader, stop func() error) {
	tb.Helper()
	l, err := New(cfg, sinks...)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(60 * time.Second):
				runErr = errors.New("loader did not stop within 60 s")
			}
		})
		return runErr
	}
	tb.Cleanup(func() { stop() })
	return l, stop
}

// spoolFiles lists the data files left in a stream directory.
func spoolFiles(tb testing.TB, dir string) []string {
	tb.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return names
}

// readDeadLetters returns every dead letter of a stream.
func readDeadLetters(tb testing.TB, stateDir, stream string) []DeadLetter {
	tb.Helper()
	dls, err := ReadDeadLetters(stateDir, stream)
	if err != nil {
		tb.Fatal(err)
	}
	return dls
}

// skewClock is the wall clock shifted by a settable offset, for Config.now.
type skewClock struct{ off atomic.Int64 }

func (c *skewClock) skip(d time.Duration) { c.off.Add(int64(d)) }
func (c *skewClock) now() time.Time       { return time.Now().Add(time.Duration(c.off.Load())) }
