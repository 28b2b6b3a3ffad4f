package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// BuildIngest's clean-up removes the directories of exited test processes
// only: a live process's directory and one not named by BuildIngest stay.
func TestRemoveStaleBinaries(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	exited := exec.Command("true")
	if err := exited.Run(); err != nil {
		t.Fatal(err)
	}
	dirs := map[string]bool{ // name: still there after the clean-up
		binPrefix + strconv.Itoa(exited.Process.Pid) + "-1": false,
		binPrefix + strconv.Itoa(os.Getpid()) + "-2":        true,
		binPrefix + "notapid-3":                             true,
		"other-" + strconv.Itoa(exited.Process.Pid) + "-4":  true,
	}
	for d := range dirs {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	removeStaleBinaries()
	for d, keep := range dirs {
		_, err := os.Stat(filepath.Join(tmp, d))
		if kept := err == nil; kept != keep {
			t.Errorf("%s: kept %v, want %v (stat: %v)", d, kept, keep, err)
		}
	}
}
