package pgserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ErrNotInstalled means the PostgreSQL server binaries (initdb, postgres)
// could not be found. Callers branch on it: tests skip or fail depending on
// policy, commands print the message, which says how to install them.
var ErrNotInstalled = errors.New("pgserver: PostgreSQL server binaries (initdb, postgres) not found; " +
	"install them with `apt-get install -y postgresql` (Debian/Ubuntu, as root), " +
	"or set PG_BIN to the directory that holds initdb")

// debianGlob is where Debian and Ubuntu install server binaries; they are
// deliberately not on PATH there, so looking only at PATH would miss them.
const debianGlob = "/usr/lib/postgresql/*/bin"

// FindBinDir returns the directory holding initdb and postgres, looked up in
// this order: $PG_BIN, `pg_config --bindir` (if that directory has initdb;
// on Debian pg_config comes with the client package and may point at a
// directory without server binaries), then the newest /usr/lib/postgresql/N/bin.
// The error wraps [ErrNotInstalled] when nothing is found.
func FindBinDir(ctx context.Context) (string, error) {
	if dir := os.Getenv("PG_BIN"); dir != "" {
		if !hasServerBinaries(dir) {
			return "", fmt.Errorf("PG_BIN=%s has no initdb and postgres: %w", dir, ErrNotInstalled)
		}
		return dir, nil
	}
	if out, err := exec.CommandContext(ctx, "pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); hasServerBinaries(dir) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob(debianGlob) // the pattern is constant and valid
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, dir := range dirs {
		if hasServerBinaries(dir) {
			return dir, nil
		}
	}
	return "", ErrNotInstalled
}

// versionOf extracts N from /usr/lib/postgresql/N/bin so that 15 sorts above
// 9.6; an unparsable version sorts last.
func versionOf(binDir string) float64 {
	v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	if err != nil {
		return -1
	}
	return v
}

func hasServerBinaries(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}
