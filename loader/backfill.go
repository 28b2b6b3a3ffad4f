package loader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/dualwrite/ingest/schema"
)

// ErrBackfillIncomplete is what [Backfill.Run] returns (wrapped) when its
// context ended before every sink acknowledged every file. The checkpoints
// hold what was done: a new Backfill with the same sinks resumes there.
var ErrBackfillIncomplete = errors.New("backfill incomplete")

// Window is a half-open interval [Since, Until) of event time (the
// table's time field). A zero bound is open. A record without a time (the
// table has no time field, or the row's value is null) is inside only the
// zero Window: it cannot be placed in a bounded one.
type Window struct {
	Since, Until time.Time
}

// IsZero reports whether the window is unbounded on both sides.
func (w Window) IsZero() bool { return w.Since.IsZero() && w.Until.IsZero() }

// Contains reports whether t is in the window; see [Window] for a zero t.
func (w Window) Contains(t time.Time) bool {
	if w.IsZero() {
		return true
	}
	if t.IsZero() {
		return false
	}
	return (w.Since.IsZero() || !t.Before(w.Since)) && (w.Until.IsZero() || t.Before(w.Until))
}

func (w Window) String() string {
	f := func(t time.Time, open string) string {
		if t.IsZero() {
			return open
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	return "[" + f(w.Since, "-inf") + ", " + f(w.Until, "+inf") + ")"
}

// BackfillConfig configures [NewBackfill].
type BackfillConfig struct {
	// Streams are the files to replay (see [ResolveBackfill]). Required.
	Streams []BackfillStream
	// Schema decodes and validates lines. Required.
	Schema *schema.Schema
	// StateDir holds the checkpoints of sinks that keep none themselves
	// (StateDir/checkpoints/<sink>/<stream>.json) and the dead letters
	// (StateDir/deadletter/<stream>/). Required; give every backfill job
	// its own, apart from the live loader's state dir.
	StateDir string
	Batch    BatchConfig
	// Filter, when set, keeps only the records it returns true for; the
	// others are skipped (counted as filtered) by every sink.
	Filter func(*schema.Record) bool
	// Rate limits the lines each sink reads, per second, over all streams
	// (0: no limit), so a backfill does not starve live loading.
	Rate float64
	// HoldFor is how long a slower sink may go without progress (taking
	// a span of lines or having a batch acknowledged) and still hold the
	// faster sinks back. A backfill finishes when its slowest sink does,
	// so when the span cache is full the pipeline furthest ahead waits for
	// a sink that is behind but moving to take the cached spans, rather
	// than evicting them and having that sink read and decode them again
	// while competing for the CPU; a sink idle for longer than HoldFor
	// (down, or stuck) is left behind and reads from disk later. 0 means
	// 5s; negative: never wait, as the live loader does.
	HoldFor time.Duration
	// MaxLineBytes, ShutdownTimeout and CacheBytes are as in [Config].
	MaxLineBytes    int
	ShutdownTimeout time.Duration
	CacheBytes      int
	Logger          *slog.Logger // nil: discard
}

// DefaultHoldFor is [BackfillConfig.HoldFor] when unset: longer than a
// healthy sink takes for a batch, short next to a backfill.
const DefaultHoldFor = 5 * time.Second

// Backfill replays an explicit list of sealed files through the loader's
// pipelines (the same tail, decoding, routing, batching, dead letters and
// checkpoints as [Loader.Run]) and stops once every sink acknowledged every
// file. Create it with [NewBackfill]; call [Backfill.Run] once.
type Backfill struct {
	l       *Loader
	streams []*stream
	sources []*fixedFiles // streams[i]'s
	files   int
	total   int64
}

// NewBackfill checks the configuration and sinks. Each sink's name is its
// checkpoint key: use names the live loader does not use (e.g.
// "backfill-db"), so the live checkpoints are never read or moved, and the
// same names again to resume an interrupted backfill.
func NewBackfill(cfg BackfillConfig, sinks ...SinkSpec) (*Backfill, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("loader: BackfillConfig.StateDir is required")
	}
	if len(cfg.Streams) == 0 {
		return nil, errors.New("loader: BackfillConfig.Streams is empty")
	}
	if cfg.Rate < 0 {
		return nil, fmt.Errorf("loader: BackfillConfig.Rate must not be negative, got %v", cfg.Rate)
	}
	var pol policy
	pol.filter, pol.stopAtCancel = cfg.Filter, true
	for _, spec := range sinks {
		if cfg.Rate > 0 && spec.Sink != nil { // New reports a nil sink
			if pol.limiters == nil {
				pol.limiters = map[string]*limiter{}
			}
			pol.limiters[spec.Sink.Name()] = newLimiter(cfg.Rate)
		}
	}
	switch {
	case cfg.HoldFor == 0:
		pol.holdFor = DefaultHoldFor
	case cfg.HoldFor > 0:
		pol.holdFor = cfg.HoldFor
	}
	batch := cfg.Batch.withDefaults()
	pol.yieldAfter = max(batch.Linger, 100*time.Millisecond)
	l, err := New(Config{
		Dir: cfg.StateDir, StateDir: cfg.StateDir, Schema: cfg.Schema, Batch: batch,
		MaxLineBytes: cfg.MaxLineBytes, ShutdownTimeout: cfg.ShutdownTimeout, CacheBytes: cfg.CacheBytes,
		Logger: cfg.Logger, // its metrics are kept, not registered: Progress and Stats read the engine's counts
	}, sinks...)
	if err != nil {
		return nil, err
	}
	l.policy = pol
	b := &Backfill{l: l}
	seen := map[string]bool{}
	for _, bs := range cfg.Streams {
		if bs.Name == "" || bs.Name[0] == '.' || seen[bs.Name] {
			return nil, fmt.Errorf("loader: backfill stream name %q is empty, hidden or repeated", bs.Name)
		}
		seen[bs.Name] = true
		ff, err := newFixedFiles(bs)
		if err != nil {
			return nil, fmt.Errorf("loader: backfill: %w", err)
		}
		st := newStream(bs.Name, "", StreamConfig{Name: bs.Name, DefaultTable: bs.DefaultTable}, l.cfg.now)
		st.src = ff
		b.streams, b.sources = append(b.streams, st), append(b.sources, ff)
		b.files += len(ff.files)
		b.total += ff.total
	}
	return b, nil
}

// Run replays the files until every sink has acknowledged all of them and
// returns nil, or until ctx ends: then, as [Loader.Run] does, it stops
// reading, waits up to ShutdownTimeout for batches in flight, leaves each
// checkpoint at its last contiguous acknowledgement and returns an error
// wrapping [ErrBackfillIncomplete]. It returns other errors when a
// checkpoint does not match the files ([ErrCheckpointBeyondFile]: the job's
// files changed) or the state dir is unusable. It never deletes, archives
// or changes the files it reads.
func (b *Backfill) Run(ctx context.Context) error {
	l := b.l
	if err := os.MkdirAll(l.cfg.StateDir, 0o750); err != nil {
		return fmt.Errorf("loader: backfill state dir: %w", err)
	}
	err := l.run(ctx, func(_ context.Context, start func(*stream)) {
		// Every stream is counted before any starts, so the first ones do
		// not size their cache share for fewer streams than the job has.
		l.mu.Lock()
		for _, st := range b.streams {
			l.addStreamLocked(st)
		}
		l.mu.Unlock()
		for _, st := range b.streams {
			start(st)
		}
	})
	if err != nil {
		return err
	}
	if !b.Progress().Complete {
		return fmt.Errorf("%w: %v", ErrBackfillIncomplete, context.Cause(ctx))
	}
	return nil
}

// BackfillProgress is a snapshot of a [Backfill]. Byte counts come from the
// checkpoints, so they include what an earlier, interrupted run of the same
// sinks did; line and record counts are this run's.
type BackfillProgress struct {
	Streams    int
	Files      int
	TotalBytes int64
	// DoneBytes is what every sink has acknowledged: the minimum over sinks.
	DoneBytes int64
	// LinesRead is the most lines any sink's pipelines read; a sink
	// re-reads lines after a failed batch, so it can exceed the files'
	// line count.
	LinesRead int64
	// DeadLettered counts lines no sink could take (invalid, truncated,
	// too long), once each.
	DeadLettered int64
	Sinks        []BackfillSinkProgress
	// Started is true once every pipeline has loaded its checkpoint;
	// ResumedBytes is then what the checkpoints covered at the start (an
	// earlier run's work, the minimum over sinks).
	Started      bool
	ResumedBytes int64
	// Complete is true when every sink acknowledged every file.
	Complete bool
}

// BackfillSinkProgress is one sink's share of a [BackfillProgress].
type BackfillSinkProgress struct {
	Sink         string
	DoneBytes    int64 // bytes its checkpoints cover
	ResumedBytes int64 // bytes they covered when this run started
	LinesRead    int64 // complete lines its pipelines read
	Delivered    int64 // records it acknowledged as durable
	Filtered     int64 // valid lines the Filter skipped
	NotRouted    int64 // valid lines in the filter that its route does not select
	Rejected     int64 // records it refused, dead-lettered with the sink named
	Complete     bool
}

// Progress returns the current counts; it is safe to call at any time,
// also after Run returned.
func (b *Backfill) Progress() BackfillProgress {
	pr := BackfillProgress{Streams: len(b.streams), Files: b.files, TotalBytes: b.total, Started: true, Complete: true}
	stats := b.Stats()
	for _, ss := range stats.Streams {
		pr.DeadLettered += ss.DeadLettered
	}
	positions := b.l.Positions()
	for i, spec := range b.l.sinks {
		name := spec.Sink.Name()
		sp := BackfillSinkProgress{Sink: name, Complete: true}
		for j, st := range b.streams {
			if pos, ok := positions[st.name][name]; ok {
				sp.DoneBytes += b.sources[j].done(pos)
			}
			ks := stats.Streams[st.name].Sinks[name]
			sp.LinesRead += ks.LinesRead
			sp.Delivered += ks.Delivered
			sp.Rejected += ks.Rejected
			sp.Filtered += ks.Filtered
			sp.NotRouted += ks.NotRouted
			start, started, finished := b.l.pipeStats(st.name, name).state()
			if started {
				sp.ResumedBytes += b.sources[j].done(start)
			} else {
				pr.Started = false
			}
			sp.Complete = sp.Complete && finished
		}
		if i == 0 || sp.DoneBytes < pr.DoneBytes {
			pr.DoneBytes = sp.DoneBytes
		}
		if i == 0 || sp.ResumedBytes < pr.ResumedBytes {
			pr.ResumedBytes = sp.ResumedBytes
		}
		pr.LinesRead = max(pr.LinesRead, sp.LinesRead)
		pr.Complete = pr.Complete && sp.Complete
		pr.Sinks = append(pr.Sinks, sp)
	}
	sort.Slice(pr.Sinks, func(i, j int) bool { return pr.Sinks[i].Sink < pr.Sinks[j].Sink })
	return pr
}

// limiter spaces events to a rate. It sleeps only once the debt exceeds a
// few milliseconds, so a high rate costs one timer per slice, not per line.
type limiter struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time
}

const limiterSlack = 20 * time.Millisecond

func newLimiter(rate float64) *limiter {
	return &limiter{interval: time.Duration(float64(time.Second) / rate)}
}

// ahead is how long wait would sleep now.
func (l *limiter) ahead() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.next.Add(l.interval).Sub(time.Now())
}

// wait takes one event and sleeps while the events taken run ahead of the
// rate; it returns ctx's error if ctx ends first.
func (l *limiter) wait(ctx context.Context) error {
	l.mu.Lock()
	now := time.Now()
	if l.next.Before(now.Add(-limiterSlack)) {
		l.next = now.Add(-limiterSlack) // no credit for idle time beyond the slack
	}
	l.next = l.next.Add(l.interval)
	ahead := l.next.Sub(now)
	l.mu.Unlock()
	if ahead <= limiterSlack {
		return ctx.Err()
	}
	timer := time.NewTimer(ahead)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
