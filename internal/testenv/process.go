package testenv

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Process is a command a test runs in the background (usually the ingest
// binary from [BuildIngest]), with its output collected in Log.
type Process struct {
	Cmd *exec.Cmd
	Log *SyncBuffer
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

// Kill ends the process with SIGKILL, as a crash would, and reaps it; it
// does nothing once the process has been reaped.
func (p *Process) Kill() {
	if p.Cmd.ProcessState == nil {
		_ = p.Cmd.Process.Signal(syscall.SIGKILL)
		_ = p.Cmd.Wait()
	}
}

// Stop sends SIGTERM, as an operator or a service manager would, and
// returns the exit status (nil for exit 0). A process still running after
// timeout is killed and Stop returns an error saying so: a shutdown that
// hangs must fail the test, not hang it.
func (p *Process) Stop(timeout time.Duration) error {
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.Cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		_ = p.Cmd.Process.Signal(syscall.SIGKILL)
		<-done
		return fmt.Errorf("did not exit within %v of SIGTERM; killed", timeout)
	}
}

// Tail returns the last n lines of s (a process's or a logger's output),
// for failure messages that would otherwise be pages long.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
