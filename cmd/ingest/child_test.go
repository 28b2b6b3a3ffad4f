package main

import (
	"bytes"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/testenv"
)

// The deadlines of the binary's runs in these tests: a run that hangs
// fails its test with the command line within minutes, instead of holding
// the package (~8 min) until go test's -timeout kills every test at once.
const (
	// runWithin bounds a command the test waits for (ingest gen, migrate,
	// status, a usage error...); the slowest, a backfill or the demo,
	// take seconds.
	runWithin = 2 * time.Minute
	// backgroundWithin bounds a command that runs beside the test (ingest
	// run, consume), longer than the longest test (the cluster faults'
	// scenarios, a few minutes each).
	backgroundWithin = 15 * time.Minute
	// stopWithin bounds the graceful stop after SIGTERM: the batches in
	// flight commit in seconds.
	stopWithin = time.Minute
)

// ingest runs the binary to its end within runWithin and returns its
// output (stdout and stderr) and exit code.
func ingest(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := testenv.Command(t, runWithin, binary, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	began := time.Now()
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		if time.Since(began) >= runWithin {
			t.Fatalf("%s: killed at its deadline; output before the kill (tail):\n%s", testenv.CommandLine(cmd), testenv.Tail(out.String(), 40))
		}
		return out.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("%s: %v", testenv.CommandLine(cmd), err)
	}
	return out.String(), 0
}

// ingestOK is ingest for a step that must succeed: any other exit fails
// the test with the command line and its output.
func ingestOK(t *testing.T, args ...string) string {
	t.Helper()
	out, code := ingest(t, args...)
	if code != 0 {
		t.Fatalf("ingest %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// child is a command started by start or startTo, as testenv's Process.
func child(cmd *exec.Cmd) *testenv.Process {
	log, _ := cmd.Stdout.(*testenv.SyncBuffer)
	if log == nil {
		log = &testenv.SyncBuffer{}
	}
	return &testenv.Process{Cmd: cmd, Log: log}
}

// stop ends a command started by start or startTo with SIGTERM, as an
// operator would, and fails the test unless it exits 0 within stopWithin
// (killed then), with the tail of its log.
func stop(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	p := child(cmd)
	if err := p.Stop(stopWithin); err != nil {
		t.Fatalf("%s after SIGTERM: %v (want exit 0); log (tail):\n%s", testenv.CommandLine(cmd), err, testenv.Tail(p.Log.String(), 60))
	}
}

// kill9 ends a command started by start or startTo with SIGKILL, as a
// crash would, and fails the test if it had already exited by itself.
func kill9(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %s: %v", testenv.CommandLine(cmd), err)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("%s exited with %v before its kill -9; log (tail):\n%s", testenv.CommandLine(cmd), err, testenv.Tail(child(cmd).Log.String(), 40))
	}
}
