package loader

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/dualwrite/ingest/rotatefile"
)

// StreamStatus is a stream's state as `ingest status` shows it.
type StreamStatus struct {
	Stream      string       `json:"stream"`
	Files       int          `json:"files"`
	Bytes       int64        `json:"bytes"`
	DeadLetters int          `json:"dead_letters"`
	Sinks       []SinkStatus `json:"sinks"`
	// Ignored are the entries of the stream's directory that are not
	// loaded, with reason and fix (see IgnoredName and the other reasons).
	Ignored []IgnoredFile `json:"ignored"`
}

// SinkStatus is one sink's progress through a stream.
type SinkStatus struct {
	Sink       string    `json:"sink"`
	Checkpoint *Position `json:"checkpoint"` // nil: the sink has not acknowledged anything yet
	LagBytes   int64     `json:"lag_bytes"`
	LagFiles   int       `json:"lag_files"`
	// OldestPending is the age of the oldest line the sink has not
	// acknowledged, as told by the file it is in: for rotatefile names the
	// creation time in the name (an upper bound), for legacy names the
	// file's last modification (a lower bound); 0 when nothing is pending.
	OldestPending time.Duration `json:"oldest_pending_ns"`
	Error         string        `json:"error,omitempty"`
}

// CheckpointFunc reads one sink's checkpoint for a stream.
type CheckpointFunc func(ctx context.Context, stream string) (Position, bool, error)

// Status inspects the spool, the dead letters and each sink's checkpoint
// without running anything. sinks maps a sink name to how to read its
// checkpoint; [FileStore.Load] serves the sinks whose checkpoints the loader
// keeps.
func Status(ctx context.Context, cfg Config, sinks map[string]CheckpointFunc) ([]StreamStatus, error) {
	cfg, err := cfg.withDefaults()
	if err != nil && cfg.Dir == "" {
		return nil, err
	}
	l := &Loader{cfg: cfg, streams: map[string]*stream{}, positions: map[string]map[string]Position{}}
	found := l.discover()
	sort.Slice(found, func(i, j int) bool { return found[i].name < found[j].name })
	names := make([]string, 0, len(sinks))
	for n := range sinks {
		names = append(names, n)
	}
	sort.Strings(names)
	now := cfg.now()
	var out []StreamStatus
	for _, st := range found {
		files, err := st.src.list()
		if err != nil {
			return nil, err
		}
		dl, err := CountDeadLetters(cfg.StateDir, st.name)
		if err != nil {
			return nil, err
		}
		ss := StreamStatus{Stream: st.name, Files: len(files), DeadLetters: int(dl)}
		ss.Ignored = st.Ignored()
		for _, f := range files {
			// What ingest run would find unreadable: try each file.
			fh, err := st.open(f.key)
			if errors.Is(err, fs.ErrNotExist) {
				continue // retired by a running loader since the listing
			}
			if err != nil {
				ss.Ignored = append(ss.Ignored, unreadableEntry(st, f.key, err))
				continue
			}
			fh.Close()
		}
		sizes := fileSizes(st.src, files)
		for _, n := range sizes {
			ss.Bytes += n
		}
		for _, name := range names {
			s := SinkStatus{Sink: name}
			pos, ok, err := sinks[name](ctx, st.name)
			if err != nil {
				s.Error = err.Error()
			}
			if ok {
				s.Checkpoint = &pos
			}
			var first int
			s.LagBytes, s.LagFiles, first = pending(files, sizes, pos, ok)
			if first >= 0 {
				f := files[first]
				if n, isRotate := rotatefile.ParseName(f.key); isRotate {
					s.OldestPending = now.Sub(n.Created)
				} else if fi, err := os.Stat(filepath.Join(st.dir, f.name)); err == nil {
					// A legacy name carries no creation time: the last
					// write is the best the file system tells (a lower
					// bound of the oldest pending line's age).
					s.OldestPending = now.Sub(fi.ModTime())
				}
			}
			ss.Sinks = append(ss.Sinks, s)
		}
		out = append(out, ss)
	}
	return out, nil
}

// pending is what a sink has not acknowledged of a stream: the bytes after
// its checkpoint pos (ok false: it has none, so all of them), the files
// holding them, and the index of the first such file (-1: none). files are
// the stream's files in key order, sizes their sizes. It is the one
// definition of a sink's byte lag, so that `ingest status` and
// ingest_lag_bytes (Loader.measureLag) cannot disagree.
func pending(files []spoolFile, sizes []int64, pos Position, ok bool) (lagBytes int64, lagFiles, first int) {
	first = -1
	for i, f := range files {
		if ok && f.key < pos.File {
			continue
		}
		lag := sizes[i]
		if ok && f.key == pos.File {
			lag -= pos.Offset
		}
		if lag <= 0 {
			continue
		}
		if first < 0 {
			first = i
		}
		lagBytes += lag
		lagFiles++
	}
	return lagBytes, lagFiles, first
}
