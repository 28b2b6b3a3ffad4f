package rotatefile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// streamFile is one file of a stream as read back by a test.
type streamFile struct {
	name string
	info Name
	data []byte
}

// readStream returns the stream's files in lexical (creation) order.
func readStream(tb testing.TB, dir string) []streamFile {
	tb.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var files []streamFile
	seen := map[string]bool{}
	for _, e := range entries {
		n, ok := ParseName(e.Name())
		if !ok {
			continue
		}
		name := e.Name()
		data, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) && n.Active {
			// Sealed since the listing: read it under its final name.
			name, n.Active = n.Sealed, false
			data, err = os.ReadFile(filepath.Join(dir, name))
		}
		if err != nil {
			tb.Fatal(err)
		}
		if seen[n.Sealed] {
			continue // listed under both names around a rename
		}
		seen[n.Sealed] = true
		files = append(files, streamFile{name: name, info: n, data: data})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	return files
}

// streamLines returns every whole line of the stream in order and fails the
// test if a file is empty or does not end with a newline.
func streamLines(tb testing.TB, dir string) []string {
	tb.Helper()
	var lines []string
	for _, f := range readStream(tb, dir) {
		if len(f.data) == 0 {
			tb.Fatalf("empty file %s", f.name)
		}
		if f.data[len(f.data)-1] != '\n' {
			tb.Fatalf("file %s does not end with a newline (split or torn line)", f.name)
		}
		for _, l := range bytes.Split(f.data[:len(f.data)-1], []byte{'\n'}) {
			lines = append(lines, string(l))
		}
	}
	return lines
}

// eventually polls cond until it holds or the deadline passes.
func eventually(tb testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v: "+format, append([]any{timeout}, args...)...)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func mustOpen(tb testing.TB, opts Options) *Writer {
	tb.Helper()
	w, err := Open(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { w.Close() })
	return w
}
