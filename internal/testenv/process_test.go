package testenv

import (
	"strings"
	"testing"
	"time"
)

// A process that exits on SIGTERM stops cleanly; one that ignores it is
// killed after the timeout and Stop says so; Kill reaps; Tail keeps the
// last lines. Runs /bin/sh, no service.
func TestProcessStopAndKill(t *testing.T) {
	const loop = `echo started; while :; do sleep 0.05; done`
	p := StartProcess(t, "/bin/sh", "-c", `trap "echo bye; exit 0" TERM; `+loop)
	Eventually(t, 10*time.Second, func() bool { return strings.Contains(p.Log.String(), "started") }, "the shell to start")
	if err := p.Stop(10 * time.Second); err != nil {
		t.Errorf("Stop of a shell exiting 0 on SIGTERM: %v", err)
	}
	if got := Tail(p.Log.String(), 1); got != "bye" {
		t.Errorf("last output line %q, want %q", got, "bye")
	}

	stubborn := StartProcess(t, "/bin/sh", "-c", `trap "" TERM; `+loop)
	Eventually(t, 10*time.Second, func() bool { return strings.Contains(stubborn.Log.String(), "started") }, "the shell to start")
	if err := stubborn.Stop(200 * time.Millisecond); err == nil || !strings.Contains(err.Error(), "did not exit within 200ms") {
		t.Errorf("Stop of a shell ignoring SIGTERM: %v, want the timeout named", err)
	}
	if err := stubborn.Wait(); err == nil {
		t.Error("Wait after the kill: nil, want the signal")
	}

	killed := StartProcess(t, "/bin/sh", "-c", loop)
	killed.Kill()
	if err := killed.Wait(); err == nil || killed.Cmd.ProcessState == nil {
		t.Errorf("Wait after Kill: %v, want a reaped, killed process", err)
	}
	killed.Kill() // reaped already: a no-op, as in cleanup after a test's own Kill

	exits := StartProcess(t, "/bin/sh", "-c", "exit 3")
	if err := exits.Wait(); err == nil || exits.Cmd.ProcessState.ExitCode() != 3 {
		t.Errorf("Wait of exit 3: %v", err)
	}
	if err2 := exits.Wait(); err2 == nil {
		t.Error("a second Wait: nil, want the same exit status")
	}
	exits.Kill() // exited: must not block
}

func TestTail(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{{"a\nb\nc\n", 2, "b\nc"}, {"a\nb", 5, "a\nb"}, {"", 3, ""}} {
		if got := Tail(c.in, c.n); got != c.want {
			t.Errorf("Tail(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}
