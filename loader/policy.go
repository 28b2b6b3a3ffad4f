package loader

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dualwrite/ingest/schema"
)

// policy is what a run asks of its pipelines beyond reading, routing and
// batching: a backfill's filter, its pacing and how long the reader holds
// spans for a slower sink. Its zero value is the live loader's: every
// record, no pacing, no holding back.
type policy struct {
	// filter, when set, keeps only the records it returns true for.
	filter func(*schema.Record) bool
	// limiters pace each sink's reads (by sink name; nil: no rate).
	limiters map[string]*limiter
	// yieldAfter: a paced batch older than this is handed over.
	yieldAfter time.Duration
	// holdFor is BackfillConfig.HoldFor; 0: the reader never waits.
	holdFor time.Duration
	// stopAtCancel stops filling the batch being built as soon as ctx
	// ends (a backfill, which may be far from its end). The live loader
	// keeps filling it from the lines already written, until it is full
	// or caught up, and hands it over: a shutdown then still moves each
	// checkpoint by the lines at hand (TestCancelAtRandomPointsExactlyOnce
	// stops every few milliseconds and counts on it).
	stopAtCancel bool
}

// keep applies the filter to a decoded record.
func (r *policy) keep(rec *schema.Record) bool { return r.filter == nil || r.filter(rec) }

// pace waits for the rate limit of p's sink before a line is read. It
// returns false when fill should stop and hand over its batch: ctx ended,
// or the limit holds the pipeline back while the batch being built is
// older than yieldAfter, so a slow rate still shows steady progress.
func (r *policy) pace(ctx context.Context, p *pipeline) bool {
	lim := r.limiters[p.name]
	if lim == nil {
		return !r.stopAtCancel || ctx.Err() == nil
	}
	if lim.ahead() > limiterSlack && !p.cur.empty() && p.l.cfg.now().Sub(p.cur.first) >= r.yieldAfter {
		return false
	}
	return lim.wait(ctx) == nil
}

// pipeStats is what one pipeline (a stream and a sink) has done, for
// [Loader.Stats]: counters the pipeline adds to once per fill or ack, and
// where it started and whether it finished.
type pipeStats struct {
	read, acked         atomic.Int64 // lines taken; records acknowledged, not counting those the sink rejected
	filtered, notRouted atomic.Int64
	lag                 atomic.Int64 // bytes after the checkpoint, as the janitor last measured; -1 before

	mu       sync.Mutex
	start    Position // the checkpoint the pipeline started from
	started  bool
	finished bool // an exhausted source, every line acknowledged
}

func (s *pipeStats) begin(pos Position) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		s.start, s.started = pos, true
	}
}

func (s *pipeStats) finish() {
	s.mu.Lock()
	s.finished = true
	s.mu.Unlock()
}

// state returns where the pipeline started, whether it has, and whether
// it finished.
func (s *pipeStats) state() (start Position, started, finished bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.start, s.started, s.finished
}

// pipeStats returns the stats of the pipeline of stream and sink, made on
// first use, so that they survive the pipeline and a reader may ask before
// it started.
func (l *Loader) pipeStats(stream, sink string) *pipeStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := [2]string{stream, sink}
	s := l.pstats[k]
	if s == nil {
		if l.pstats == nil {
			l.pstats = map[[2]string]*pipeStats{}
		}
		s = &pipeStats{}
		s.lag.Store(-1)
		l.pstats[k] = s
	}
	return s
}
