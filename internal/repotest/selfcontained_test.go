// Package repotest holds tests about the repository as a whole rather than
// about one package.
package repotest

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// The repository must stand on its own: a user has only what is in it, so
// no file may send the reader to a path outside it (the sibling directory
// the team keeps its product contract in) or cite that contract by its
// short name instead of saying what it means or pointing at docs/.
//
// The needles are built from pieces so that this file does not match them.
var (
	outsidePath = ".." + "/shared"
	contractRef = regexp.MustCompile(`\b` + "SP" + "EC" + `\b`) // case-sensitive, whole word
)

func TestRepositoryIsSelfContained(t *testing.T) {
	root := moduleRoot(t)
	var bad []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		// Built binaries and other non-text files are not documentation.
		if bytes.IndexByte(data[:min(len(data), 8000)], 0) >= 0 {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		var why []string
		for i, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, outsidePath) {
				why = append(why, lineRef(rel, i, "a path outside the repository"))
			}
			if contractRef.MatchString(line) {
				why = append(why, lineRef(rel, i, "cites the team's contract instead of docs/"))
			}
		}
		bad = append(bad, why...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Errorf("%d reference(s) a user of the repository cannot follow:\n\t%s", len(bad), strings.Join(bad, "\n\t"))
	}
}

func lineRef(file string, i int, why string) string {
	return file + ":" + strconv.Itoa(i+1) + ": " + why
}

// moduleRoot is the directory of go.mod above this file.
func moduleRoot(t *testing.T) string {
	t.Helper()
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("runtime.Caller failed")
	}
	dir := filepath.Dir(self)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod above %s", self)
		}
		dir = parent
	}
}
