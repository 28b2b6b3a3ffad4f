package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// binPrefix names the directories BuildIngest builds into, followed by the
// pid of the test process that built it and a random suffix.
const binPrefix = "ingest-bin-"

// BuildIngest builds the ingest command for a TestMain whose tests run it
// as a child process, and returns the binary's path. pkg is the command's
// directory relative to the calling test's package ("." in cmd/ingest);
// flags go to go build before -o (e.g. "-race").
//
// [Main] exits the process, so the binary's directory (tens of MB) cannot
// be removed after the tests: each call first removes those left by test
// processes that are gone instead (other packages' or developers' runs
// may be going on, so a live process's directory stays). A build that
// fails prints go build's output and exits the test process with 1.
func BuildIngest(pkg string, flags ...string) string {
	removeStaleBinaries()
	dir, err := os.MkdirTemp("", binPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "build ingest: %v\n", err)
		os.Exit(1)
	}
	binary := filepath.Join(dir, "ingest")
	args := append(append([]string{"build"}, flags...), "-o", binary, pkg)
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build ingest (go %s): %v\n%s", strings.Join(args, " "), err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	return binary
}

// removeStaleBinaries removes BuildIngest's directories whose test process
// has exited.
func removeStaleBinaries() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), binPrefix+"*"))
	for _, d := range dirs {
		pidStr, _, ok := strings.Cut(strings.TrimPrefix(filepath.Base(d), binPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid <= 0 {
			continue // not named by BuildIngest: whose it is is unknown
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}
