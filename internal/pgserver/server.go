package pgserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Options configures [Start]. The zero value is ready to use.
type Options struct {
	// Dir is the parent directory for the data directory ("data"), the unix
	// socket directory ("sock") and, when Log is nil, the server log
	// ("postgres.log"). "" means a new directory from os.MkdirTemp, removed
	// by Close. A non-empty Dir is kept by Close, and an already initialised
	// Dir/data is reused without initdb.
	Dir string
	// Port is the TCP port on 127.0.0.1. 0 picks a free one.
	Port int
	// BinDir holds initdb and postgres. "" means [FindBinDir].
	BinDir string
	// Log receives the server's log output (initdb's too). nil means the
	// file postgres.log in Dir.
	Log io.Writer
	// Settings are extra "name=value" server settings, applied after (and
	// so over) the defaults, which keep memory small so that several test
	// servers fit on one machine (shared_buffers=32MB).
	Settings []string
}

// Server is a PostgreSQL server started by [Start]. Its lifecycle methods
// (Start, Stop, Kill, Close) are safe for concurrent use and serialised.
type Server struct {
	binDir  string
	root    string
	dataDir string
	sockDir string
	port    int
	extra   []string // Options.Settings
	as      runAs
	out     io.Writer // server stdout+stderr: the log destination plus tail
	tail    *tail

	// Cleanup duties for Close.
	removeRoot bool
	removeSock bool
	logFile    *os.File

	mu     sync.Mutex // serialises lifecycle methods
	closed bool
	cur    atomic.Pointer[proc] // the running postmaster, nil when stopped
}

// Timeouts for waits that have no caller context (Kill, Close) and for the
// escalation after a caller's context expired. Generous, because crash
// recovery and shutdown checkpoints on a loaded CI machine can take seconds.
const (
	closeTimeout    = 30 * time.Second
	escalateTimeout = 10 * time.Second
	readyPoll       = 25 * time.Millisecond
	maxPortAttempts = 5
)

// Start initialises (if needed) and starts a PostgreSQL server and returns
// once it accepts connections. On error nothing is left running and
// directories Start created are removed.
func Start(ctx context.Context, opts Options) (_ *Server, err error) {
	binDir := opts.BinDir
	if binDir == "" {
		if binDir, err = FindBinDir(ctx); err != nil {
			return nil, err
		}
	} else if !hasServerBinaries(binDir) {
		return nil, fmt.Errorf("BinDir %s has no initdb and postgres: %w", binDir, ErrNotInstalled)
	}
	as, err := lookupRunAs()
	if err != nil {
		return nil, err
	}
	s := &Server{binDir: binDir, as: as, tail: &tail{}, extra: slices.Clone(opts.Settings)}
	defer func() {
		if err != nil {
			s.removeFiles()
		}
	}()
	if err := s.layout(opts); err != nil {
		return nil, err
	}
	if err := s.initdb(ctx); err != nil {
		return nil, err
	}

	s.port = opts.Port
	for attempt := 1; ; attempt++ {
		if opts.Port == 0 {
			if s.port, err = freePort(); err != nil {
				return nil, err
			}
		}
		err = s.start(ctx)
		// A picked port can be taken by someone else between our probe and
		// the postmaster's bind; pick again rather than fail the caller.
		if err != nil && opts.Port == 0 && attempt < maxPortAttempts &&
			strings.Contains(err.Error(), "Address already in use") {
			continue
		}
		if err != nil {
			return nil, err
		}
		return s, nil
	}
}

// layout creates the directories and opens the log.
func (s *Server) layout(opts Options) error {
	if opts.Dir == "" {
		dir, err := os.MkdirTemp("", "pgserver-")
		if err != nil {
			return fmt.Errorf("pgserver: create directory: %w", err)
		}
		s.root, s.removeRoot = dir, true
		// MkdirTemp makes 0700 dirs; the server account must enter it.
		if err := s.as.own(dir, 0o755); err != nil {
			return fmt.Errorf("pgserver: prepare %s: %w", dir, err)
		}
	} else {
		dir, err := filepath.Abs(opts.Dir)
		if err != nil {
			return fmt.Errorf("pgserver: %w", err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("pgserver: create directory: %w", err)
		}
		s.root = dir
	}
	if err := s.as.checkTraversable(s.root); err != nil {
		return err
	}

	s.dataDir = filepath.Join(s.root, "data")
	if err := s.as.mkdirOwned(s.dataDir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("pgserver: create data directory: %w", err)
	}

	// sun_path is ~107 bytes; keep a margin for ".s.PGSQL.NNNNN.lock".
	s.sockDir = filepath.Join(s.root, "sock")
	if len(s.sockDir)+len("/.s.PGSQL.65535.lock") >= 100 {
		dir, err := os.MkdirTemp("/tmp", "pgs-")
		if err != nil {
			return fmt.Errorf("pgserver: create socket directory: %w", err)
		}
		s.sockDir, s.removeSock = dir, true
		if err := s.as.own(dir, 0o755); err != nil {
			return fmt.Errorf("pgserver: prepare socket directory: %w", err)
		}
	} else if err := s.as.mkdirOwned(s.sockDir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("pgserver: create socket directory: %w", err)
	}

	logw := opts.Log
	if logw == nil {
		f, err := os.OpenFile(filepath.Join(s.root, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("pgserver: open log: %w", err)
		}
		s.logFile, logw = f, f
	}
	s.out = io.MultiWriter(logw, s.tail)
	return nil
}

// initdb creates the cluster unless Dir already holds one.
func (s *Server) initdb(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(s.dataDir, "PG_VERSION")); err == nil {
		return nil
	}
	// --no-sync only skips initdb's own final fsync of the fresh cluster; it
	// matters for an OS crash, which we never simulate. The running server
	// keeps fsync=on, so crash tests (process kills) stay honest.
	cmd := exec.CommandContext(ctx, filepath.Join(s.binDir, "initdb"),
		"-D", s.dataDir, "-U", "postgres", "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
	s.as.prepare(cmd)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pgserver: initdb %s: %w\n%s", s.dataDir, err, s.tail.lastLines(20))
	}
	return nil
}

// start launches the postmaster and waits until it accepts connections.
// The caller holds s.mu or owns s exclusively.
func (s *Server) start(ctx context.Context) error {
	settings := []string{
		"listen_addresses=127.0.0.1",
		"port=" + strconv.Itoa(s.port),
		// Quoted because the setting is a list: a path with a comma or
		// space must stay one entry.
		`unix_socket_directories="` + s.sockDir + `"`,
		"max_connections=100",
		// Small, so that several servers (parallel test packages) fit.
		"shared_buffers=32MB",
		// Stated explicitly: crash tests depend on commits being durable.
		"fsync=on",
		"synchronous_commit=on",
		"full_page_writes=on",
		// Log to our stderr pipe, not to files inside the data directory.
		"logging_collector=off",
	}
	settings = append(settings, s.extra...)
	args := []string{"-D", s.dataDir}
	for _, kv := range settings {
		args = append(args, "-c", kv)
	}
	cmd := exec.Command(filepath.Join(s.binDir, "postgres"), args...)
	// Own process group: a terminal's Ctrl-C aimed at `go test` must not
	// shut the server down behind the test's back; the parent-death signal
	// still stops it when our process dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s.as.prepare(cmd)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	// Bound the wait for the log-copying goroutine after exit, in case a
	// stray grandchild keeps the pipe open.
	cmd.WaitDelay = escalateTimeout

	p, err := spawn(cmd)
	if err != nil {
		return fmt.Errorf("pgserver: start postgres: %w", err)
	}
	if err := s.waitReady(ctx, p); err != nil {
		halt(p)
		return err
	}
	s.cur.Store(p)
	return nil
}

// waitReady polls with a real connection until the server answers, the
// postmaster exits, or ctx ends. A connection, not pg_isready, because
// "accepting connections" is exactly what callers need next.
func (s *Server) waitReady(ctx context.Context, p *proc) error {
	ticker := time.NewTicker(readyPoll)
	defer ticker.Stop()
	url := s.URL() + "&connect_timeout=2"
	for {
		if p.exited() {
			return fmt.Errorf("pgserver: postgres exited during start-up (%v):\n%s", p.err, s.tail.lastLines(20))
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgconn.Connect(cctx, url)
		cancel()
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pgserver: waiting for postgres on port %d: %w (last: %v)\n%s",
				s.port, ctx.Err(), err, s.tail.lastLines(20))
		case <-p.done:
		case <-ticker.C:
		}
	}
}

// halt stops p as fast as possible and waits for it: immediate shutdown
// first, so backends are taken down by the postmaster, SIGKILL as the last
// resort.
func halt(p *proc) error {
	p.signal(syscall.SIGQUIT)
	select {
	case <-p.done:
		return nil
	case <-time.After(escalateTimeout):
	}
	p.signal(syscall.SIGKILL)
	select {
	case <-p.done:
		return fmt.Errorf("pgserver: postgres ignored immediate shutdown for %v and was killed", escalateTimeout)
	case <-time.After(escalateTimeout):
		return fmt.Errorf("pgserver: postgres (pid %d) did not exit after SIGKILL", p.cmd.Process.Pid)
	}
}

// URL is a connection string for the TCP listener, usable by pgx and psql.
func (s *Server) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
}

// SocketURL is a connection string for the unix socket, which is faster
// than TCP for benchmarks.
func (s *Server) SocketURL() string {
	return fmt.Sprintf("postgres://postgres@/postgres?host=%s&port=%d&sslmode=disable",
		url.QueryEscape(s.sockDir), s.port)
}

// Port is the TCP port on 127.0.0.1; it stays the same across restarts.
func (s *Server) Port() int { return s.port }

// SocketDir is the directory holding the unix socket.
func (s *Server) SocketDir() string { return s.sockDir }

// DataDir is the cluster's data directory.
func (s *Server) DataDir() string { return s.dataDir }

// PID is the postmaster's process id, or 0 when the server is not running.
func (s *Server) PID() int {
	if p := s.cur.Load(); p != nil && !p.exited() {
		return p.cmd.Process.Pid
	}
	return 0
}

// LogTail returns the last few KiB of the server log, for test failure
// output.
func (s *Server) LogTail() string { return s.tail.String() }

// Start starts a stopped or killed server again on the same port and data
// directory and waits until it accepts connections (after a Kill, that
// includes crash recovery).
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("pgserver: start: server is closed")
	}
	if s.PID() != 0 {
		return errors.New("pgserver: start: server is already running")
	}
	s.cur.Store(nil)
	return s.start(ctx)
}

// Stop shuts the server down the way `pg_ctl stop -m fast` does (SIGINT:
// roll back open transactions, write a shutdown checkpoint) and waits for
// the postmaster to exit. Data is kept. If ctx ends first, the server is
// stopped immediately instead and ctx's error is returned. Stopping a
// stopped server is a no-op.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stop(ctx)
}

func (s *Server) stop(ctx context.Context) error {
	p := s.cur.Swap(nil)
	if p == nil {
		return nil
	}
	p.signal(syscall.SIGINT)
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return errors.Join(fmt.Errorf("pgserver: fast shutdown: %w", ctx.Err()), halt(p))
	}
}

// Kill stops the server the way `pg_ctl stop -m immediate` does (SIGQUIT:
// no checkpoint, backends are dropped) and waits for the postmaster to
// exit. It simulates a crash: the next Start runs WAL recovery, and only
// committed transactions survive. Killing a stopped server is a no-op.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.cur.Swap(nil)
	if p == nil {
		return nil
	}
	return halt(p)
}

// Close stops the server if it is running and removes every directory Start
// created (all of them when Options.Dir was empty; only an overflow socket
// directory otherwise). It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	return errors.Join(s.stop(ctx), s.removeFiles())
}

// removeFiles closes the log and removes what Start created.
func (s *Server) removeFiles() error {
	var errs []error
	if s.logFile != nil {
		errs = append(errs, s.logFile.Close())
		s.logFile = nil
	}
	if s.removeSock {
		errs = append(errs, os.RemoveAll(s.sockDir))
	}
	if s.removeRoot {
		errs = append(errs, os.RemoveAll(s.root))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pgserver: clean up: %w", err)
	}
	return nil
}

// freePort asks the kernel for an unused port. Another process may take it
// before postgres binds it; Start retries in that case.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgserver: pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
