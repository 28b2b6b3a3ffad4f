package rotatefile

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// syncAhead bounds the bytes written but not yet synced under SyncInterval,
// so the fsync that must precede a rename at rotation stays short.
const syncAhead = 16 << 20

// dataFile is an active file. The flush goroutine writes it; the sync
// goroutine syncs and seals it.
type dataFile struct {
	f    file
	path string
	size int64 // bytes written; flush goroutine only
	// torn is set when a failed write left a partial line that could not be
	// cut back: the file is sealed before the next write. Flush goroutine only.
	torn bool
	// broken is set by the sync goroutine when an fsync failed. The kernel
	// may have dropped the dirty pages, so a retried fsync could report
	// success over lost data: nothing more is written to this file.
	broken  atomic.Bool
	syncErr error // set by whichever goroutine syncs the file: the flush goroutine until it hands the file over for sealing, then the sync goroutine
}

// syncReq asks the sync goroutine to fsync a file, then release batches,
// then (if seal) close it and rename it to its final name.
type syncReq struct {
	file    *dataFile
	batches []*batch
	sync    bool
	seal    *sealResult
}

type sealResult struct {
	done chan struct{}
	err  error
}

// run is the flush goroutine: it writes batches in order, asks for syncs per
// policy, rotates by age and retries after errors, until Close.
func (w *Writer) run() {
	defer close(w.done)
	defer close(w.syncq) // lets the sync goroutine finish what was queued
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-w.quit:
			w.drain()
			return
		case <-w.kick:
		case <-timer.C:
		}
		timer.Reset(w.flushOnce(false))
	}
}

// flushOnce takes the batches that are due, writes them and returns how long
// to sleep before the next deadline (flush, sync, age rotation or retry).
func (w *Writer) flushOnce(final bool) time.Duration {
	if w.opts.Sync == SyncAlways && !final {
		w.gather()
	}
	w.mu.Lock()
	now := w.opts.now()
	if w.fileBytes > 0 && now.Sub(w.fileFirst) >= w.opts.MaxAge {
		w.cutLocked()
	}
	if w.stuck != nil && !final && now.Before(w.retryAt) {
		w.mu.Unlock()
		return w.retryAt.Sub(now)
	}
	take := w.full
	w.full = nil
	w.gathered = 0 // the next appends wait for the fsync after this one
	if len(w.open.buf) > 0 && (final || w.opts.Sync == SyncAlways ||
		len(w.open.buf) >= w.flushBytes() || now.Sub(w.openSince) >= w.opts.FlushInterval) {
		take = append(take, w.open)
		w.open = &batch{}
	}
	w.mu.Unlock()

	w.process(take)
	if w.opts.Sync == SyncInterval && w.cur != nil && w.unsynced > 0 &&
		(w.unsynced >= syncAhead || w.opts.now().Sub(w.syncedAt) >= w.opts.SyncInterval) {
		w.requestSync(nil)
	}
	return w.nextDeadline()
}

// gather delays a SyncAlways fsync briefly until the appenders released by
// the previous one have appended again. Without it, concurrent appenders
// split into two groups that alternate, each fsync serving only half of
// them; the wait is bounded by half the last fsync's duration, and a lone
// appender never waits. Once half the group is in, gather writes it (without
// syncing) while the other half appends, so the write overlaps the gathering
// instead of adding to the time between two fsyncs.
func (w *Writer) gather() {
	w.mu.Lock()
	target, have := w.groupSize, w.gathered+w.open.waiters
	w.mu.Unlock()
	if have == 0 || have >= target {
		return
	}
	timer := time.NewTimer(min(w.lastSyncDur/2, 500*time.Microsecond))
	defer timer.Stop()
	for {
		select {
		case <-w.kick:
		case <-timer.C:
			return
		case <-w.quit:
			return
		}
		w.mu.Lock()
		var b *batch
		if len(w.full) > 0 {
			w.mu.Unlock()
			return // a full or sealing batch: flushOnce writes it in order
		}
		if w.open.waiters >= max(gatherWrite, target/2) && w.gathered+w.open.waiters < target {
			b = w.open
			w.open = &batch{}
			w.gathered += b.waiters
		}
		have = w.gathered + w.open.waiters
		w.mu.Unlock()
		if b != nil {
			if err := w.write(b.buf); err != nil {
				w.failed(w.pending, []*batch{b}, err)
				w.pending = nil
				return
			}
			w.pending = append(w.pending, b)
		}
		if have >= target {
			return
		}
	}
}

// gatherWrite is the fewest lines gather writes ahead of the group's fsync,
// so waiting appenders never cost one system call per line.
const gatherWrite = 8

func (w *Writer) nextDeadline() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.opts.now()
	next := time.Hour
	at := func(t time.Time) {
		if d := t.Sub(now); d < next {
			next = max(d, 0)
		}
	}
	if w.stuck != nil {
		at(w.retryAt)
	} else if len(w.full) > 0 {
		next = 0
	}
	if len(w.open.buf) > 0 {
		at(w.openSince.Add(w.opts.FlushInterval))
	}
	if w.fileBytes > 0 {
		at(w.fileFirst.Add(w.opts.MaxAge))
	}
	if w.opts.Sync == SyncInterval && w.unsynced > 0 {
		at(w.syncedAt.Add(w.opts.SyncInterval))
	}
	return next
}

// drain writes everything left at Close, with one last attempt for a stuck
// batch, and seals the file.
func (w *Writer) drain() {
	w.flushOnce(true)
	w.mu.Lock()
	left, stuck := w.buffered, w.stuck
	w.mu.Unlock()
	if stuck != nil {
		w.closeErr = fmt.Errorf("rotatefile: close: %d buffered bytes not stored: %w", left, stuck)
	}
	if w.cur != nil {
		// Reached only when a failed batch kept the file open.
		w.seal(nil)
	}
	if s := w.sealing; s != nil {
		<-s.done
		if w.closeErr == nil {
			w.closeErr = s.err
		}
	}
}

// process writes batches in order. Written batches are released at once,
// except with SyncAlways, where they are released after the fsync that
// covers them; batches written meanwhile share the next fsync.
func (w *Writer) process(take []*batch) {
	written := w.pending // written by gather, to be synced with take
	w.pending = nil
	for i, b := range take {
		if err := w.write(b.buf); err != nil {
			w.failed(written, take[i:], err)
			return
		}
		if w.opts.Sync != SyncAlways {
			// Its appends returned already: free its bytes now, so appenders
			// waiting for buffer space refill it while the next batch is
			// written rather than after the whole take.
			w.complete([]*batch{b}, nil)
			if b.seal {
				w.seal(nil)
			}
			continue
		}
		written = append(written, b)
		if b.seal {
			w.seal(written)
			written = nil
		}
	}
	w.release(written)
}

func (w *Writer) release(written []*batch) {
	if len(written) == 0 {
		return
	}
	if w.opts.Sync == SyncAlways && w.cur != nil {
		w.requestSync(written)
		return
	}
	w.complete(written, nil)
}

// complete releases batches; err is what their appenders get.
func (w *Writer) complete(bs []*batch, err error) {
	if len(bs) == 0 {
		return
	}
	w.mu.Lock()
	released := 0
	for _, b := range bs {
		released += b.waiters
		w.buffered -= len(b.buf)
		b.err = err
		if b.done != nil {
			close(b.done)
		}
		if len(w.free) < 8 && cap(b.buf) == w.bufSize() {
			w.free = append(w.free, b.buf)
		}
		b.buf = nil
	}
	if w.stuck != nil && err == nil {
		w.stuck = nil
		w.backoff = 0
	}
	if released > 0 {
		// Everyone released now, plus who is already waiting for the next
		// fsync, is the group the next fsync should serve.
		w.groupSize = released + w.open.waiters
	}
	w.space.Broadcast()
	w.mu.Unlock()
}

// failed handles a write error. With SyncAlways the failed batches are
// dropped and their appenders get the error: they were never told the lines
// were stored. Otherwise their appends already returned nil, so the batches
// are kept and retried with back-off while new appends fail fast.
func (w *Writer) failed(written, rest []*batch, err error) {
	w.release(written)
	if w.opts.Sync == SyncAlways {
		for _, b := range rest {
			if b.seal && w.cur != nil {
				// Keep the file boundary the appends were counted against.
				w.seal(nil)
				break
			}
		}
		w.complete(rest, err)
		return
	}
	w.mu.Lock()
	w.full = append(rest, w.full...)
	w.stuck = err
	w.backoff = min(max(2*w.backoff, 10*time.Millisecond), time.Second)
	w.retryAt = w.opts.now().Add(w.backoff)
	w.space.Broadcast()
	w.mu.Unlock()
}

// write appends p to the active file, creating it first if needed. On error
// the file is cut back to its last whole line so readers never see half a
// batch, and the batch can be retried whole.
func (w *Writer) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if w.cur != nil && (w.cur.broken.Load() || w.cur.torn) {
		w.abandon()
	}
	if w.cur == nil {
		if err := w.create(); err != nil {
			w.report(err)
			return err
		}
	}
	w.stats.writes.Add(1)
	n, err := w.cur.f.Write(p)
	if err == nil {
		w.cur.size += int64(n)
		w.unsynced += int64(n)
		return nil
	}
	werr := &Error{Op: "write", Path: w.cur.path, Err: err}
	w.report(werr)
	if n > 0 {
		if terr := w.cur.f.Truncate(w.cur.size); terr != nil {
			// The partial tail stays; the file is sealed at the next write
			// so the tail ends it and the reader dead-letters it. Not now:
			// batches written before this one may still wait for an fsync
			// of this file.
			w.report(&Error{Op: "truncate", Path: w.cur.path, Err: terr})
			w.cur.torn = true
		}
	}
	return werr
}

// create opens the next active file once the previous one is sealed, so
// only the newest file is ever active. The sequence number is stored before
// the file exists, so a crash cannot reuse it.
func (w *Writer) create() error {
	if s := w.sealing; s != nil {
		<-s.done
		w.sealing = nil
	}
	seq := w.nextSeq
	if err := w.storeNextSeq(seq + 1); err != nil {
		return err
	}
	w.nextSeq = seq + 1
	path := filepath.Join(w.dir, FileName(seq, w.opts.now(), w.opts.Ext)+ActiveSuffix)
	f, err := w.opts.fs.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, w.opts.FileMode)
	if err != nil {
		return &Error{Op: "create", Path: path, Err: err}
	}
	if err := w.opts.fs.SyncDir(w.dir); err != nil {
		f.Close()
		w.opts.fs.Remove(path)
		return &Error{Op: "sync dir", Path: w.dir, Err: err}
	}
	w.cur = &dataFile{f: f, path: path}
	w.unsynced, w.syncedAt = 0, w.opts.now()
	return nil
}

// requestSync syncs the active file and then releases batches. With
// SyncAlways the flush goroutine syncs itself: appends that arrive meanwhile
// gather into the next batch and share the next fsync, and an fsync racing
// with appends to the same file was measured to be many times slower.
// Otherwise the sync goroutine does it while writing goes on.
func (w *Writer) requestSync(batches []*batch) {
	if w.opts.Sync == SyncAlways {
		start := time.Now()
		err := w.syncFile(w.cur)
		w.lastSyncDur = time.Since(start)
		w.complete(batches, err)
	} else {
		w.syncq <- syncReq{file: w.cur, batches: batches, sync: true}
	}
	w.unsynced, w.syncedAt = 0, w.opts.now()
}

// seal hands the active file to the sync goroutine to be synced and renamed;
// batches are released after that. The next create waits for it.
func (w *Writer) seal(batches []*batch) {
	if w.cur == nil {
		w.complete(batches, nil)
		return
	}
	w.sealing = &sealResult{done: make(chan struct{})}
	w.syncq <- syncReq{file: w.cur, batches: batches, sync: true, seal: w.sealing}
	w.cur, w.unsynced = nil, 0
}

// abandon seals the active file after a failed fsync, without syncing it
// again, or after a torn write that could not be cut back.
func (w *Writer) abandon() {
	w.sealing = &sealResult{done: make(chan struct{})}
	w.syncq <- syncReq{file: w.cur, sync: !w.cur.broken.Load(), seal: w.sealing}
	w.cur, w.unsynced = nil, 0
}

// syncLoop is the sync goroutine. Requests queued while an fsync runs are
// served by one fsync: it covers every byte written before it started.
func (w *Writer) syncLoop() {
	defer close(w.syncDone)
	for req := range w.syncq {
		reqs := []syncReq{req}
	more:
		for reqs[len(reqs)-1].seal == nil {
			select {
			case r, ok := <-w.syncq:
				if !ok {
					break more
				}
				reqs = append(reqs, r)
			default:
				break more
			}
		}
		w.serve(reqs)
	}
}

// serve handles requests for one file; only the last may seal it.
func (w *Writer) serve(reqs []syncReq) {
	df := reqs[0].file
	var err error
	for _, r := range reqs {
		if r.sync {
			err = w.syncFile(df)
			break
		}
	}
	for _, r := range reqs {
		w.complete(r.batches, err)
	}
	if s := reqs[len(reqs)-1].seal; s != nil {
		s.err = w.closeAndRename(df)
		if s.err == nil {
			s.err = err
		}
		close(s.done)
	}
}

func (w *Writer) syncFile(df *dataFile) error {
	if df.broken.Load() {
		return df.syncErr
	}
	start := time.Now()
	err := df.f.Sync()
	d := time.Since(start)
	w.stats.syncs.Add(1)
	w.stats.syncNanos.Add(uint64(d))
	if h := w.opts.Hooks.OnSync; h != nil {
		h(d, err)
	}
	if err != nil {
		df.syncErr = &Error{Op: "sync", Path: df.path, Err: err}
		df.broken.Store(true)
		w.report(df.syncErr)
		return df.syncErr
	}
	return nil
}

// closeAndRename seals a file under its final name and syncs the directory
// so the rename survives a crash.
func (w *Writer) closeAndRename(df *dataFile) error {
	var first error
	fail := func(err error) {
		w.report(err)
		if first == nil {
			first = err
		}
	}
	if err := df.f.Close(); err != nil {
		fail(&Error{Op: "close", Path: df.path, Err: err})
	}
	sealed := strings.TrimSuffix(df.path, ActiveSuffix)
	if err := w.opts.fs.Rename(df.path, sealed); err != nil {
		fail(&Error{Op: "rename", Path: df.path, Err: err})
		return first
	}
	if err := w.opts.fs.SyncDir(w.dir); err != nil {
		fail(&Error{Op: "sync dir", Path: w.dir, Err: err})
	}
	w.stats.rotations.Add(1)
	if h := w.opts.Hooks.OnRotate; h != nil {
		h(sealed)
	}
	return first
}

func (w *Writer) report(err error) {
	w.stats.errors.Add(1)
	if h := w.opts.Hooks.OnError; h != nil {
		h(err)
	}
}
