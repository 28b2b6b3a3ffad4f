package loader

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dualwrite/ingest/schema"
)

// A segment is a contiguous span [start, end) of a stream, read from disk
// and decoded once: every item the tail yielded there, each line's bytes
// in the segment's own memory (so records of several sinks' batches can
// point into it) and its decoded record. Lines that could not be taken
// were dead-lettered when the segment was read.
type segment struct {
	start, end Position
	items      []segItem
	bytes      int      // line bytes held
	chunks     [][]byte // the memory the lines are in; chunk is the last
	chunk      []byte
	// refs counts the holders: the cache while it keeps the segment, the
	// pipeline consuming it, and every batch with a record in it. The
	// last release gives the memory back to the stream's pool, so a
	// chunk is reused only once no sink can still be reading it.
	refs atomic.Int32
	pool *chunkPool
	// takers counts the pipelines that have had the segment (its reader
	// included); once every pipeline has, the cache lets it go. takenBy
	// says which (pipeline.bit), so that a backfill's reader knows whose
	// progress it would be evicting.
	takers  int
	takenBy uint64
}

type segItem struct {
	kind itemKind
	// from is where the reader was before this item: the previous item's
	// end, or the segment's start. A pipeline at from takes the segment
	// from this item on.
	from, pos, end Position
	length         int64
	line           []byte
	rec            schema.Record
	id             string // Record.RecordID
	bad            bool   // dead-lettered: it goes to no sink
}

func (s *segment) copyLine(line []byte, chunkSize int) []byte {
	if len(line) > cap(s.chunk)-len(s.chunk) {
		s.chunk = s.pool.get(chunkSize, len(line))
		s.chunks = append(s.chunks, s.chunk)
	}
	n := len(s.chunk)
	s.chunk = append(s.chunk, line...)
	s.bytes += len(line)
	return s.chunk[n:len(s.chunk):len(s.chunk)]
}

func (s *segment) retain() { s.refs.Add(1) }

func (s *segment) release() {
	if s.refs.Add(-1) == 0 {
		s.pool.put(s.chunks, s.items)
		s.chunks, s.chunk, s.items = nil, nil, nil
	}
}

// chunkPool keeps the chunks of released segments for the next ones:
// fresh chunks cost a page fault and zeroing per 4 KB, which was a tenth
// of a backfill's CPU.
type chunkPool struct {
	mu     sync.Mutex
	size   int // the chunk size kept: the last one asked for
	keep   int // bytes of chunks kept at most: the stream's cache share
	chunks [][]byte
	items  [][]segItem
}

// poolChunks bounds the free lists: what the batches in flight release
// between two reads, without keeping a burst's memory for ever. The
// stream's cache share bounds the chunks' bytes too (setKeep), so that
// idle chunks do not grow with the number of streams either.
const poolChunks = 16

// setKeep bounds the spare chunks' bytes to limit (0: no bound but
// poolChunks), dropping the excess now.
func (p *chunkPool) setKeep(limit int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keep = limit
	for n := len(p.chunks); n > 0 && !p.roomLocked(n-1); n-- {
		p.chunks[n-1] = nil
		p.chunks = p.chunks[:n-1]
	}
}

// roomLocked says whether the pool may keep a chunk when it holds n.
func (p *chunkPool) roomLocked(n int) bool {
	return n < poolChunks && (p.keep <= 0 || (n+1)*p.size <= p.keep)
}

// get returns an empty chunk of size bytes, or of need bytes for a line
// longer than that.
func (p *chunkPool) get(size, need int) []byte {
	if need > size {
		return make([]byte, 0, need)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.size != size {
		p.size, p.chunks = size, nil // the batch size changed
	}
	if n := len(p.chunks); n > 0 {
		c := p.chunks[n-1]
		p.chunks = p.chunks[:n-1]
		return c[:0]
	}
	return make([]byte, 0, size)
}

// itemSlice returns an empty item list for a new segment: a list grown
// from nothing for a 1 MiB span of 2 KB lines allocates twice its ~150 KB.
func (p *chunkPool) itemSlice() []segItem {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.items); n > 0 {
		it := p.items[n-1]
		p.items = p.items[:n-1]
		return it
	}
	return make([]segItem, 0, 256)
}

func (p *chunkPool) put(chunks [][]byte, items []segItem) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range chunks {
		if cap(c) == p.size && p.roomLocked(len(p.chunks)) {
			p.chunks = append(p.chunks, c)
		}
	}
	if cap(items) > 0 && len(p.items) < poolChunks {
		clear(items) // drop the references to old lines and strings
		p.items = append(p.items, items[:0])
	}
}

// segCache is a stream's bounded cache of segments, shared by its
// pipelines: the pipeline furthest ahead reads the next span, publishes
// it, and the others take it instead of reading and decoding it again. A
// pipeline behind the cache (its segments evicted) reads from disk itself,
// so no pipeline waits for another's sink and memory stays bounded (except
// a backfill's reader, which waits a bounded time for room: see
// waitForRoomLocked).
type segCache struct {
	pool chunkPool

	mu       sync.Mutex
	segs     []*segment // contiguous, oldest first
	front    Position   // the end of the last span published: where the leader reads next
	hasFront bool
	bytes    int
	peak     int
	limit    int
	reading  bool          // a pipeline is reading the span at readFrom
	readFrom Position      //
	readDone chan struct{} // closed when that read ends
	sinks    int
	acked    map[string]Position // each pipeline's checkpoint
	// progress is when each pipeline (by pipeline.idx) last took or read
	// a span or had a batch acknowledged; room is closed (and cleared)
	// when a pipeline takes a span or its checkpoint moves, which is when
	// a backfill's reader waiting for room looks again.
	progress []time.Time
	room     chan struct{}

	linesRead, linesDecoded             atomic.Int64
	segsRead, segsPublished, segsShared atomic.Int64
	sharedLines, privateReads           atomic.Int64
	roomWaits, evictedUntaken           atomic.Int64
	roomWaited                          atomic.Int64 // nanoseconds
}

// cacheBatches is the cache's bound in batches of Batch.MaxBytes: enough
// for pipelines a batch or two apart to share, small next to the batches
// in flight.
const cacheBatches = 4

// segmentBytes is how much a segment reads: a quarter batch, at least
// 16 KiB, at most 1 MiB (fresh chunks cost a page fault and zeroing per
// 4 KB, so they are reused, and a span much larger than a batch would
// keep more memory than the batches in flight need).
func segmentBytes(batchBytes int) int { return min(max(batchBytes/4, minSegmentBytes), 1<<20) }

const minSegmentBytes = 16 << 10

// find returns the cached segment holding a span that starts at pos, and
// the index of its item there.
func (c *segCache) find(pos Position) (*segment, int, bool) {
	for _, s := range c.segs {
		if pos.Before(s.start) || !pos.Before(s.end) && pos != s.start {
			continue
		}
		i := sort.Search(len(s.items), func(i int) bool { return !s.items[i].from.Before(pos) })
		if i < len(s.items) && s.items[i].from == pos {
			return s, i, true
		}
		return nil, 0, false
	}
	return nil, 0, false
}

// dropTakenLocked evicts the oldest segments every pipeline has had: with
// all sinks keeping pace the cache then holds only the spans still to be
// taken, not its bound.
func (c *segCache) dropTakenLocked() {
	for len(c.segs) > 0 && c.segs[0].takers >= c.sinks {
		c.evictOldestLocked()
	}
}

func (c *segCache) evictOldestLocked() {
	s := c.segs[0]
	if s.takers < c.sinks {
		c.evictedUntaken.Add(1)
	}
	c.segs[0] = nil
	c.segs = c.segs[1:]
	c.bytes -= s.bytes
	s.release()
}

// publish adds a segment read from the cache's end (or ahead of it: then
// the cache restarts there, as the reader is now the one furthest ahead).
func (c *segCache) publishLocked(s *segment, limit int) {
	if c.hasFront && c.front != s.start {
		for len(c.segs) > 0 {
			c.evictOldestLocked()
		}
	}
	c.front, c.hasFront = s.end, true
	c.limit = limit
	c.pool.setKeep(limit)
	if s.bytes > limit {
		// Over the stream's share of Config.CacheBytes on its own (a long
		// line, or a share below the smallest span): the pipelines behind
		// read it themselves rather than the budget being exceeded.
		for len(c.segs) > 0 {
			c.evictOldestLocked()
		}
		return
	}
	for len(c.segs) > 0 && c.bytes+s.bytes > limit {
		c.evictOldestLocked()
	}
	s.retain()
	c.segs = append(c.segs, s)
	c.bytes += s.bytes
	c.peak = max(c.peak, c.bytes)
	c.segsPublished.Add(1)
	s.takers = 1 // its reader
	c.dropTakenLocked()
}

// noteAcked records a pipeline's checkpoint and returns the oldest of the
// stream's, once every pipeline has one: no line before it is read again.
func (c *segCache) noteAcked(sink string, idx int, pos Position) (Position, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.progressedLocked(idx)
	if c.acked == nil {
		c.acked = map[string]Position{}
	}
	c.acked[sink] = pos
	if len(c.acked) < c.sinks {
		return Position{}, false
	}
	first, oldest := true, Position{}
	for _, p := range c.acked {
		if first || p.Before(oldest) {
			oldest, first = p, false
		}
	}
	return oldest, true
}

// segmentAt returns the segment for the span starting at pos and the index
// of its first item there: taken from the cache, or read from disk with
// the pipeline's tail (published when the pipeline is the furthest ahead).
// A nil segment with caughtUp means no complete line is there yet.
func (p *pipeline) segmentAt(ctx context.Context, pos Position, cfg settings) (seg *segment, at int, caughtUp bool, err error) {
	c := p.st.cache
	// With many streams a share can be less than a span: the span shrinks
	// to half of it (a span ends with the line that reaches its target,
	// so it is larger), and publish keeps none larger than the share.
	limit := p.l.cacheLimit(cfg.batch.MaxBytes)
	target := min(segmentBytes(cfg.batch.MaxBytes), max(limit/2, minSegmentBytes))
	for {
		c.mu.Lock()
		if s, i, ok := c.find(pos); ok {
			s.retain()
			s.takers++
			s.takenBy |= p.bit
			c.dropTakenLocked()
			c.progressedLocked(p.idx)
			c.mu.Unlock()
			c.segsShared.Add(1)
			c.sharedLines.Add(int64(len(s.items) - i))
			return s, i, false, nil
		}
		if c.reading && c.readFrom == pos {
			// Another pipeline is reading this very span: a disk read and
			// a decode, bounded, not a sink; take its result.
			done := c.readDone
			c.mu.Unlock()
			select {
			case <-done:
				continue
			case <-ctx.Done():
				return nil, 0, true, nil
			}
		}
		lead := !c.reading && (!c.hasFront || !pos.Before(c.front))
		if !lead {
			c.progressedLocked(p.idx) // a pipeline catching up on the cache from disk
			c.mu.Unlock()
			c.privateReads.Add(1)
			seg, caughtUp, err = p.readSegment(pos, target)
			return seg, 0, caughtUp, err
		}
		c.reading, c.readFrom, c.readDone = true, pos, make(chan struct{})
		c.mu.Unlock()
		seg, caughtUp, err = p.readSegment(pos, target)
		c.mu.Lock()
		if seg != nil {
			p.waitForRoomLocked(ctx, seg, limit, p.l.policy.holdFor)
		}
		c.reading = false
		close(c.readDone)
		if seg != nil {
			c.publishLocked(seg, limit)
			seg.takenBy = p.bit
		}
		c.mu.Unlock()
		return seg, 0, caughtUp, err
	}
}

// progressedLocked notes that pipeline idx moved (took or read a span, or
// had a batch acknowledged) and wakes a reader waiting for room.
func (c *segCache) progressedLocked(idx int) {
	if idx >= len(c.progress) {
		c.progress = append(c.progress, make([]time.Time, idx+1-len(c.progress))...)
	}
	c.progress[idx] = time.Now()
	if c.room != nil {
		close(c.room)
		c.room = nil
	}
}

// waitForRoomLocked is a backfill's reader holding a fresh span it would
// publish by evicting spans a slower pipeline has not taken yet: it waits,
// with c.mu released, until taking them makes room, so the slower sink
// gets them from memory instead of reading and decoding them again while
// competing for the CPU. A backfill ends when its slowest sink does, so
// holding the faster one back costs no completion time. It waits only for
// pipelines that made progress within holdFor: one whose sink is down or
// stuck is left behind (its spans evicted as in the live loader, it reads
// them from disk later), so it holds nobody back for longer than holdFor.
// The live loader's policy holds nothing (holdFor 0): there a sink's lag
// must not delay another. The cache stays within limit; the span waiting
// is the reader's own, as it would be once published.
func (p *pipeline) waitForRoomLocked(ctx context.Context, seg *segment, limit int, holdFor time.Duration) {
	c := p.st.cache
	var began time.Time
	for {
		wake, ok := c.roomWaitLocked(seg, limit, p.bit, holdFor)
		if !ok {
			break
		}
		if began.IsZero() {
			began = time.Now()
			c.roomWaits.Add(1)
		}
		if c.room == nil {
			c.room = make(chan struct{})
		}
		room := c.room
		c.mu.Unlock()
		timer := time.NewTimer(time.Until(wake))
		select {
		case <-room:
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
		c.mu.Lock()
		if ctx.Err() != nil {
			break
		}
	}
	if !began.IsZero() {
		c.roomWaited.Add(int64(time.Since(began)))
	}
}

// roomWaitLocked says whether publishing seg would evict a span that a
// pipeline other than self (a bit), which made progress within holdFor,
// has not taken; and if so when the earliest such pipeline would count as
// stalled, the latest time to look again.
func (c *segCache) roomWaitLocked(seg *segment, limit int, self uint64, holdFor time.Duration) (time.Time, bool) {
	if holdFor <= 0 || seg.bytes > limit || !c.hasFront || c.front != seg.start || c.sinks > 64 {
		return time.Time{}, false // not cached, or the cache restarts anyway
	}
	all := uint64(1)<<c.sinks - 1
	if c.sinks == 64 {
		all = ^uint64(0)
	}
	now := time.Now()
	var wake time.Time
	over := c.bytes + seg.bytes - limit
	for _, s := range c.segs {
		if over <= 0 {
			break
		}
		over -= s.bytes
		missing := all &^ s.takenBy &^ self
		for idx := 0; missing != 0; idx++ {
			if missing&1 != 0 && idx < len(c.progress) {
				if until := c.progress[idx].Add(holdFor); until.After(now) && (wake.IsZero() || until.Before(wake)) {
					wake = until
				}
			}
			missing >>= 1
		}
	}
	return wake, !wake.IsZero()
}

// readSegment reads up to target bytes of lines from pos with the
// pipeline's tail (re-positioned only if another pipeline's segments
// moved this one on since its last read), decodes each line once and
// dead-letters what no sink can take. It returns a nil segment when
// nothing complete is there.
func (p *pipeline) readSegment(pos Position, target int) (*segment, bool, error) {
	c := p.st.cache
	if p.tail.position() != pos {
		if err := p.tail.seek(pos); err != nil {
			if ue, ok := isUnreadable(err); ok {
				p.st.setUnreadable(ue.key, ue.err) // retried at every change and poll
				return nil, true, nil
			}
			return nil, false, err
		}
	}
	s := &segment{start: pos, end: pos, pool: &c.pool, items: c.pool.itemSlice()}
	s.refs.Store(1) // the reader's
	var read, decoded int64
	defer func() {
		c.linesRead.Add(read)
		c.linesDecoded.Add(decoded)
	}()
	caughtUp := false
	from := pos
	for s.bytes < target && len(s.items) < 4*DefaultMaxRecords {
		it, err := p.tail.next()
		if err == errCaughtUp {
			caughtUp = true
			break
		}
		if ue, ok := isUnreadable(err); ok {
			// Files load in order: wait at this one (reported, retried at
			// every change and poll) rather than skip it or stop.
			p.st.setUnreadable(ue.key, ue.err)
			caughtUp = true
			break
		}
		if err != nil {
			// What was read is dropped; the tail is past it, so the next
			// read seeks back (its dead letters are not written twice).
			s.release()
			return nil, false, err
		}
		si := segItem{kind: it.kind, from: from, pos: it.pos, end: it.end, length: it.length}
		switch it.kind {
		case itemNewFile:
		case itemTooLong:
			read++
			si.bad = true
			err = p.deadLetterFromDisk(it, ReasonLineTooLong, fmt.Sprintf("line of %d bytes exceeds the %d-byte limit", it.length, p.maxLine))
		case itemTorn:
			read++
			si.bad = true
			detail := "the file was sealed with a partial last line (writer crashed mid-append)"
			if it.line == nil {
				err = p.deadLetterFromDisk(it, ReasonTruncatedLine, detail)
			} else {
				err = p.deadLetter(it, ReasonTruncatedLine, detail, it.line)
			}
		case itemLine:
			read++
			decoded++
			// The chunk has room past target, so the line that reaches
			// it does not take a second chunk for itself.
			si.line = s.copyLine(it.line, target+target/8)
			// The record's Row and strings point into the segment's copy.
			rec, derr := p.l.cfg.Schema.Decode(si.line, p.st.cfg.DefaultTable)
			if derr != nil {
				reason := "invalid"
				var serr *schema.Error
				if errors.As(derr, &serr) {
					reason = string(serr.Reason)
				}
				si.bad = true
				err = p.deadLetter(it, reason, derr.Error(), si.line)
				break
			}
			si.rec, si.id = rec, rec.ID
			if si.id == "" {
				si.id = p.st.name + "/" + it.pos.File + "/" + strconv.FormatInt(it.pos.Offset, 10)
			}
		}
		if err != nil {
			s.release()
			return nil, false, err
		}
		s.items = append(s.items, si)
		from = it.end
	}
	if len(s.items) == 0 {
		s.release() // gives the empty list back to the pool
		return nil, caughtUp, nil
	}
	s.end = from
	c.segsRead.Add(1)
	return s, caughtUp, nil
}

// StreamStats counts how a stream's lines were read and shared by its
// pipelines. With every sink keeping pace, LinesRead and LinesDecoded
// equal the stream's lines however many sinks there are; a sink that fell
// behind the cache reads (and counts) its lines again.
type StreamStats struct {
	LinesRead         int64 // lines read from disk, by any pipeline
	LinesDecoded      int64 // schema decodes
	SegmentsRead      int64 // spans read from disk
	SegmentsPublished int64 // spans put in the cache by the pipeline furthest ahead
	SegmentsShared    int64 // spans a pipeline took from the cache instead of reading
	LinesShared       int64 // lines in those spans
	PrivateReads      int64 // spans read by a pipeline behind the cache, not published
	CacheBytes        int   // line bytes the cache holds now
	CachePeakBytes    int   // the most it has held
	CacheLimitBytes   int   // its bound: its share of Config.CacheBytes, at most 4 × Batch.MaxBytes; segments every pipeline has had leave before
	// EvictedUntaken counts spans the cache let go before every pipeline
	// had them: each one a pipeline then reads and decodes from disk.
	EvictedUntaken int64
	// RoomWaits counts the times a backfill's reader held a span back
	// until a slower sink took older ones (see [BackfillConfig.HoldFor]),
	// and RoomWaited is how long that took in all.
	RoomWaits  int64
	RoomWaited time.Duration
	// DeadLettered counts the lines this run dead-lettered because no
	// sink could take them (invalid JSON, a schema error, too long).
	DeadLettered int64
	// Sinks holds what each sink's pipeline of the stream did, by sink name.
	Sinks map[string]SinkStats
}

// SinkStats is what one sink's pipeline of a stream did in this run.
type SinkStats struct {
	LinesRead int64 // lines it took, from the cache or from disk
	Delivered int64 // records the sink acknowledged as durable
	Rejected  int64 // records the sink refused, dead-lettered with its name
	Filtered  int64 // valid lines a backfill's filter skipped
	NotRouted int64 // valid lines its route does not select
	// LagBytes is the stream's bytes after the sink's checkpoint, as last
	// measured (each PollInterval × 10, at least every second); -1 before
	// the first measure.
	LagBytes int64
}

// Stats is a snapshot of every stream's [StreamStats], by stream name.
type Stats struct {
	Streams map[string]StreamStats
}

func (c *segCache) stats() StreamStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return StreamStats{
		LinesRead: c.linesRead.Load(), LinesDecoded: c.linesDecoded.Load(),
		SegmentsRead: c.segsRead.Load(), SegmentsPublished: c.segsPublished.Load(),
		SegmentsShared: c.segsShared.Load(), LinesShared: c.sharedLines.Load(),
		PrivateReads: c.privateReads.Load(), EvictedUntaken: c.evictedUntaken.Load(),
		RoomWaits: c.roomWaits.Load(), RoomWaited: time.Duration(c.roomWaited.Load()),
		CacheBytes: c.bytes, CachePeakBytes: c.peak, CacheLimitBytes: c.limit,
	}
}

// Stats returns how each stream's lines were read, decoded, shared and
// delivered so far; it is safe to call at any time, also after Run
// returned.
func (l *Loader) Stats() Stats {
	l.mu.Lock()
	streams := make([]*stream, 0, len(l.streams))
	for _, st := range l.streams {
		streams = append(streams, st)
	}
	l.mu.Unlock()
	return l.stats(streams)
}

// Stats returns how each stream's lines were read, decoded, shared and
// delivered so far; it is safe to call at any time.
func (b *Backfill) Stats() Stats { return b.l.stats(b.streams) }

func (l *Loader) stats(streams []*stream) Stats {
	out := Stats{Streams: map[string]StreamStats{}}
	for _, st := range streams {
		ss := st.cache.stats()
		ss.DeadLettered = l.dl.count(st.name, "")
		ss.Sinks = map[string]SinkStats{}
		for _, spec := range l.sinks {
			name := spec.Sink.Name()
			ps := l.pipeStats(st.name, name)
			ss.Sinks[name] = SinkStats{
				LinesRead: ps.read.Load(), Delivered: ps.acked.Load(), Rejected: l.dl.count(st.name, name),
				Filtered: ps.filtered.Load(), NotRouted: ps.notRouted.Load(), LagBytes: ps.lag.Load(),
			}
		}
		out.Streams[st.name] = ss
	}
	return out
}
