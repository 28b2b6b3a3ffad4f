package loader

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dualwrite/ingest/rotatefile"
	"github.com/prometheus/client_golang/prometheus"
)

// Why an entry of a stream's directory is not loaded. The loader promises
// that nothing is lost, so an entry it will not read is never skipped in
// silence: it is logged at WARN once (and again when its reason changes),
// listed by [Status] and counted by ingest_spool_ignored_files.
const (
	// IgnoredName: a regular file whose name is neither rotatefile's
	// naming (stream without a pattern) nor the stream's pattern.
	IgnoredName = "unrecognised name"
	// IgnoredNotRegular: a symlink (followed by nothing: the loader deletes
	// what it has loaded, which for a link would leave the target behind)
	// or a FIFO, socket or device.
	IgnoredNotRegular = "not a regular file"
	// IgnoredDirectory: a sub-directory; streams are not nested.
	IgnoredDirectory = "directory"
	// IgnoredUnreadable: a file the stream would load next but cannot open
	// (permissions, I/O error). It is retried at every change and poll and
	// holds the stream back, since files load in order: it is never
	// skipped for good.
	IgnoredUnreadable = "unreadable"
)

// IgnoredFile is an entry of a stream's directory that the loader does not
// load, with the reason and what to change.
type IgnoredFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	Reason string `json:"reason"`
	Detail string `json:"detail,omitempty"`
	Fix    string `json:"fix"`
}

// ignoredSet is a stream's current ignored entries and how changes to it
// are reported.
type ignoredSet struct {
	listed     map[string]IgnoredFile // from the last directory listing
	unreadable map[string]IgnoredFile // set by the reader when open fails
	log        *slog.Logger
	gauge      *prometheus.GaugeVec
	reported   map[string]string // name -> reason last logged
}

// classify says whether a directory entry that list() did not take is to
// be reported, and why. Dot-files (the writer's and editors' temporaries,
// the default state dir) are not.
func (s *stream) classify(e fs.DirEntry) (IgnoredFile, bool) {
	name := e.Name()
	if strings.HasPrefix(name, ".") {
		return IgnoredFile{}, false
	}
	path := filepath.Join(s.dir, name)
	f := IgnoredFile{Name: name}
	switch t := e.Type(); {
	case t.IsDir():
		f.Reason = IgnoredDirectory
		f.Detail = "streams are not nested: files in sub-directories are not read"
		f.Fix = fmt.Sprintf("move its files into %s, or make it a stream of its own under the spool directory", s.dir)
	case t&fs.ModeSymlink != 0:
		f.Reason = IgnoredNotRegular
		target, _ := os.Readlink(path)
		if fi, err := os.Stat(path); err != nil {
			f.Detail = fmt.Sprintf("dangling symlink to %s", target)
			f.Fix = "remove the link; if its file exists elsewhere, move the file itself into the stream directory"
		} else {
			f.Size = fi.Size()
			f.Detail = fmt.Sprintf("symlink to %s; symlinks are not followed (a loaded file is deleted or archived, which for a link would leave the target behind)", target)
			f.Fix = "move or copy the file itself into the stream directory"
		}
	case !t.IsRegular():
		f.Reason = IgnoredNotRegular
		f.Detail = "a " + t.Type().String() + " entry, not a file"
		f.Fix = "remove it from the stream directory"
	default:
		key, _ := strings.CutSuffix(name, rotatefile.ActiveSuffix)
		if s.matches(key) {
			return IgnoredFile{}, false
		}
		if fi, err := e.Info(); err == nil {
			f.Size = fi.Size()
		}
		f.Reason = IgnoredName
		if s.cfg.Pattern == "" {
			f.Detail = "not a rotatefile name (<seq>-<time>.<ext>) and the stream has no pattern"
			f.Fix = fmt.Sprintf("set pattern: %q on stream %s (config streams[].pattern) to load files named like this", SuggestPattern(name), s.name)
		} else {
			f.Detail = fmt.Sprintf("does not match the stream's pattern %q", s.cfg.Pattern)
			f.Fix = fmt.Sprintf("widen the pattern (e.g. %q) or move the file out of the stream directory", SuggestPattern(name))
		}
	}
	return f, true
}

// SuggestPattern is a pattern that admits name: "*" and its extension
// (without ".open"), or the name itself when it has none.
func SuggestPattern(name string) string {
	name, _ = strings.CutSuffix(name, rotatefile.ActiveSuffix)
	if ext := filepath.Ext(name); ext != "" && ext != name {
		return "*" + ext
	}
	return name
}

// setListed replaces the entries found by a listing and reports changes.
func (s *stream) setListed(found map[string]IgnoredFile) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ign.listed = found
	s.reportLocked()
}

// setUnreadable records that the file with key cannot be opened (err
// non-nil) or can be again (err nil).
func (s *stream) setUnreadable(key string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		if _, ok := s.ign.unreadable[key]; !ok {
			return
		}
		delete(s.ign.unreadable, key)
		s.reportLocked()
		return
	}
	if s.ign.unreadable == nil {
		s.ign.unreadable = map[string]IgnoredFile{}
	}
	s.ign.unreadable[key] = unreadableEntry(s, key, err)
	s.reportLocked()
}

func unreadableEntry(s *stream, key string, err error) IgnoredFile {
	f := IgnoredFile{Name: key, Reason: IgnoredUnreadable, Detail: err.Error(),
		Fix: fmt.Sprintf("make it readable by the loader's user (e.g. chmod 644 %s); the stream waits at this file and retries it", filepath.Join(s.dir, key))}
	if fi, serr := os.Stat(filepath.Join(s.dir, key)); serr == nil {
		f.Size = fi.Size()
	}
	return f
}

// Ignored returns the stream's ignored entries by name.
func (s *stream) Ignored() []IgnoredFile {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ignoredLocked()
}

func (s *stream) ignoredLocked() []IgnoredFile {
	out := make([]IgnoredFile, 0, len(s.ign.listed)+len(s.ign.unreadable))
	for _, f := range s.ign.listed {
		out = append(out, f)
	}
	for name, f := range s.ign.unreadable {
		if _, dup := s.ign.listed[name]; !dup {
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// reportLocked logs entries that are new or whose reason changed, forgets
// entries that are gone, and sets the gauge per reason.
func (s *stream) reportLocked() {
	all := s.ignoredLocked()
	if s.ign.reported == nil {
		s.ign.reported = map[string]string{}
	}
	seen := make(map[string]bool, len(all))
	counts := map[string]int{IgnoredName: 0, IgnoredNotRegular: 0, IgnoredDirectory: 0, IgnoredUnreadable: 0}
	for _, f := range all {
		seen[f.Name] = true
		counts[f.Reason]++
		if s.ign.reported[f.Name] == f.Reason {
			continue
		}
		s.ign.reported[f.Name] = f.Reason
		if s.ign.log != nil {
			s.ign.log.Warn("spool entry not loaded", "stream", s.name, "file", filepath.Join(s.dir, f.Name),
				"reason", f.Reason, "detail", f.Detail, "fix", f.Fix)
		}
	}
	for name := range s.ign.reported {
		if !seen[name] {
			delete(s.ign.reported, name)
		}
	}
	if s.ign.gauge != nil {
		for reason, n := range counts {
			s.ign.gauge.WithLabelValues(s.name, reason).Set(float64(n))
		}
	}
}

// unreadableError is an open failure other than "does not exist": the
// file is there, so the stream waits for it instead of failing or skipping.
type unreadableError struct {
	key string
	err error
}

func (e *unreadableError) Error() string { return fmt.Sprintf("open %s: %v", e.key, e.err) }
func (e *unreadableError) Unwrap() error { return e.err }

func isUnreadable(err error) (*unreadableError, bool) {
	var ue *unreadableError
	ok := errors.As(err, &ue)
	return ue, ok
}
