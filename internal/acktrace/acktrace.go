package acktrace

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/dualwrite/ingest/loader"
)

// Options say what a [Tracer] keeps. The zero value only counts.
type Options struct {
	// Out, when set, receives one line per timed record,
	// "<sink>\t<append_to_ack_ns>\n", through a buffer that [Tracer.Close]
	// flushes. A write error stops the trace (loading goes on) and is
	// returned by Close.
	Out io.Writer
	// Keep retains every latency in memory for [Tracer.Latencies].
	Keep bool
	// IDs retains the record ids acknowledged per sink for [Tracer.IDs].
	IDs bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Tracer times the acknowledgements of the sinks it wraps. It is safe for
// concurrent use: sinks acknowledge from their own goroutines.
type Tracer struct {
	opts Options
	now  func() time.Time

	mu      sync.Mutex
	out     *bufio.Writer
	werr    error
	buf     []byte
	acked   map[string]int64
	untimed map[string]int64
	latency map[string][]time.Duration
	ids     map[string]map[string]bool
}

// New returns a Tracer.
func New(o Options) *Tracer {
	t := &Tracer{opts: o, now: o.Now, acked: map[string]int64{}, untimed: map[string]int64{},
		latency: map[string][]time.Duration{}, ids: map[string]map[string]bool{}}
	if t.now == nil {
		t.now = time.Now
	}
	if o.Out != nil {
		t.out = bufio.NewWriterSize(o.Out, 1<<20)
	}
	return t
}

// Wrap returns s with its acknowledgements timed. A sink that owns its
// checkpoint ([loader.CheckpointOwner]) still does after wrapping.
func (t *Tracer) Wrap(s loader.Sink) loader.Sink {
	w := &traced{Sink: s, t: t}
	if owner, ok := s.(loader.CheckpointOwner); ok {
		return tracedOwner{w, owner}
	}
	return w
}

type traced struct {
	loader.Sink
	t *Tracer
}

// tracedOwner passes Checkpoint through, so the db sink keeps owning its
// checkpoint.
type tracedOwner struct {
	*traced
	loader.CheckpointOwner
}

func (s *traced) Submit(ctx context.Context, b *loader.Batch, ack func(error)) error {
	return s.Sink.Submit(ctx, b, func(err error) {
		if err == nil {
			s.t.observe(s.Sink.Name(), b.Records)
		}
		ack(err)
	})
}

// observe records one successful acknowledgement of records by sink.
func (t *Tracer) observe(sink string, records []loader.Record) {
	now := t.now().UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.acked[sink] += int64(len(records))
	var ids map[string]bool
	if t.opts.IDs {
		if ids = t.ids[sink]; ids == nil {
			ids = map[string]bool{}
			t.ids[sink] = ids
		}
	}
	for i := range records {
		r := &records[i]
		if ids != nil {
			ids[r.RecordID] = true
		}
		ns, ok := AppendedNS(r.Line)
		if !ok {
			t.untimed[sink]++
			continue
		}
		d := time.Duration(now - ns)
		if t.opts.Keep {
			t.latency[sink] = append(t.latency[sink], d)
		}
		if t.out != nil && t.werr == nil {
			t.buf = append(append(t.buf[:0], sink...), '\t')
			t.buf = append(strconv.AppendInt(t.buf, int64(d), 10), '\n')
			if _, err := t.out.Write(t.buf); err != nil {
				t.werr = fmt.Errorf("acktrace: write trace: %w", err)
			}
		}
	}
}

// Acked is the number of records sink acknowledged, timed or not.
func (t *Tracer) Acked(sink string) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.acked[sink]
}

// Untimed is the number of records sink acknowledged whose line had no
// append time.
func (t *Tracer) Untimed(sink string) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.untimed[sink]
}

// Latencies returns a copy of sink's latencies in acknowledgement order
// (with [Options.Keep]; nil otherwise).
func (t *Tracer) Latencies(sink string) []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.latency[sink])
}

// IDs returns a copy of the set of record ids sink acknowledged (with
// [Options.IDs]; empty otherwise).
func (t *Tracer) IDs(sink string) map[string]bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.ids[sink])
}

// Close flushes the trace to [Options.Out] and returns the first write
// error. Call it after the loader stopped; later acknowledgements are still
// counted but their trace lines may be lost.
func (t *Tracer) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.out != nil && t.werr == nil {
		if err := t.out.Flush(); err != nil {
			t.werr = fmt.Errorf("acktrace: write trace: %w", err)
		}
	}
	return t.werr
}

var appendedField = []byte(`"appended_ns":`)

// AppendedNS returns the append time internal/gen writes as the line's
// "appended_ns" field (Unix nanoseconds), and whether there is one. It
// looks for the last occurrence only, where gen puts it, so a row's own
// text cannot fake it.
func AppendedNS(line []byte) (int64, bool) {
	i := bytes.LastIndex(line, appendedField)
	if i < 0 {
		return 0, false
	}
	rest := line[i+len(appendedField):]
	j := bytes.IndexAny(rest, ",}")
	if j < 0 {
		return 0, false
	}
	ns, err := strconv.ParseInt(string(bytes.TrimSpace(rest[:j])), 10, 64)
	if err != nil || ns <= 0 {
		return 0, false
	}
	return ns, true
}

// Read parses a trace written through [Options.Out] into latencies per
// sink, in file order.
func Read(r io.Reader) (map[string][]time.Duration, error) {
	out := map[string][]time.Duration{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		sink, v, ok := bytes.Cut(line, []byte{'\t'})
		if !ok || len(sink) == 0 {
			return nil, fmt.Errorf("acktrace: line %d: want <sink>TAB<nanoseconds>, got %q", n, line)
		}
		ns, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("acktrace: line %d: %w", n, err)
		}
		out[string(sink)] = append(out[string(sink)], time.Duration(ns))
	}
	return out, sc.Err()
}

// Summary is the distribution of one sink's latencies.
type Summary struct {
	Sink          string
	Count         int
	P50, P99, Max time.Duration
	P999          time.Duration
}

// Summarize sorts d in place and returns its exact percentiles.
func Summarize(sink string, d []time.Duration) Summary {
	slices.Sort(d)
	s := Summary{Sink: sink, Count: len(d), P50: Percentile(d, 50), P99: Percentile(d, 99), P999: Percentile(d, 99.9)}
	if len(d) > 0 {
		s.Max = d[len(d)-1]
	}
	return s
}

// ErrEmpty is returned by [ReadSummaries] when the trace has no record.
var ErrEmpty = errors.New("acktrace: the trace has no record")

// ReadSummaries reads a trace and summarizes every sink in it, sorted by
// sink name.
func ReadSummaries(r io.Reader) ([]Summary, error) {
	bySink, err := Read(r)
	if err != nil {
		return nil, err
	}
	if len(bySink) == 0 {
		return nil, ErrEmpty
	}
	var out []Summary
	for _, sink := range slices.Sorted(maps.Keys(bySink)) {
		out = append(out, Summarize(sink, bySink[sink]))
	}
	return out, nil
}

// Percentile is the exact nearest-rank p-th percentile of sorted (ascending):
// the smallest value with at least p % of the values at or below it. It is 0
// for an empty slice.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// The epsilon keeps 99 % of 100 at rank 99 despite binary fractions.
	rank := int(math.Ceil(p/100*float64(n) - 1e-9))
	return sorted[min(max(rank, 1), n)-1]
}
