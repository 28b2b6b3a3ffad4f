package loader

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dualwrite/ingest/rotatefile"
)

// stream is one directory of offline files. Its pipelines (one per sink)
// share it: the file listing rules and the change notification.
type stream struct {
	name string
	dir  string
	cfg  StreamConfig
	now  func() time.Time

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change seen
	ign     ignoredSet    // entries not loaded, and why (ignored.go)

	openFile func(string) (*os.File, error) // os.Open; tests inject failures

	// src is where the files come from: the spool directory (spoolDir)
	// or a backfill's fixed list (fixedFiles).
	src source

	cache *segCache // segments its pipelines share (segcache.go)
}

// source is where a stream's files come from and what becomes of them.
// The pipelines, the tail and the janitor see a stream only through it, so
// a live stream and a backfill's run on the same engine.
type source interface {
	// list returns the files in creation (lexical) order.
	list() ([]spoolFile, error)
	// sealed reports whether the file with key is complete now.
	sealed(key string) (bool, error)
	// open opens the file with key under whichever name it has now.
	open(key string) (*os.File, error)
	// path is where a listed file is now.
	path(f spoolFile) string
	// retire lets go of the files before the file key every sink's
	// checkpoint has passed.
	retire(l *Loader, key string)
	// exhausted reports whether no line can ever follow pos: the end of a
	// fixed list. A spool directory never is.
	exhausted(pos Position) bool
}

// newStream returns a stream of the spool directory dir.
func newStream(name, dir string, cfg StreamConfig, now func() time.Time) *stream {
	s := &stream{name: name, dir: dir, cfg: cfg, now: now, changed: make(chan struct{}), openFile: os.Open, cache: &segCache{}}
	s.src = spoolDir{s}
	return s
}

// spoolDir is a live stream's source: its directory, where the writer
// appends to an ".open" file and renames it once sealed. Files every sink
// has passed are deleted, or archived when Config.Retention is set.
type spoolDir struct{ s *stream }

// wait returns a channel closed at the next change. Take it before looking
// for data, so a change between the look and the wait is not missed.
func (s *stream) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *stream) notify() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// spoolFile is a file of a stream. key is its sealed name, the identity
// positions use; name is its name on disk now.
type spoolFile struct {
	key    string
	name   string
	active bool
}

// matches reports whether a sealed name belongs to the stream: a rotatefile
// name, or for legacy writers a name matching the stream's pattern.
func (s *stream) matches(key string) bool {
	if strings.HasPrefix(key, ".") {
		return false
	}
	if s.cfg.Pattern == "" {
		_, ok := rotatefile.ParseName(key)
		return ok
	}
	ok, _ := filepath.Match(s.cfg.Pattern, key)
	return ok
}

// list returns the stream's files in creation (lexical) order. A listing is
// not atomic: a file renamed from ".open" while listing may show up under
// both names or neither; both collapse into one key here, and the reader
// re-checks what it opens.
func (d spoolDir) list() ([]spoolFile, error) {
	s := d.s
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list stream %s: %w", s.name, err)
	}
	byKey := map[string]*spoolFile{}
	ignored := map[string]IgnoredFile{}
	skip := func(e fs.DirEntry) {
		if f, report := s.classify(e); report {
			ignored[f.Name] = f
		}
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			skip(e)
			continue
		}
		name := e.Name()
		key, open := strings.CutSuffix(name, rotatefile.ActiveSuffix)
		if !s.matches(key) {
			skip(e)
			continue
		}
		if f, dup := byKey[key]; dup {
			if !open { // the sealed name wins
				f.name, f.active = name, false
			}
			continue
		}
		byKey[key] = &spoolFile{key: key, name: name, active: open}
	}
	files := make([]spoolFile, 0, len(byKey))
	for _, f := range byKey {
		files = append(files, *f)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].key < files[j].key })
	s.setListed(ignored)
	if s.cfg.Pattern != "" {
		s.markLegacyActive(files)
	}
	return files, nil
}

// markLegacyActive applies the legacy rule: a file without ".open" is
// complete once a newer file exists and it has not changed for SealAfter.
func (s *stream) markLegacyActive(files []spoolFile) {
	for i := range files {
		f := &files[i]
		if f.active {
			continue
		}
		if i == len(files)-1 {
			f.active = true
			continue
		}
		fi, err := os.Stat(filepath.Join(s.dir, f.name))
		if err != nil || s.now().Sub(fi.ModTime()) < s.cfg.SealAfter {
			f.active = true
		}
	}
}

// sealed reports whether the file with key is complete now.
func (d spoolDir) sealed(key string) (bool, error) {
	s := d.s
	if s.cfg.Pattern == "" {
		// The writer's rename is the only way a file becomes sealed: one
		// stat answers without listing the directory on every wake-up.
		_, err := os.Stat(filepath.Join(s.dir, key))
		if err == nil {
			return true, nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			if _, err := os.Stat(filepath.Join(s.dir, key+rotatefile.ActiveSuffix)); err == nil {
				return false, nil
			}
			return false, fmt.Errorf("file %s of stream %s disappeared", key, s.name)
		}
		return false, err
	}
	files, err := d.list()
	if err != nil {
		return false, err
	}
	for _, f := range files {
		if f.key == key {
			return !f.active, nil
		}
	}
	return false, fmt.Errorf("file %s of stream %s disappeared", key, s.name)
}

// next returns the first file after key, if any.
func (s *stream) next(key string) (spoolFile, bool, error) {
	files, err := s.src.list()
	if err != nil {
		return spoolFile{}, false, err
	}
	i := sort.Search(len(files), func(i int) bool { return files[i].key > key })
	if i == len(files) {
		return spoolFile{}, false, nil
	}
	return files[i], true, nil
}

// open opens the file with key from the stream's source.
func (s *stream) open(key string) (*os.File, error) { return s.src.open(key) }

// open opens the file with key under whichever name it has now. The
// descriptor stays valid across the writer's rename.
func (d spoolDir) open(key string) (*os.File, error) {
	s := d.s
	f, err := s.openFile(filepath.Join(s.dir, key+rotatefile.ActiveSuffix))
	if errors.Is(err, fs.ErrNotExist) {
		f, err = s.openFile(filepath.Join(s.dir, key))
	}
	if err != nil {
		return nil, fmt.Errorf("open %s/%s: %w", s.name, key, err)
	}
	return f, nil
}

func (d spoolDir) path(f spoolFile) string { return filepath.Join(d.s.dir, f.name) }

func (spoolDir) exhausted(Position) bool { return false }

// retire deletes (or archives) the sealed files before key, and purges
// archives older than Retention.
func (d spoolDir) retire(l *Loader, key string) {
	files, err := d.list()
	if err != nil {
		l.cfg.Logger.Warn("retire: list", "stream", d.s.name, "err", err)
		return
	}
	for _, f := range files {
		if f.key >= key || f.active {
			break
		}
		l.retireFile(d.s, f)
	}
	if l.cfg.Retention > 0 {
		l.purgeArchive(d.s.name)
	}
}

// fileSizes returns the current size of each listed file (0 when it is
// gone).
func fileSizes(src source, files []spoolFile) []int64 {
	sizes := make([]int64, len(files))
	for i, f := range files {
		if fi, err := os.Stat(src.path(f)); err == nil {
			sizes[i] = fi.Size()
		}
	}
	return sizes
}
