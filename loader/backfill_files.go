package loader

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dualwrite/ingest/rotatefile"
)

// BackfillStream is one stream's sealed files for [NewBackfill]. Name is
// the stream name that record ids ("<stream>/<file>/<offset>" for tables
// without an id field), the Kafka source header and checkpoints use; keep
// it the live stream's name so that a replay produces the same ids as live
// loading did.
type BackfillStream struct {
	Name string
	// DefaultTable is the table of lines without "table" (legacy writers).
	DefaultTable string
	// Files are paths of sealed offline files. Their base names are the
	// positions' file keys and must be unique within the stream; they are
	// read in lexical order of base names, which is creation order.
	Files []string
}

// ErrActiveFile marks a path naming a file still being written (the
// ".open" suffix). Backfill replays sealed files only: a line appended
// after the backfill read the file would be missed without notice.
var ErrActiveFile = errors.New("active file (still being written)")

// ResolveBackfill turns command-line paths into streams: a path may be a
// file, a directory (its regular files, not recursing) or a glob; hidden
// files (".lock", temporary files) are never offline files. Each file belongs to the stream named after its directory
// (spool/<stream>/ and state_dir/archive/<stream>/ both give <stream>),
// unless stream is set, which names the one stream of every file.
//
// Active ".open" files are refused when named directly (an error wrapping
// [ErrActiveFile]) and skipped, returned in skipped, when a directory or
// glob holds them. A path that matches nothing, a non-regular file, or two
// different files with the same name in one stream are errors: the order
// of the stream would be ambiguous. Streams come back sorted by name, their
// files in creation order.
func ResolveBackfill(paths []string, stream string) (streams []BackfillStream, skipped []string, err error) {
	streams, notRead, err := ResolveBackfillFiles(paths, stream)
	for _, f := range notRead {
		if f.Reason == NotReadActive {
			skipped = append(skipped, f.Path)
		}
	}
	return streams, skipped, err
}

// Why a backfill does not read an entry it met in a directory or glob.
const (
	NotReadActive    = "active file: still being written (backfill it once sealed)"
	NotReadDirectory = "directory: backfill does not recurse (name it as a path of its own)"
	NotReadSymlink   = "symlink: not followed (name its target)"
	NotReadIrregular = "not a regular file"
)

// NotRead is an entry of a given directory or glob that the backfill does
// not read, and why: nothing it skips goes unreported.
type NotRead struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// ResolveBackfillFiles is [ResolveBackfill] reporting every entry it does
// not read (active files, sub-directories, symlinks, other non-regular
// files) with the reason. When nothing is left to read, the error says
// what was found instead.
func ResolveBackfillFiles(paths []string, stream string) (streams []BackfillStream, notRead []NotRead, err error) {
	if len(paths) == 0 {
		return nil, nil, errors.New("no file, directory or glob given")
	}
	if stream != "" && (stream != filepath.Base(stream) || stream[0] == '.') {
		return nil, nil, fmt.Errorf("stream name %q must be a non-hidden directory name", stream)
	}
	type file struct{ stream, key, path string }
	var files []file
	add := func(path string, explicit bool) error {
		abs, err := filepath.Abs(path)
		if err != nil {
			return err
		}
		base := filepath.Base(abs)
		if strings.HasPrefix(base, ".") {
			if explicit {
				return fmt.Errorf("%s: hidden files (locks, temporary files) are not offline files", path)
			}
			return nil
		}
		if strings.HasSuffix(base, rotatefile.ActiveSuffix) {
			if explicit {
				return fmt.Errorf("%s: %w; backfill reads sealed files only (the loader seals it on rotation, or rotatefile.Open seals it after a crash)", path, ErrActiveFile)
			}
			notRead = append(notRead, NotRead{abs, NotReadActive})
			return nil
		}
		fi, err := os.Stat(abs)
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			if explicit {
				return fmt.Errorf("%s: not a regular file", path)
			}
			notRead = append(notRead, NotRead{abs, NotReadIrregular})
			return nil
		}
		name := stream
		if name == "" {
			name = filepath.Base(filepath.Dir(abs))
		}
		files = append(files, file{stream: name, key: base, path: abs})
		return nil
	}
	for _, p := range paths {
		var matches []string
		if strings.ContainsAny(p, `*?[\`) {
			m, err := filepath.Glob(p)
			if err != nil {
				return nil, nil, fmt.Errorf("glob %q: %w", p, err)
			}
			if len(m) == 0 {
				return nil, nil, fmt.Errorf("glob %q matches no file", p)
			}
			matches = m
		} else {
			matches = []string{p}
		}
		for _, m := range matches {
			fi, err := os.Stat(m)
			if err != nil && !strings.HasSuffix(m, rotatefile.ActiveSuffix) {
				return nil, nil, err
			}
			if err == nil && fi.IsDir() {
				entries, err := os.ReadDir(m)
				if err != nil {
					return nil, nil, err
				}
				for _, e := range entries {
					if strings.HasPrefix(e.Name(), ".") {
						continue // locks and temporaries
					}
					if t := e.Type(); !t.IsRegular() {
						reason := NotReadIrregular
						switch {
						case t.IsDir():
							reason = NotReadDirectory
						case t&fs.ModeSymlink != 0:
							reason = NotReadSymlink
						}
						abs, _ := filepath.Abs(filepath.Join(m, e.Name()))
						notRead = append(notRead, NotRead{abs, reason})
						continue
					}
					if err := add(filepath.Join(m, e.Name()), false); err != nil {
						return nil, nil, err
					}
				}
				continue
			}
			// A glob's matches are not named one by one: an active file
			// among them is skipped, not refused.
			if err := add(m, len(matches) == 1 && m == p); err != nil {
				return nil, nil, err
			}
		}
	}
	byStream := map[string]map[string]string{} // stream -> key -> path
	for _, f := range files {
		keys := byStream[f.stream]
		if keys == nil {
			keys = map[string]string{}
			byStream[f.stream] = keys
		}
		if prev, dup := keys[f.key]; dup {
			if prev == f.path {
				continue // named twice
			}
			return nil, nil, fmt.Errorf("stream %s has two files named %s (%s and %s): their order is ambiguous; backfill them separately or with --stream", f.stream, f.key, prev, f.path)
		}
		keys[f.key] = f.path
	}
	if len(byStream) == 0 {
		if len(notRead) == 0 {
			return nil, nil, errors.New("no sealed file found in the given paths: they hold no file")
		}
		var why []string
		for _, f := range notRead[:min(len(notRead), 5)] {
			why = append(why, fmt.Sprintf("%s (%s)", f.Path, f.Reason))
		}
		more := ""
		if len(notRead) > 5 {
			more = fmt.Sprintf(" and %d more", len(notRead)-5)
		}
		return nil, notRead, fmt.Errorf("no sealed file found in the given paths; not read: %s%s", strings.Join(why, "; "), more)
	}
	for name, keys := range byStream {
		bs := BackfillStream{Name: name}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			bs.Files = append(bs.Files, keys[k])
		}
		streams = append(streams, bs)
	}
	sort.Slice(streams, func(i, j int) bool { return streams[i].Name < streams[j].Name })
	sort.Slice(notRead, func(i, j int) bool { return notRead[i].Path < notRead[j].Path })
	return streams, notRead, nil
}

// fixedFile is a file of a backfill stream.
type fixedFile struct {
	key  string
	path string
	size int64
}

// fixedFiles is a backfill stream's source: an explicit list of sealed
// files, nothing ever added, nothing ever retired (the files belong to
// the operator), exhausted at the end of the last file.
type fixedFiles struct {
	stream string
	files  []fixedFile // sorted by key
	before []int64     // before[i]: bytes of files[:i]
	total  int64
}

func newFixedFiles(bs BackfillStream) (*fixedFiles, error) {
	ff := &fixedFiles{stream: bs.Name}
	seen := map[string]bool{}
	for _, path := range bs.Files {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", bs.Name, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("stream %s: %s is not a regular file", bs.Name, path)
		}
		key := filepath.Base(path)
		if strings.HasSuffix(key, rotatefile.ActiveSuffix) {
			return nil, fmt.Errorf("stream %s: %s: %w", bs.Name, path, ErrActiveFile)
		}
		if seen[key] {
			return nil, fmt.Errorf("stream %s: two files named %s", bs.Name, key)
		}
		seen[key] = true
		ff.files = append(ff.files, fixedFile{key: key, path: path, size: fi.Size()})
	}
	sort.Slice(ff.files, func(i, j int) bool { return ff.files[i].key < ff.files[j].key })
	for _, f := range ff.files {
		ff.before = append(ff.before, ff.total)
		ff.total += f.size
	}
	return ff, nil
}

func (ff *fixedFiles) find(key string) (int, bool) {
	i := sort.Search(len(ff.files), func(i int) bool { return ff.files[i].key >= key })
	return i, i < len(ff.files) && ff.files[i].key == key
}

// done is the number of bytes before pos: what a checkpoint at pos covers.
func (ff *fixedFiles) done(pos Position) int64 {
	i, ok := ff.find(pos.File)
	if i == len(ff.files) {
		return ff.total
	}
	if !ok {
		return ff.before[i]
	}
	return ff.before[i] + min(pos.Offset, ff.files[i].size)
}

func (ff *fixedFiles) list() ([]spoolFile, error) {
	out := make([]spoolFile, len(ff.files))
	for i, f := range ff.files {
		out[i] = spoolFile{key: f.key, name: f.key}
	}
	return out, nil
}

func (ff *fixedFiles) open(key string) (*os.File, error) {
	i, ok := ff.find(key)
	if !ok {
		return nil, fmt.Errorf("open %s/%s: %w", ff.stream, key, fs.ErrNotExist)
	}
	f, err := os.Open(ff.files[i].path)
	if err != nil {
		return nil, fmt.Errorf("open %s/%s: %w", ff.stream, key, err)
	}
	return f, nil
}

func (*fixedFiles) sealed(string) (bool, error) { return true, nil }

func (ff *fixedFiles) path(f spoolFile) string {
	if i, ok := ff.find(f.key); ok {
		return ff.files[i].path
	}
	return ""
}

func (*fixedFiles) retire(*Loader, string) {}

func (ff *fixedFiles) exhausted(pos Position) bool { return ff.done(pos) >= ff.total }
