package testenv

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a command a test runs in the background (usually the ingest
// binary from [BuildIngest]), with its output collected in Log. One made
// by hand around a started Cmd works too.
type Process struct {
	Cmd *exec.Cmd
	Log *SyncBuffer

	// A goroutine reaps the process once Kill, Stop or Wait needs its
	// exit, so that they can be called in any order and more than once.
	waitOnce sync.Once
	exited   chan struct{}
	err      error // Cmd.Wait's, once exited is closed
}

// StartProcess starts binary with args, stdout and stderr going to the
// process's Log. If the test has not stopped it, cleanup kills and reaps
// it, so a failing test leaves no process behind; when the test failed
// it also logs the last 40 lines of the output, where the reason usually
// is.
func StartProcess(tb testing.TB, binary string, args ...string) *Process {
	tb.Helper()
	p := &Process{Cmd: exec.Command(binary, args...), Log: &SyncBuffer{}}
	p.Cmd.Stdout, p.Cmd.Stderr = p.Log, p.Log
	if err := p.Cmd.Start(); err != nil {
		tb.Fatalf("start %s %s: %v", binary, strings.Join(args, " "), err)
	}
	tb.Cleanup(func() {
		p.Kill()
		if tb.Failed() {
			tb.Logf("%s (pid %d) output, last 40 lines:\n%s", p.Cmd.Path, p.Cmd.Process.Pid, Tail(p.Log.String(), 40))
		}
	})
	return p
}

func (p *Process) reap() <-chan struct{} {
	p.waitOnce.Do(func() {
		p.exited = make(chan struct{})
		go func() {
			p.err = p.Cmd.Wait()
			close(p.exited)
		}()
	})
	return p.exited
}

// Wait waits for the process to exit and returns its exit status (nil for
// exit 0), the same on every call.
func (p *Process) Wait() error {
	<-p.reap()
	return p.err
}

// Kill ends the process with SIGKILL, as a crash would, and reaps it; it
// does nothing to a process that has exited.
func (p *Process) Kill() {
	exited := p.reap()
	select {
	case <-exited:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// Stop sends SIGTERM, as an operator or a service manager would, and
// returns the exit status (nil for exit 0). A process still running after
// timeout is killed and Stop returns an error saying so: a shutdown that
// hangs must fail the test, not hang it.
func (p *Process) Stop(timeout time.Duration) error {
	exited := p.reap()
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return p.err
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("did not exit within %v of SIGTERM; killed", timeout)
	}
}

// Tail returns the last n lines of s (a process's or a logger's output),
// for failure messages that would otherwise be pages long.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
