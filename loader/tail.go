package loader

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// errCaughtUp means no complete line is available now; more may come.
var errCaughtUp = errors.New("caught up")

// ErrCheckpointBeyondFile means a checkpoint names a position the spool does
// not have: the file is gone or shorter. Starting anyway would lose or
// duplicate lines, so the loader stops with this error.
var ErrCheckpointBeyondFile = errors.New("checkpoint points beyond the spool")

const readBufSize = 1 << 20

type itemKind int

const (
	itemLine    itemKind = iota // a complete line
	itemTooLong                 // a line longer than maxLine, not held in memory
	itemTorn                    // a sealed file's last bytes, without a newline
	itemNewFile                 // the previous file is done; end is the new file's start
)

// item is what the tail yields. line aliases the tail's buffer and is valid
// until the next call.
type item struct {
	kind   itemKind
	line   []byte
	pos    Position // where the line starts
	end    Position // where the next line starts
	length int64    // bytes of the line, newline excluded
}

// tail reads one stream's files in order from a position, yielding only
// complete lines. At the end of the active file it reports errCaughtUp; once
// the file is sealed it finishes it and moves to the next. Memory is one
// buffer, grown only to hold a line of up to maxLine bytes.
type tail struct {
	st      *stream
	maxLine int

	key    string // current file; "" before the stream's first file
	f      *os.File
	sealed bool

	buf  []byte
	r, w int   // unread bytes are buf[r:w]
	off  int64 // file offset of buf[r]

	skipping  bool  // inside a line longer than maxLine
	skipStart int64 // its start
}

func newTail(st *stream, maxLine int) *tail {
	return &tail{st: st, maxLine: maxLine, buf: make([]byte, min(readBufSize, maxLine+1))}
}

// seek positions the tail at pos, which must exist in the spool.
func (t *tail) seek(pos Position) error {
	t.close()
	t.key, t.off, t.r, t.w, t.sealed, t.skipping = pos.File, pos.Offset, 0, 0, false, false
	if pos.File == "" {
		return nil
	}
	f, err := t.st.open(pos.File)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		// The file is there but cannot be read now (permissions, I/O):
		// the caller waits and retries, as the file may become readable.
		return &unreadableError{key: pos.File, err: err}
	}
	if err != nil {
		return fmt.Errorf("%w: stream %s: %s: %v", ErrCheckpointBeyondFile, t.st.name, pos, err)
	}
	t.st.setUnreadable(pos.File, nil)
	fi, err := f.Stat()
	if err == nil && fi.Size() < pos.Offset {
		err = fmt.Errorf("file has %d bytes", fi.Size())
	}
	if err == nil {
		_, err = f.Seek(pos.Offset, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("%w: stream %s: %s: %v", ErrCheckpointBeyondFile, t.st.name, pos, err)
	}
	t.f = f
	return nil
}

// position is where the next line starts.
func (t *tail) position() Position { return Position{File: t.key, Offset: t.off} }

func (t *tail) close() {
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
}

// next returns the next item, or errCaughtUp.
func (t *tail) next() (item, error) {
	for {
		if t.f == nil {
			if t.key != "" {
				if err := t.seek(t.position()); err != nil {
					return item{}, err
				}
			} else {
				first, ok, err := t.st.next("")
				if err != nil || !ok {
					return item{}, cmpErr(err, errCaughtUp)
				}
				if err := t.seek(Position{File: first.key}); err != nil {
					return item{}, err
				}
			}
		}
		data := t.buf[t.r:t.w]
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			start := t.off
			t.r += i + 1
			t.off += int64(i) + 1
			if t.skipping {
				t.skipping = false
				return t.tooLong(itemTooLong, t.skipStart, start+int64(i)), nil
			}
			return item{kind: itemLine, line: data[:i], pos: Position{t.key, start}, end: t.position(), length: int64(i)}, nil
		}
		if t.skipping || len(data) > t.maxLine {
			// Too long to hold: remember where it started, drop the bytes
			// and keep looking for its end.
			if !t.skipping {
				t.skipping, t.skipStart = true, t.off
			}
			t.off += int64(len(data))
			t.r, t.w = 0, 0
		}
		n, err := t.fill()
		if n > 0 {
			continue
		}
		if err != nil && err != io.EOF {
			return item{}, fmt.Errorf("read %s/%s: %w", t.st.name, t.key, err)
		}
		if !t.sealed {
			sealed, err := t.st.src.sealed(t.key)
			if err != nil {
				return item{}, err
			}
			if !sealed {
				return item{}, errCaughtUp
			}
			// Read once more: the writer finished the file before the
			// rename, so what it wrote is all there now.
			t.sealed = true
			continue
		}
		if t.skipping {
			t.skipping = false
			return t.tooLong(itemTorn, t.skipStart, t.off), nil
		}
		if t.w > t.r {
			start := t.off
			line := t.buf[t.r:t.w]
			t.off += int64(len(line))
			t.r, t.w = 0, 0
			return item{kind: itemTorn, line: line, pos: Position{t.key, start}, end: t.position(), length: int64(len(line))}, nil
		}
		nf, ok, err := t.st.next(t.key)
		if err != nil || !ok {
			return item{}, cmpErr(err, errCaughtUp)
		}
		t.close()
		t.key, t.off, t.sealed, t.r, t.w = nf.key, 0, false, 0, 0
		return item{kind: itemNewFile, pos: t.position(), end: t.position()}, nil
	}
}

// tooLong describes a line [start, end) that was skipped rather than held;
// its bytes are copied to the dead-letter file from disk.
func (t *tail) tooLong(kind itemKind, start, end int64) item {
	return item{kind: kind, pos: Position{t.key, start}, end: t.position(), length: end - start}
}

// fill reads more bytes after compacting, growing the buffer only while a
// line does not fit and shrinking it again afterwards.
func (t *tail) fill() (int, error) {
	if t.r > 0 {
		t.w = copy(t.buf, t.buf[t.r:t.w])
		t.r = 0
	}
	if t.w < readBufSize/2 && len(t.buf) > readBufSize {
		small := make([]byte, readBufSize)
		t.w = copy(small, t.buf[:t.w])
		t.buf = small
	}
	if t.w == len(t.buf) {
		grown := make([]byte, min(2*len(t.buf), t.maxLine+1))
		copy(grown, t.buf[:t.w])
		t.buf = grown
	}
	n, err := t.f.Read(t.buf[t.w:])
	t.w += n
	return n, err
}

func cmpErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}
