package loader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// pipeline feeds one sink from one stream: it reads the stream from the
// sink's own checkpoint, decodes, routes and batches, keeps up to
// MaxInFlight batches at the sink, and advances the checkpoint over the
// contiguous prefix of acknowledged batches. Pipelines never wait for each
// other, so a slow or failing sink only delays itself; it re-reads from disk
// what it has not yet taken, so memory stays bounded whatever the backlog.
type pipeline struct {
	l    *Loader
	st   *stream
	spec SinkSpec
	name string
	// idx is the sink's place in the loader's list and bit its flag in
	// segment.takenBy (zero past 64 sinks: then no backfill waits).
	idx   int
	bit   uint64
	store CheckpointStore // nil when the sink owns its checkpoint
	owner CheckpointOwner
	// tail reads from disk when neither seg nor the stream's cache has
	// the span at the pipeline's position; it is re-positioned only then.
	tail *tail
	// seg is the segment being consumed and segAt its next item.
	seg      *segment
	segAt    int
	log      *slog.Logger
	sinkCtx  context.Context
	maxLine  int
	acks     chan ack
	inflight []*flight
	seq      uint64
	cur      *builder
	acked    Position // the checkpoint: all before it is durable in the sink
	// failedSeq is the first batch that failed since the last rewind; the
	// checkpoint does not pass it and no batch is submitted until the
	// pipeline rewinds.
	failedSeq uint64
	failErr   error
	// epoch holds the batches submitted since the last rewind; a failed
	// ack fails it, which voids the later batches for their sink.
	epoch   *Epoch
	backoff time.Duration
	saver   *checkpointSaver // file-store checkpoints; nil for a CheckpointOwner
	// undurable are the ends of batches the sink acknowledged but whose
	// checkpoint the saver has not yet made durable: after a crash they
	// are delivered again, so they count against MaxInFlight (plus one).
	undurable []Position
	// since is when the oldest line past the checkpoint was read (zero:
	// none): ingest_lag_seconds. It survives a rewind, so a sink that keeps
	// failing shows a growing lag rather than the age of the replay.
	since time.Time
	lagAt time.Time // when refreshLag last set ingest_lag_seconds
	// spare holds record slices of acknowledged batches for the next
	// ones (line memory is reused through the segments' pool).
	spare spare
	stats *pipeStats
}

type flight struct {
	b    *Batch
	sent time.Time
	done bool
	err  error
	read time.Time  // when its first line was read, for lag
	segs []*segment // hold the batch's lines; released once it is acked
}

type ack struct {
	f   *flight
	err error
}

// builder collects the next batch. Its records point into segments,
// which it holds until the batch is acknowledged.
type builder struct {
	start, end Position
	records    []Record
	bytes      int
	covered    int64
	first      time.Time
	deadLetter bool
	segs       []*segment
}

func (b *builder) empty() bool { return b.covered == 0 && b.end == b.start }

// release gives up the segments of a batch that is never submitted.
func (b *builder) release() {
	for _, sg := range b.segs {
		sg.release()
	}
	b.segs = nil
}

// spare is a pipeline's free list of record slices from batches the sink
// has acknowledged (and whose Submit has returned, since the pipeline's
// goroutine both submits and reads acks): the sink no longer touches them
// (see [Sink]).
type spare struct {
	records [][]Record
}

func (sp *spare) recordSlice() []Record {
	if n := len(sp.records); n > 0 {
		r := sp.records[n-1]
		sp.records = sp.records[:n-1]
		return r
	}
	return nil
}

// put takes back an acknowledged batch's memory: its record slice, and its
// hold on the segments its lines are in.
func (sp *spare) put(f *flight) {
	for _, sg := range f.segs {
		sg.release()
	}
	if r := f.b.Records; cap(r) > 0 && len(sp.records) < 4 {
		clear(r) // drop the references to the old lines and strings
		sp.records = append(sp.records, r[:0])
	}
	f.segs, f.b.Records = nil, nil
}

func (p *pipeline) settings() settings { return *p.l.settings.Load() }

// run loads the checkpoint and feeds the sink until ctx ends, then drains.
func (p *pipeline) run(ctx context.Context) error {
	if err := p.start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while a sink was still loading its checkpoint
		}
		return err
	}
	defer p.tail.close()
	defer p.dropSegment()
	if p.store != nil {
		p.startSaver()
		defer p.saver.close()
	}
	for {
		p.drainAcks()
		if ctx.Err() != nil {
			return p.shutdown()
		}
		if p.failedSeq != 0 {
			if len(p.inflight) > 0 {
				p.waitAck(ctx)
				continue
			}
			if err := p.rewind(ctx); err != nil {
				return err
			}
			continue
		}
		cfg := p.settings()
		maxInFlight := max(p.spec.MaxInFlight, 1)
		// Bound what a crash makes the sink receive again: the batches in
		// flight plus those acked past the durable checkpoint stay within
		// MaxInFlight+1 (one batch may be acked while its save runs).
		if len(p.inflight) >= maxInFlight {
			p.waitAck(ctx)
			continue
		}
		if len(p.inflight)+p.notDurable() > maxInFlight {
			p.l.boundHolds.Add(1)
			p.waitAck(ctx)
			continue
		}
		changed := p.st.wait()
		caughtUp, err := p.fill(ctx, cfg)
		if err != nil {
			if errors.Is(err, ErrCheckpointBeyondFile) {
				return err
			}
			p.fail(fmt.Errorf("read stream: %w", err))
			continue
		}
		if caughtUp && p.st.src.exhausted(p.cur.end) && p.finish(cfg) {
			return nil // a fixed list's files are all acknowledged
		}
		if p.ready(cfg, caughtUp) {
			p.submit(ctx, cfg)
			continue
		}
		if !caughtUp {
			continue
		}
		wait := p.l.cfg.PollInterval
		if !p.cur.empty() {
			wait = min(wait, max(0, cfg.batch.Linger-p.l.cfg.now().Sub(p.cur.first)))
		}
		p.refreshLag()
		timer := time.NewTimer(wait)
		select {
		case a := <-p.acks:
			p.handleAck(a)
		case <-changed:
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
	}
}

func (p *pipeline) start(ctx context.Context) error {
	var pos Position
	var ok bool
	var err error
	if p.owner != nil {
		pos, ok, err = p.owner.Checkpoint(ctx, p.st.name)
	} else {
		pos, ok, err = p.store.Load(ctx, p.name, p.st.name)
	}
	if err != nil {
		return fmt.Errorf("sink %s, stream %s: load checkpoint: %w", p.name, p.st.name, err)
	}
	if ok {
		if err := p.tail.seek(pos); err != nil {
			ue, unreadable := isUnreadable(err)
			if !unreadable {
				return fmt.Errorf("sink %s: %w", p.name, err)
			}
			p.st.setUnreadable(ue.key, ue.err) // fill retries the open
		}
		p.log.Info("resuming from checkpoint", "position", pos.String())
	}
	p.acked = pos
	p.cur = &builder{start: pos, end: pos}
	p.l.setPosition(p.st.name, p.name, pos)
	// The series exists from the start, for every sink, before any ack.
	p.updateLag()
	// Lines after the checkpoint that were dead-lettered before a crash
	// are met again: remember them so they are not written twice.
	if err := p.l.dl.seed(p.st.name, p.name, pos); err != nil {
		return fmt.Errorf("sink %s, stream %s: %w", p.name, p.st.name, err)
	}
	// Any pipeline may be the first to read a line no sink can take.
	if err := p.l.dl.seed(p.st.name, "", pos); err != nil {
		return fmt.Errorf("stream %s: %w", p.st.name, err)
	}
	p.st.cache.noteAcked(p.name, p.idx, pos)
	p.stats.begin(pos)
	return nil
}

// finish is called when the pipeline has read to the end of a source that
// grows no more: with no line to wait for, it hands over the batch being
// built at once (no linger), and reports true once every batch is
// acknowledged and the checkpoint covers the source's last byte.
func (p *pipeline) finish(cfg settings) bool {
	if p.failedSeq != 0 {
		return false
	}
	if !p.cur.empty() {
		if len(p.inflight) < max(p.spec.MaxInFlight, 1) {
			p.submit(p.sinkCtx, cfg)
		}
		return false
	}
	if len(p.inflight) > 0 || !p.st.src.exhausted(p.acked) {
		return false
	}
	p.stats.finish()
	return true
}

// ready says whether the batch being built should go to the sink now.
func (p *pipeline) ready(cfg settings, caughtUp bool) bool {
	b := p.cur
	if b.empty() {
		return false
	}
	if len(b.records) >= cfg.batch.MaxRecords || b.bytes >= cfg.batch.MaxBytes || b.covered >= 4*int64(cfg.batch.MaxBytes) {
		return true
	}
	return caughtUp && p.l.cfg.now().Sub(b.first) >= cfg.batch.Linger
}

// fill takes items into the batch being built until it is full or the
// stream has no complete line left (caughtUp). Items come from the
// segment being consumed, the stream's cache, or a read from disk.
func (p *pipeline) fill(ctx context.Context, cfg settings) (caughtUp bool, err error) {
	b := p.cur
	read := 0 // counted once per call: the labelled counter costs a lookup
	defer func() {
		if read > 0 {
			p.stats.read.Add(int64(read))
			p.l.metrics.linesRead.WithLabelValues(p.st.name, p.name).Add(float64(read))
		}
	}()
	for len(b.records) < cfg.batch.MaxRecords && b.bytes < cfg.batch.MaxBytes && b.covered < 4*int64(cfg.batch.MaxBytes) {
		if !p.l.policy.pace(ctx, p) {
			return true, nil // a paced backfill hands over its batch, or ctx ended
		}
		it, caughtUp, err := p.nextItem(ctx, cfg)
		if err != nil {
			return false, err
		}
		if caughtUp {
			return true, nil
		}
		if b.empty() {
			b.first = p.l.cfg.now()
			if p.since.IsZero() {
				p.since = b.first
			}
		}
		b.end = it.end
		b.covered += it.end.Offset - it.pos.Offset
		if it.kind == itemLine {
			read++
		}
		if it.bad {
			// Dead-lettered when it was read; the batch's submit syncs
			// the dead letters before a checkpoint can pass the line.
			b.deadLetter = true
			continue
		}
		if it.kind == itemLine {
			p.add(it, cfg)
		}
	}
	return false, nil
}

// nextItem returns the item at the pipeline's position (the end of the
// batch being built), or caughtUp.
func (p *pipeline) nextItem(ctx context.Context, cfg settings) (*segItem, bool, error) {
	for {
		if p.seg != nil {
			if p.segAt < len(p.seg.items) && p.seg.items[p.segAt].from == p.cur.end {
				it := &p.seg.items[p.segAt]
				p.segAt++
				return it, false, nil
			}
			p.dropSegment()
		}
		seg, at, caughtUp, err := p.segmentAt(ctx, p.cur.end, cfg)
		if err != nil || seg == nil {
			return nil, caughtUp, err
		}
		p.seg, p.segAt = seg, at
	}
}

// dropSegment releases the segment being consumed.
func (p *pipeline) dropSegment() {
	if p.seg != nil {
		p.seg.release()
		p.seg = nil
	}
}

// add routes a decoded line and, if it goes to this sink, adds it to the
// batch, which then holds the line's segment until the batch is acked.
func (p *pipeline) add(it *segItem, cfg settings) {
	rec := it.rec
	if !p.l.policy.keep(&rec) {
		p.stats.filtered.Add(1) // outside a backfill's accounts or time window
		return
	}
	if route := cfg.routes[p.name]; route != nil && !route(rec.Table, rec.Key) {
		p.stats.notRouted.Add(1)
		return
	}
	if n := len(p.cur.segs); n == 0 || p.cur.segs[n-1] != p.seg {
		p.seg.retain()
		p.cur.segs = append(p.cur.segs, p.seg)
	}
	if p.cur.records == nil {
		p.cur.records = p.spare.recordSlice()
	}
	p.cur.records = append(p.cur.records, Record{Record: rec, RecordID: it.id, Pos: it.pos, Line: it.line})
	p.cur.bytes += len(it.line)
}

func (p *pipeline) deadLetterEntry(it item, reason, detail string) DeadLetter {
	return DeadLetter{Stream: p.st.name, Reason: reason, Detail: detail, File: it.pos.File, Offset: it.pos.Offset, Length: it.length}
}

// deadLetter records a line no sink can take, when it is read from disk.
// Whichever pipeline reads the line first writes it; the dead letters
// remember the positions written after the oldest checkpoint of the
// stream, so a second read (a pipeline behind the cache, a replay) does not
// write it again.
func (p *pipeline) deadLetter(it item, reason, detail string, line []byte) error {
	return p.l.dl.write(p.deadLetterEntry(it, reason, detail), line)
}

func (p *pipeline) deadLetterFromDisk(it item, reason, detail string) error {
	f, err := p.st.open(it.pos.File)
	if err != nil {
		return err
	}
	defer f.Close()
	return p.l.dl.writeFrom(p.deadLetterEntry(it, reason, detail), io.NewSectionReader(f, it.pos.Offset, it.length))
}

// reject is Batch.Reject: a sink could not store a record.
func (p *pipeline) reject(_ context.Context, r *Record, reason, detail string) error {
	e := DeadLetter{Stream: p.st.name, Sink: p.name, Reason: reason, Detail: detail, File: r.Pos.File, Offset: r.Pos.Offset}
	if err := p.l.dl.write(e, r.Line); err != nil {
		return err
	}
	if p.saver != nil {
		// The loader keeps this sink's checkpoint and syncs the dead
		// letters once per acknowledgement, before the checkpoint passes
		// them (handleAck): a sync per record made a batch of records
		// the Kafka sink dead-letters for their event time 40 times
		// slower than one it delivers.
		return nil
	}
	// The sink may commit its checkpoint right after this returns.
	return p.l.dl.sync()
}

func (p *pipeline) submit(_ context.Context, cfg settings) {
	b := p.cur
	p.cur = &builder{start: b.end, end: b.end}
	if b.deadLetter {
		// A sink that keeps its own checkpoint may commit past these lines
		// as soon as it has the batch: their dead letters must be durable,
		// whichever pipeline wrote them (a no-op once they are).
		if err := p.l.dl.sync(); err != nil {
			p.fail(fmt.Errorf("sync dead letters: %w", err))
			return
		}
	}
	p.seq++
	if p.epoch == nil {
		p.epoch = NewEpoch()
	}
	batch := &Batch{Stream: p.st.name, Start: b.start, End: b.end, Records: b.records, Seq: p.seq, reject: p.reject, epoch: p.epoch}
	f := &flight{b: batch, sent: p.l.cfg.now(), read: b.first, segs: b.segs}
	p.inflight = append(p.inflight, f)
	err := p.spec.Sink.Submit(p.sinkCtx, batch, func(err error) {
		if err != nil {
			// Before the sink sees this ack return, so a later batch it
			// holds back behind this one already reads as void.
			batch.epoch.Fail(batch.Seq, batch.Stream, err)
		}
		p.acks <- ack{f: f, err: err}
	})
	if err != nil {
		// A Submit error is a failed ack that comes now: handle it the same
		// way, so the flight leaves the queue instead of being waited for.
		p.handleAck(ack{f: f, err: err})
	}
}

func (p *pipeline) waitAck(ctx context.Context) {
	var saved <-chan struct{}
	if p.saver != nil {
		saved = p.saver.saved
	}
	timer := time.NewTimer(lagRefresh)
	defer timer.Stop()
	select {
	case a := <-p.acks:
		p.handleAck(a)
	case <-saved:
	case <-timer.C:
		p.updateLag()
	case <-ctx.Done():
	}
}

// liveSaver is a checkpoint store that can also save a checkpoint that
// survives a process crash without an fsync ([FileStore.SaveLive]).
type liveSaver interface {
	SaveLive(sink, stream string, pos Position) error
}

// notDurable counts the acknowledged batches whose checkpoint would not
// survive a crash of the process yet, forgetting those that would.
func (p *pipeline) notDurable() int {
	if p.saver == nil || len(p.undurable) == 0 {
		return 0
	}
	durable := p.saver.durablePos()
	i := 0
	for i < len(p.undurable) && !durable.Before(p.undurable[i]) {
		i++
	}
	p.undurable = p.undurable[i:]
	return len(p.undurable)
}

func (p *pipeline) drainAcks() {
	for {
		select {
		case a := <-p.acks:
			p.handleAck(a)
		default:
			return
		}
	}
}

func (p *pipeline) handleAck(a ack) {
	f := a.f
	f.done, f.err = true, a.err
	p.l.metrics.batchLatency.WithLabelValues(p.name).Observe(p.l.cfg.now().Sub(f.sent).Seconds())
	if a.err != nil {
		p.noteFailure(f, a.err)
	}
	advanced, synced := false, false
	for len(p.inflight) > 0 && p.inflight[0].done {
		f := p.inflight[0]
		p.inflight = p.inflight[1:]
		if p.failedSeq != 0 && f.b.Seq >= p.failedSeq {
			p.spare.put(f)
			continue // replayed after the rewind
		}
		if p.saver != nil && !synced && f.b.rejected.Load() > 0 {
			// Dead letters of the batch (pipeline.reject) are durable
			// before the checkpoint passes their lines.
			if err := p.l.dl.sync(); err != nil {
				p.noteFailure(f, fmt.Errorf("sync dead letters: %w", err))
				p.spare.put(f)
				continue
			}
			synced = true
		}
		p.acked = f.b.End
		advanced = true
		if p.saver != nil {
			p.undurable = append(p.undurable, p.acked)
		}
		// Records the sink dead-lettered were not stored: they count as
		// dead letters (ingest_lines_dead_lettered_total), not as acked.
		stored := int64(len(f.b.Records)) - f.b.rejected.Load()
		p.stats.acked.Add(stored)
		p.l.metrics.recordsAcked.WithLabelValues(p.st.name, p.name).Add(float64(stored))
		p.l.metrics.batchesAcked.WithLabelValues(p.st.name, p.name).Inc()
		p.spare.put(f)
	}
	if advanced && p.saver != nil {
		// A live checkpoint bounds what a process crash repeats to the
		// batches in flight without waiting for the synced save below.
		if ls, ok := p.store.(liveSaver); ok {
			if err := ls.SaveLive(p.name, p.st.name, p.acked); err == nil {
				p.undurable = p.undurable[:0]
			} else {
				p.log.Warn("save live checkpoint; the synced save still runs", "err", err)
			}
		}
	}
	if advanced {
		switch {
		case len(p.inflight) > 0:
			p.since = p.inflight[0].read
		case !p.cur.empty():
			p.since = p.cur.first
		default:
			p.since = time.Time{}
		}
		p.backoff = 0
		p.saveCheckpoint()
		p.l.dl.forget(p.st.name, p.name, p.acked)
		if oldest, ok := p.st.cache.noteAcked(p.name, p.idx, p.acked); ok {
			p.l.dl.forget(p.st.name, "", oldest)
		}
	}
	p.updateLag()
}

func (p *pipeline) noteFailure(f *flight, err error) {
	p.l.metrics.batchFailed.WithLabelValues(p.st.name, p.name).Inc()
	f.b.epoch.Fail(f.b.Seq, f.b.Stream, err) // a Submit error, or a dead-letter sync
	if p.failedSeq == 0 || f.b.Seq < p.failedSeq {
		p.failedSeq, p.failErr = f.b.Seq, err
	}
}

// fail stops submitting and rewinds once nothing is in flight.
func (p *pipeline) fail(err error) {
	if p.failedSeq == 0 {
		p.failedSeq, p.failErr = p.seq+1, err
	}
}

func (p *pipeline) saveCheckpoint() {
	if p.saver == nil {
		// The sink stored it with its data (CheckpointOwner).
		p.l.setPosition(p.st.name, p.name, p.acked)
		return
	}
	p.saver.save(p.acked)
}

// checkpointSaver writes a file-store checkpoint off the pipeline's
// goroutine: each save syncs a file and a directory, which on a disk
// shared with a database can stall for tens of milliseconds, and the
// pipeline should be reading and submitting meanwhile. Saves coalesce: a
// position acked during a save replaces any older one waiting. A position
// counts for file retention (setPosition) only once it is durable.
type checkpointSaver struct {
	p       *pipeline
	mu      sync.Mutex
	next    Position
	pending bool
	durable Position      // the last position saved
	saved   chan struct{} // buffered 1: a save completed
	wake    chan struct{} // buffered 1
	stop    chan struct{}
	done    chan struct{}
}

func (p *pipeline) startSaver() {
	p.saver = &checkpointSaver{p: p, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		saved: make(chan struct{}, 1), durable: p.acked}
	go p.saver.run()
}

func (s *checkpointSaver) save(pos Position) {
	s.mu.Lock()
	s.next, s.pending = pos, true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run is the saver goroutine; close stops it after a last save of what is
// pending.
func (s *checkpointSaver) run() {
	defer close(s.done)
	for {
		select {
		case <-s.wake:
			s.flush()
		case <-s.stop:
			s.flush()
			return
		}
	}
}

func (s *checkpointSaver) flush() {
	s.mu.Lock()
	pos, pending := s.next, s.pending
	s.pending = false
	s.mu.Unlock()
	if !pending {
		return
	}
	p := s.p
	if err := p.store.Save(context.Background(), p.name, p.st.name, pos); err != nil {
		// Not fatal: the next save covers it, and a crash before then
		// replays from the older checkpoint (duplicates, no loss).
		p.log.Error("save checkpoint", "err", err)
		return
	}
	s.mu.Lock()
	s.durable = pos
	s.mu.Unlock()
	select {
	case s.saved <- struct{}{}:
	default:
	}
	p.l.setPosition(p.st.name, p.name, pos)
}

func (s *checkpointSaver) durablePos() Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.durable
}

// close saves what is pending and stops the goroutine.
func (s *checkpointSaver) close() {
	close(s.stop)
	<-s.done
}

func (p *pipeline) updateLag() {
	age := 0.0
	if !p.since.IsZero() {
		age = max(0, p.l.cfg.now().Sub(p.since).Seconds())
	}
	p.l.metrics.lagSeconds.WithLabelValues(p.st.name, p.name).Set(age)
}

// refreshLag updates ingest_lag_seconds at most every lagRefresh while
// lines wait: a sink that takes batches without acknowledging them (one
// still starting, which holds them until it can produce) leaves the
// pipeline idle with fewer than MaxInFlight batches out, where nothing
// else moves the gauge.
func (p *pipeline) refreshLag() {
	if p.since.IsZero() {
		return
	}
	if now := p.l.cfg.now(); now.Sub(p.lagAt) >= lagRefresh {
		p.lagAt = now
		p.updateLag()
	}
}

// lagRefresh is how often a pipeline that waits for acks (a sink that is
// down) refreshes ingest_lag_seconds, which otherwise moves only on acks.
const lagRefresh = time.Second

// rewind goes back to the checkpoint after a failure, with back-off.
func (p *pipeline) rewind(ctx context.Context) error {
	p.backoff = min(max(2*p.backoff, 100*time.Millisecond), maxRetryBackoff)
	p.log.Warn("sink failed; replaying from checkpoint", "err", p.failErr, "position", p.acked.String(), "retry_in", p.backoff)
	timer := time.NewTimer(p.backoff)
	defer timer.Stop()
	tick := time.NewTicker(lagRefresh)
	defer tick.Stop()
	for waiting := true; waiting; {
		p.updateLag()
		select {
		case <-timer.C:
			waiting = false
		case <-tick.C:
		case <-ctx.Done():
			return nil // run sees ctx and shuts down
		}
	}
	if err := p.tail.seek(p.acked); err != nil {
		ue, unreadable := isUnreadable(err)
		if !unreadable {
			return fmt.Errorf("sink %s: %w", p.name, err)
		}
		p.st.setUnreadable(ue.key, ue.err) // fill retries the open
	}
	p.cur.release()
	p.cur = &builder{start: p.acked, end: p.acked}
	p.dropSegment()
	p.failedSeq, p.failErr = 0, nil
	p.seq = 0 // Batch.Seq 1 tells the sink this is a replay
	p.epoch = NewEpoch()
	return nil
}

// shutdown hands over the batch being built, waits (bounded by the sink
// context, which the loader cancels after ShutdownTimeout) for what is in
// flight and leaves the checkpoint at the last contiguous ack.
func (p *pipeline) shutdown() error {
	if p.failedSeq == 0 && !p.cur.empty() {
		p.submit(p.sinkCtx, p.settings())
	}
	for len(p.inflight) > 0 {
		select {
		case a := <-p.acks:
			p.handleAck(a)
		case <-p.sinkCtx.Done():
			p.log.Warn("shutdown timeout: batches still in flight stay after the checkpoint", "batches", len(p.inflight), "position", p.acked.String())
			return nil
		}
	}
	p.backoff = 0
	return nil
}
