package rotatefile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Writer appends lines to the offline files of one stream. It is safe for
// concurrent use. Appends are buffered in memory and written by one flush
// goroutine; a second goroutine fsyncs and seals files behind it, so writing
// never waits for the disk except at rotation. The Writer owns both and
// [Writer.Close] stops them.
type Writer struct {
	opts Options
	dir  string // Dir/Stream
	lock *os.File

	mu        sync.Mutex
	space     sync.Cond // signalled when buffered bytes drop, the writer un-sticks or closes
	open      *batch    // the batch appends go into
	openSince time.Time // when the open batch got its first line
	full      []*batch  // batches cut for the flusher, in order
	buffered  int       // bytes held in open and full
	fileBytes int64     // bytes assigned to the current file, written or not
	fileFirst time.Time // when the current file got its first line; zero if none
	// stuck is set while a batch whose appends already returned nil cannot
	// be written (SyncInterval, SyncNone). New appends fail with it, so the
	// caller sheds load instead of piling up lines we may not be able to store.
	stuck  error
	closed bool
	free   [][]byte // recycled batch buffers

	kick chan struct{}
	quit chan struct{}
	done chan struct{}

	// Owned by the flush goroutine.
	cur      *dataFile // the active file; nil until the next line arrives
	nextSeq  uint64
	unsynced int64     // bytes written since the last sync request
	syncedAt time.Time // when the last sync was requested
	backoff  time.Duration
	retryAt  time.Time // while stuck: when to try the failed batch again
	closeErr error
	sealing  *sealResult // the previous file, until the sync goroutine renamed it

	// SyncAlways group commit. groupSize and gathered are guarded by mu,
	// pending and lastSyncDur are the flush goroutine's.
	groupSize   int           // appenders the next fsync should serve
	gathered    int           // appenders in pending
	pending     []*batch      // written by gather, waiting for the next fsync
	lastSyncDur time.Duration // of the last group fsync

	syncq    chan syncReq // flush goroutine -> sync goroutine, in write order
	syncDone chan struct{}

	stats stats
}

// batch is a group of whole lines written with one write call. With
// SyncAlways, the appenders whose lines it holds wait on done.
type batch struct {
	buf     []byte
	seal    bool // the file ends after this batch
	done    chan struct{}
	err     error
	waiters int // SyncAlways appenders waiting on done
}

// Stats are the writer's counters since Open.
type Stats struct {
	Lines     uint64 // lines accepted by Append
	Bytes     uint64 // bytes accepted, newlines included
	Writes    uint64 // write calls to files
	Syncs     uint64 // fsyncs of data files
	SyncTime  time.Duration
	Rotations uint64 // files sealed
	Errors    uint64 // failed writes, syncs, creates and renames
}

type stats struct {
	lines, bytes, writes, syncs, syncNanos, rotations, errors atomic.Uint64
}

// Open starts a writer for opts.Stream under opts.Dir. It takes an exclusive
// OS lock on the stream, seals any active file left by a crashed writer and
// continues with the next sequence number.
func Open(opts Options) (*Writer, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	w := &Writer{
		opts:     opts,
		dir:      filepath.Join(opts.Dir, opts.Stream),
		kick:     make(chan struct{}, 1),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
		syncq:    make(chan syncReq, 64),
		syncDone: make(chan struct{}),
	}
	w.space.L = &w.mu
	w.open = &batch{}
	if err := os.MkdirAll(w.dir, 0o750); err != nil {
		return nil, &Error{Op: "mkdir", Path: w.dir, Err: err}
	}
	if err := w.acquireLock(); err != nil {
		return nil, err
	}
	if err := w.recover(); err != nil {
		w.lock.Close()
		return nil, err
	}
	go w.run()
	go w.syncLoop()
	return w, nil
}

const lockName = ".lock"

// acquireLock takes a non-blocking flock on Dir/Stream/.lock. The lock file
// also keeps the next sequence number, so numbering continues even after a
// reader deleted every file of the stream.
func (w *Writer) acquireLock() error {
	path := filepath.Join(w.dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, w.opts.FileMode)
	if err != nil {
		return &Error{Op: "open lock", Path: path, Err: err}
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("%w: %s (another process or Writer has stream %q open)", ErrLocked, path, w.opts.Stream)
		}
		return &Error{Op: "lock", Path: path, Err: err}
	}
	w.lock = f
	return nil
}

func (w *Writer) storedNextSeq() uint64 {
	buf := make([]byte, 64)
	n, _ := w.lock.ReadAt(buf, 0)
	s := strings.TrimSpace(string(buf[:n]))
	s, _ = strings.CutPrefix(s, "next-seq ")
	seq, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0
	}
	return seq
}

func (w *Writer) storeNextSeq(seq uint64) error {
	rec := []byte(fmt.Sprintf("next-seq %0*d\n", seqWidth, seq))
	if _, err := w.lock.WriteAt(rec, 0); err != nil {
		return &Error{Op: "write", Path: w.lock.Name(), Err: err}
	}
	if err := w.lock.Sync(); err != nil {
		return &Error{Op: "sync", Path: w.lock.Name(), Err: err}
	}
	return nil
}

// recover seals active files left by a crashed writer. A trailing partial
// line stays in the sealed file; the reader dead-letters it. Empty leftovers
// are removed, since an empty file is never sealed.
func (w *Writer) recover() error {
	fs := w.opts.fs
	entries, err := fs.ReadDir(w.dir)
	if err != nil {
		return &Error{Op: "readdir", Path: w.dir, Err: err}
	}
	next := w.storedNextSeq()
	if next == 0 {
		next = 1
	}
	changed := false
	for _, e := range entries {
		n, ok := ParseName(e.Name())
		if !ok {
			continue
		}
		if n.Seq >= next {
			next = n.Seq + 1
		}
		if !n.Active {
			continue
		}
		path := filepath.Join(w.dir, e.Name())
		if err := w.sealLeftover(path, filepath.Join(w.dir, n.Sealed)); err != nil {
			return err
		}
		changed = true
	}
	if changed {
		if err := fs.SyncDir(w.dir); err != nil {
			return &Error{Op: "sync dir", Path: w.dir, Err: err}
		}
	}
	w.nextSeq = next
	return nil
}

func (w *Writer) sealLeftover(path, sealed string) error {
	fs := w.opts.fs
	f, err := fs.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return &Error{Op: "open", Path: path, Err: err}
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() == 0 {
		f.Close()
		if err := fs.Remove(path); err != nil {
			return &Error{Op: "remove", Path: path, Err: err}
		}
		return nil
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return &Error{Op: "sync", Path: path, Err: err}
	}
	if err := fs.Rename(path, sealed); err != nil {
		return &Error{Op: "rename", Path: path, Err: err}
	}
	return nil
}

// Append stores one line. A trailing newline is optional; a newline anywhere
// else is an error. With SyncAlways, Append returns once the line is on disk;
// otherwise once it is buffered (it reaches the file within FlushInterval and
// the disk within SyncInterval). A non-nil error means the line was not
// stored and the caller should report failure (e.g. HTTP 503).
func (w *Writer) Append(line []byte) error {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	if bytes.IndexByte(line, '\n') >= 0 {
		return ErrNewline
	}
	need := len(line) + 1

	w.mu.Lock()
	for {
		if w.closed {
			w.mu.Unlock()
			return ErrClosed
		}
		if w.stuck != nil {
			err := w.stuck
			w.mu.Unlock()
			return err
		}
		if w.buffered == 0 || w.buffered+need <= w.opts.MaxBuffered {
			break
		}
		w.space.Wait()
	}
	if w.fileBytes > 0 && w.fileBytes+int64(need) > w.opts.MaxBytes {
		w.cutLocked()
	}
	if w.fileBytes == 0 {
		w.fileFirst = w.opts.now()
	}
	kick := false
	if b := w.open; len(b.buf) > 0 && len(b.buf)+need > cap(b.buf) {
		// Hand the full buffer to the flusher rather than growing it:
		// regrowing copies megabytes, and buffers are recycled at one size.
		w.full = append(w.full, b)
		w.open = &batch{}
		kick = true
	}
	b := w.open
	if len(b.buf) == 0 {
		w.openSince = w.opts.now()
		if b.buf == nil {
			b.buf = w.newBufLocked()
		}
		kick = true // the flusher arms its FlushInterval timer
	}
	b.buf = append(b.buf, line...)
	b.buf = append(b.buf, '\n')
	w.fileBytes += int64(need)
	w.buffered += need
	w.stats.lines.Add(1)
	w.stats.bytes.Add(uint64(need))
	var done chan struct{}
	if w.opts.Sync == SyncAlways {
		if b.done == nil {
			b.done = make(chan struct{})
		}
		b.waiters++
		done = b.done
		// Wake the flusher for the first appender of a group, which starts
		// its gather, when half the group is in (gather writes it) and when
		// the group is complete; waking it for every appender in between
		// only costs CPU the appenders need.
		if n := w.gathered + b.waiters; b.waiters == 1 || n == w.groupSize/2 || n >= w.groupSize {
			kick = true
		}
	} else if len(b.buf) >= w.flushBytes() {
		kick = true
	}
	w.mu.Unlock()

	if kick {
		w.signal()
	}
	if done != nil {
		<-done
		return b.err
	}
	return nil
}

// AppendJSON encodes v as one JSON line and appends it.
func (w *Writer) AppendJSON(v any) error {
	line, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("rotatefile: encode: %w", err)
	}
	return w.Append(line)
}

// Stats returns a snapshot of the writer's counters.
func (w *Writer) Stats() Stats {
	return Stats{
		Lines:     w.stats.lines.Load(),
		Bytes:     w.stats.bytes.Load(),
		Writes:    w.stats.writes.Load(),
		Syncs:     w.stats.syncs.Load(),
		SyncTime:  time.Duration(w.stats.syncNanos.Load()),
		Rotations: w.stats.rotations.Load(),
		Errors:    w.stats.errors.Load(),
	}
}

// Close writes what is buffered, seals the active file and releases the
// stream. It returns an error if buffered lines could not be stored. Calling
// Close again returns nil.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	if w.fileBytes > 0 {
		w.cutLocked()
	}
	w.space.Broadcast()
	w.mu.Unlock()

	close(w.quit)
	<-w.done
	<-w.syncDone
	err := w.closeErr
	if uerr := w.lock.Close(); err == nil && uerr != nil {
		err = &Error{Op: "unlock", Path: w.lock.Name(), Err: uerr}
	}
	return err
}

// flushBytes is the open batch size at which the flusher is woken before
// FlushInterval ends, keeping write calls large while memory stays bounded.
func (w *Writer) flushBytes() int {
	return min(w.opts.MaxBuffered/4, 1<<20)
}

// bufSize is the capacity of a batch buffer; a batch is cut when full.
func (w *Writer) bufSize() int { return w.flushBytes() + 64<<10 }

func (w *Writer) signal() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// cutLocked ends the current file after the open batch.
func (w *Writer) cutLocked() {
	w.open.seal = true
	w.full = append(w.full, w.open)
	w.open = &batch{}
	w.fileBytes = 0
	w.fileFirst = time.Time{}
	w.signal()
}

func (w *Writer) newBufLocked() []byte {
	if n := len(w.free); n > 0 {
		buf := w.free[n-1]
		w.free = w.free[:n-1]
		return buf[:0]
	}
	return make([]byte, 0, w.bufSize())
}
