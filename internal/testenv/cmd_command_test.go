package testenv

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// errorsTB records Errorf instead of failing the test, so a test can check
// that a failure is reported and what it says.
type errorsTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *errorsTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *errorsTB) reported() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.errs, "\n")
}

// A child that outlives its deadline is killed within it, and the test is
// failed with the command and the deadline; one that ends in time fails
// nothing.
func TestCommandKillsAChildPastItsDeadline(t *testing.T) {
	if _, err := exec.LookPath("sleep"); err != nil {
		t.Fatalf("sleep(1), the child that hangs, is not on PATH: %v", err)
	}
	rec := &errorsTB{TB: t}
	cmd := Command(rec, 300*time.Millisecond, "sleep", "60")
	began := time.Now()
	err := cmd.Run()
	if took := time.Since(began); took > 30*time.Second {
		t.Fatalf("sleep 60 with a 300ms deadline ran %v", took)
	}
	if err == nil {
		t.Fatal("sleep 60 killed at its deadline exited 0")
	}
	if got := rec.reported(); !strings.Contains(got, "sleep 60") || !strings.Contains(got, "300ms") || !strings.Contains(got, "killed") {
		t.Fatalf("reported %q; want the command, its deadline and that it was killed", got)
	}

	rec = &errorsTB{TB: t}
	if err := Command(rec, time.Minute, "sleep", "0").Run(); err != nil {
		t.Fatalf("sleep 0: %v", err)
	}
	if got := rec.reported(); got != "" {
		t.Fatalf("a child that ended in time reported %q", got)
	}
}
