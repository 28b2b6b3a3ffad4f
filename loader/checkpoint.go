package loader

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrCorruptCheckpoint marks a checkpoint that exists but cannot be trusted.
// The loader refuses to start rather than silently start over (which would
// duplicate everything) or skip ahead (which would lose lines).
var ErrCorruptCheckpoint = errors.New("corrupt checkpoint")

// FileStore keeps checkpoints as small JSON files, one per sink and stream:
// Dir/<sink>/<stream>.json. A save writes a temporary file, syncs it,
// renames it over the old one and syncs the directory, so a crash leaves
// either the old or the new checkpoint, never a torn one.
//
// Beside it, Dir/<sink>/<stream>.live.json is overwritten in place (one
// fixed-size write) at every acknowledgement without waiting for an fsync
// ([FileStore.SaveLive]): it
// survives a crash of the process (the page cache does), so a kill -9
// repeats only the batches in flight, while the pipeline never waits for a
// disk busy with other writes. After a power loss it may be older than the
// synced file, or torn: Load takes whichever valid one is further.
type FileStore struct {
	Dir string
}

func (s FileStore) path(sink, stream string) string {
	return filepath.Join(s.Dir, sink, stream+".json")
}

func (s FileStore) livePath(sink, stream string) string {
	return filepath.Join(s.Dir, sink, stream+".live.json")
}

// Load implements [CheckpointStore]: the further of the synced checkpoint
// and the live one; a live one that does not parse (torn by a power loss)
// is passed over, since the synced one is never ahead of it.
func (s FileStore) Load(ctx context.Context, sink, stream string) (Position, bool, error) {
	pos, ok, err := s.loadFile(s.path(sink, stream))
	if err != nil {
		return pos, ok, err
	}
	if live, lok, lerr := s.loadFile(s.livePath(sink, stream)); lerr == nil && lok && (!ok || pos.Before(live)) {
		return live, true, nil
	}
	return pos, ok, nil
}

// SaveLive overwrites the live checkpoint in place, padded to a fixed
// size, without a rename or an fsync: one small write into the page cache,
// which a process crash cannot undo (a write is never cut in half by a
// kill), and which a disk busy with fsyncs does not delay the way a rename
// over a file does (ext4 starts writing the file's data on such a rename).
func (s FileStore) SaveLive(sink, stream string, pos Position) error {
	path := s.livePath(sink, stream)
	data, err := json.Marshal(pos)
	if err != nil {
		return err
	}
	if len(data) >= liveSize {
		return fmt.Errorf("save live checkpoint: %d-byte position does not fit %d bytes", len(data), liveSize)
	}
	rec := make([]byte, liveSize)
	copy(rec, data)
	for i := len(data); i < liveSize-1; i++ {
		rec[i] = ' '
	}
	rec[liveSize-1] = '\n'
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o640)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(path), 0o750); err == nil {
			f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o640)
		}
	}
	if err != nil {
		return fmt.Errorf("save live checkpoint: %w", err)
	}
	_, err = f.WriteAt(rec, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("save live checkpoint: %w", err)
	}
	return nil
}

// liveSize is the live checkpoint's fixed length: a position (a file name
// of at most 255 bytes and an offset) always fits.
const liveSize = 512

func (s FileStore) loadFile(path string) (Position, bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Position{}, false, nil
	}
	if err != nil {
		return Position{}, false, fmt.Errorf("read checkpoint: %w", err)
	}
	var pos Position
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pos); err != nil {
		return Position{}, false, fmt.Errorf("%w %s: %v (fix or remove the file; removing it replays the stream from its oldest file)", ErrCorruptCheckpoint, path, err)
	}
	if pos.File == "" || pos.Offset < 0 || filepath.Base(pos.File) != pos.File {
		return Position{}, false, fmt.Errorf("%w %s: invalid position %+v", ErrCorruptCheckpoint, path, pos)
	}
	return pos, true, nil
}

// Save implements [CheckpointStore].
func (s FileStore) Save(_ context.Context, sink, stream string, pos Position) error {
	path := s.path(sink, stream)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	data, err := json.Marshal(pos)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(data, '\n'))
}

// writeFileAtomic replaces path with data durably: temp file, fsync, rename,
// fsync of the directory.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
