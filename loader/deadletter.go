package loader

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"
)

// Dead-letter reasons the loader itself gives; the decoder's reasons
// (schema.Reason) and the sinks' (e.g. "db_rejected", "too_large") join them.
const (
	ReasonLineTooLong   = "line_too_long"  // longer than Config.MaxLineBytes
	ReasonTruncatedLine = "truncated_line" // a sealed file ends without a newline
)

// DeadLetter is one entry of a dead-letter file
// (<state_dir>/deadletter/<stream>/<date>.ndjson, one JSON object per line).
// Line holds the line when it is valid UTF-8, LineBase64 otherwise, so the
// original bytes can always be recovered.
type DeadLetter struct {
	Time       time.Time `json:"time"`
	Stream     string    `json:"stream"`
	Sink       string    `json:"sink,omitempty"` // set when a sink rejected the record
	Reason     string    `json:"reason"`
	Detail     string    `json:"detail,omitempty"`
	File       string    `json:"file"`
	Offset     int64     `json:"offset"`
	Length     int64     `json:"length"`
	Line       *string   `json:"line,omitempty"`
	LineBase64 string    `json:"line_base64,omitempty"`
}

// deadLetters appends entries to the per-stream, per-UTC-day files. Writes
// are buffered; Sync makes them durable, and the loader syncs before any
// checkpoint can pass a dead-lettered line.
type deadLetters struct {
	dir     string
	now     func() time.Time
	metrics *metrics
	log     *slog.Logger // nil: discard

	mu    sync.Mutex
	files map[string]*dlFile // by stream
	// written holds, per stream and sink ("" for lines no sink could
	// take), the positions dead-lettered after that pipeline's checkpoint:
	// a replay (after a crash or a sink failure) meets those lines again
	// and must not write them twice. Seeded from the files at start,
	// pruned as the checkpoint passes them.
	written map[dlKey]map[Position]struct{}
	// counts are the lines this run dead-lettered, for [Loader.Stats].
	counts map[dlKey]int64
}

type dlKey struct{ stream, sink string }

type dlFile struct {
	day   string
	f     *os.File
	w     *bufio.Writer
	dirty bool
}

func newDeadLetters(dir string, now func() time.Time, m *metrics) *deadLetters {
	return &deadLetters{dir: dir, now: now, metrics: m, files: map[string]*dlFile{}, written: map[dlKey]map[Position]struct{}{}, counts: map[dlKey]int64{}}
}

// write appends an entry holding line.
func (d *deadLetters) write(e DeadLetter, line []byte) error {
	e.Length = int64(len(line))
	if utf8.Valid(line) {
		s := string(line)
		e.Line = &s
	} else {
		e.LineBase64 = base64.StdEncoding.EncodeToString(line)
	}
	return d.append(e, nil)
}

// writeFrom appends an entry whose line is too long to hold in memory: it is
// copied from r (e.Length bytes) into line_base64 in small pieces.
func (d *deadLetters) writeFrom(e DeadLetter, r io.Reader) error {
	return d.append(e, r)
}

func (d *deadLetters) append(e DeadLetter, body io.Reader) error {
	e.Time = d.now().UTC()
	d.mu.Lock()
	defer d.mu.Unlock()
	k, pos := dlKey{e.Stream, e.Sink}, Position{File: e.File, Offset: e.Offset}
	if _, dup := d.written[k][pos]; dup {
		return nil // written before this replay (or before a restart)
	}
	df, err := d.fileLocked(e.Stream, e.Time)
	if err != nil {
		return err
	}
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if body == nil {
		df.w.Write(data)
	} else {
		// Splice the streamed line in before the closing brace.
		df.w.Write(data[:len(data)-1])
		df.w.WriteString(`,"line_base64":"`)
		enc := base64.NewEncoder(base64.StdEncoding, df.w)
		if _, err := io.CopyN(enc, body, e.Length); err != nil {
			return fmt.Errorf("dead letter %s:%d: copy line: %w", e.File, e.Offset, err)
		}
		enc.Close()
		df.w.WriteString(`"}`)
	}
	if err := df.w.WriteByte('\n'); err != nil {
		return fmt.Errorf("write dead letter: %w", err)
	}
	df.dirty = true
	if d.written[k] == nil {
		d.written[k] = map[Position]struct{}{}
	}
	d.written[k][pos] = struct{}{}
	d.counts[k]++
	d.metrics.deadLettered(e.Stream, e.Sink, e.Reason)
	return nil
}

// count returns how many lines of stream this run dead-lettered for sink
// ("" for lines no sink could take).
func (d *deadLetters) count(stream, sink string) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.counts[dlKey{stream, sink}]
}

// seed loads the positions of a stream's dead letters from sink (""
// for the loader's own) at or after from, the pipeline's checkpoint: the
// lines it will read again. Entries it cannot parse (a torn last line
// after a crash) are skipped: they hold no position to match.
func (d *deadLetters) seed(stream, sink string, from Position) error {
	files, err := filepath.Glob(filepath.Join(d.dir, stream, "*.ndjson"))
	if err != nil {
		return err
	}
	found := map[Position]struct{}{}
	for _, f := range files {
		if err := scanDeadLetterPositions(f, func(e dlPosition) {
			if e.Sink == sink {
				if p := (Position{File: e.File, Offset: e.Offset}); !p.Before(from) {
					found[p] = struct{}{}
				}
			}
		}); err != nil {
			return fmt.Errorf("dead letters: %w", err)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	k := dlKey{stream, sink}
	if d.written[k] == nil {
		d.written[k] = found
		return nil
	}
	for p := range found {
		d.written[k][p] = struct{}{}
	}
	return nil
}

// forget drops the positions before a pipeline's new checkpoint: nothing
// before it is read again.
func (d *deadLetters) forget(stream, sink string, before Position) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for p := range d.written[dlKey{stream, sink}] {
		if p.Before(before) {
			delete(d.written[dlKey{stream, sink}], p)
		}
	}
}

// dlPosition is the part of a dead letter that identifies its line.
type dlPosition struct {
	Sink   string `json:"sink"`
	File   string `json:"file"`
	Offset int64  `json:"offset"`
}

func scanDeadLetterPositions(path string, visit func(dlPosition)) error {
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	sc.Buffer(nil, 64<<20) // an entry holds its whole line
	for sc.Scan() {
		var e dlPosition
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.File != "" {
			visit(e)
		}
	}
	return sc.Err()
}

func (d *deadLetters) fileLocked(stream string, t time.Time) (*dlFile, error) {
	day := t.Format("2006-01-02")
	df := d.files[stream]
	if df != nil && df.day == day {
		return df, nil
	}
	if df != nil {
		if err := df.close(); err != nil {
			return nil, err
		}
	}
	dir := filepath.Join(d.dir, stream)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	path := filepath.Join(dir, day+".ndjson")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	if cut, err := dropTornTail(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("dead letters %s: drop a torn last entry: %w", path, err)
	} else if cut > 0 && d.log != nil {
		d.log.Warn("dead letters: dropped the torn last entry a crash left; its line is dead-lettered again when read again",
			"file", path, "bytes", cut)
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, err
	}
	df = &dlFile{day: day, f: f, w: bufio.NewWriterSize(f, 64<<10)}
	d.files[stream] = df
	return df, nil
}

// dropTornTail cuts what follows the last newline of f: an entry a kill
// left half written (the buffered writer flushes whatever fills its
// buffer, so a burst of dead letters reaches the file in pieces before
// the sync). Appending after it would glue the next entry onto it, a line
// no reader parses. The cut entry was never synced, so no checkpoint
// passed its line: that line is read and dead-lettered again. It returns
// how many bytes it cut.
func dropTornTail(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	end := fi.Size()
	buf := make([]byte, 64<<10)
	keep := end
	for keep > 0 {
		n := min(int64(len(buf)), keep)
		if _, err := f.ReadAt(buf[:n], keep-n); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			keep += int64(i) + 1 - n
			break
		}
		keep -= n
	}
	if keep == end {
		return 0, nil
	}
	if err := f.Truncate(keep); err != nil {
		return 0, err
	}
	return end - keep, nil
}

// sync makes every entry written so far durable.
func (d *deadLetters) sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, df := range d.files {
		if err := df.sync(); err != nil {
			return err
		}
	}
	return nil
}

func (d *deadLetters) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var first error
	for s, df := range d.files {
		if err := df.close(); err != nil && first == nil {
			first = err
		}
		delete(d.files, s)
	}
	return first
}

func (df *dlFile) sync() error {
	if !df.dirty {
		return nil
	}
	if err := df.w.Flush(); err != nil {
		return fmt.Errorf("dead letters %s: %w", df.f.Name(), err)
	}
	if err := df.f.Sync(); err != nil {
		return fmt.Errorf("dead letters %s: %w", df.f.Name(), err)
	}
	df.dirty = false
	return nil
}

func (df *dlFile) close() error {
	err := df.sync()
	if cerr := df.f.Close(); err == nil {
		err = cerr
	}
	return err
}
