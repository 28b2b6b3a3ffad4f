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
// Beside it, Dir/<sink>/<stream>.live.json is renamed into place at every
// acknowledgement without waiting for an fsync ([FileStore.SaveLive]): it
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

// SaveLive renames pos into place as the live checkpoint without syncing
// anything: what a process crash cannot undo, at the cost of a write and
// a rename.
func (s FileStore) SaveLive(sink, stream string, pos Position) error {
	path := s.livePath(sink, stream)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("save live checkpoint: %w", err)
	}
	data, err := json.Marshal(pos)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o640); err != nil {
		return fmt.Errorf("save live checkpoint: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save live checkpoint: %w", err)
	}
	return nil
}

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
