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

	// fixed, set for a backfill, replaces the directory: an explicit list
	// of sealed files (see backfill.go).
	fixed *fixedFiles
	bf    *backfillRun

	cache *segCache // segments its pipelines share (segcache.go)
}

func newStream(name, dir string, cfg StreamConfig, now func() time.Time) *stream {
	return &stream{name: name, dir: dir, cfg: cfg, now: now, changed: make(chan struct{}), openFile: os.Open, cache: &segCache{}}
}

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
func (s *stream) list() ([]spoolFile, error) {
	if s.fixed != nil {
		return s.fixed.list(), nil
	}
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
func (s *stream) sealed(key string) (bool, error) {
	if s.fixed != nil {
		return true, nil
	}
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
	files, err := s.list()
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
	files, err := s.list()
	if err != nil {
		return spoolFile{}, false, err
	}
	i := sort.Search(len(files), func(i int) bool { return files[i].key > key })
	if i == len(files) {
		return spoolFile{}, false, nil
	}
	return files[i], true, nil
}

// open opens the file with key under whichever name it has now. The
// descriptor stays valid across the writer's rename.
func (s *stream) open(key string) (*os.File, error) {
	if s.fixed != nil {
		return s.fixed.open(s.name, key)
	}
	f, err := s.openFile(filepath.Join(s.dir, key+rotatefile.ActiveSuffix))
	if errors.Is(err, fs.ErrNotExist) {
		f, err = s.openFile(filepath.Join(s.dir, key))
	}
	if err != nil {
		return nil, fmt.Errorf("open %s/%s: %w", s.name, key, err)
	}
	return f, nil
}
