package testenv

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// commandWaitDelay bounds how long Wait waits for a child's output pipes
// once it has exited or been killed: a grandchild it left behind (a
// PostgreSQL server the demo started) may hold them open for ever.
const commandWaitDelay = 10 * time.Second

// Command is exec.Command with a deadline: a child still running within
// after it is made is killed, and the test fails naming the command and
// the deadline. Without one a child that hangs holds the test until the
// test binary's -timeout, which kills every test at once and names none of
// its children. Cleanup ends the deadline (the child, if still running, is
// killed then too; reap it before, as callers' own cleanups do).
func Command(tb testing.TB, within time.Duration, name string, args ...string) *exec.Cmd {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	tb.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = commandWaitDelay
	cmd.Cancel = func() error {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			tb.Errorf("%s: still running %v after it started (hung?); killed", CommandLine(cmd), within)
		}
		return cmd.Process.Kill()
	}
	return cmd
}

// CommandLine is cmd as a shell line, for failure messages.
func CommandLine(cmd *exec.Cmd) string {
	return strings.Join(cmd.Args, " ")
}
