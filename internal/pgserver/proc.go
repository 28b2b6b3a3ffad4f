package pgserver

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
)

// serverUser is the OS account initdb and postgres run as when we are root.
const serverUser = "postgres"

// runAs says which account the server processes run as. cred is nil when
// the current user runs them itself (not root).
type runAs struct {
	cred *syscall.Credential
	uid  int
	gid  int
}

// lookupRunAs decides the account for the server processes: PostgreSQL
// refuses to start as root, so root drops to the "postgres" user.
func lookupRunAs() (runAs, error) {
	if os.Geteuid() != 0 {
		return runAs{uid: os.Geteuid(), gid: os.Getegid()}, nil
	}
	u, err := user.Lookup(serverUser)
	if err != nil {
		return runAs{}, fmt.Errorf("pgserver: running as root, PostgreSQL must run as the %q OS user: %w "+
			"(the postgresql package creates it; or run as a non-root user)", serverUser, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return runAs{}, fmt.Errorf("pgserver: uid of %q: %w", serverUser, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return runAs{}, fmt.Errorf("pgserver: gid of %q: %w", serverUser, err)
	}
	// Empty Groups with NoSetGroups=false drops root's supplementary groups.
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	return runAs{cred: cred, uid: uid, gid: gid}, nil
}

// prepare sets the credential on cmd and a stable environment. LC_ALL=C keeps
// server messages in English so that startup failures can be recognised
// (e.g. "Address already in use" when a picked port was taken meanwhile).
func (r runAs) prepare(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = r.cred
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	if r.cred != nil {
		// HOME=/root is unreadable for the postgres user; give it its own.
		cmd.Env = append(cmd.Env, "HOME=/var/lib/postgresql")
	}
}

// mkdirOwned creates dir with perm and gives it to the server account.
func (r runAs) mkdirOwned(dir string, perm os.FileMode) error {
	if err := os.Mkdir(dir, perm); err != nil {
		return err
	}
	return r.own(dir, perm)
}

// own chowns an existing directory to the server account. The explicit chmod
// undoes the umask so the mode is exactly perm.
func (r runAs) own(dir string, perm os.FileMode) error {
	if r.cred != nil {
		if err := os.Chown(dir, r.uid, r.gid); err != nil {
			return err
		}
	}
	return os.Chmod(dir, perm)
}

// checkTraversable reports a clear error when the server account cannot
// reach dir, instead of a confusing "permission denied" from initdb later.
// It only matters as root, when the server runs as another user.
func (r runAs) checkTraversable(dir string) error {
	if r.cred == nil {
		return nil
	}
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil // not a Unix stat: cannot judge, let initdb decide
		}
		mode := fi.Mode().Perm()
		var x os.FileMode
		switch {
		case int(st.Uid) == r.uid:
			x = 0o100
		case int(st.Gid) == r.gid:
			x = 0o010
		default:
			x = 0o001
		}
		if mode&x == 0 {
			return fmt.Errorf("pgserver: %s (mode %v) is not traversable by the %q user that runs PostgreSQL; "+
				"leave Options.Dir empty or use a directory under /tmp with o+x parents", d, mode, serverUser)
		}
		if parent := filepath.Dir(d); parent == d {
			return nil
		}
	}
}

// proc is one run of the postmaster. done is closed after the process has
// exited and been reaped; err is its exit status, valid after done.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// spawn starts cmd with a parent-death signal and reaps it in a goroutine
// that owns the process until it exits.
//
// Linux sends the parent-death signal when the OS thread that forked the
// child exits, not when the process does, and the Go runtime may retire
// threads. So the goroutine pins itself to its thread for the child's whole
// life: the signal then fires exactly when our process dies.
func spawn(cmd *exec.Cmd) (*proc, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes its
	// backends down with it, so nothing outlives a crashed test binary.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	p := &proc{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) signal(sig syscall.Signal) {
	// An error means the process is already gone, which is what the caller
	// wants anyway; done tells the rest.
	_ = p.cmd.Process.Signal(sig)
}
