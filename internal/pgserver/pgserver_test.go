package pgserver_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/dualwrite/ingest/internal/pgserver"
	"github.com/dualwrite/ingest/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func connect(t *testing.T, ctx context.Context, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func exec(t *testing.T, ctx context.Context, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// values returns column v of table t ordered by v.
func values(t *testing.T, ctx context.Context, url string) []string {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT v FROM t ORDER BY v")
	if err != nil {
		t.Fatalf("select: %v", err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("select: %v", err)
	}
	return got
}

// serverWithRow starts a server whose table t holds the one row v, for
// the tests that check what survives a stop or a crash; it returns the
// server with a bounded context and a connection to it.
func serverWithRow(t *testing.T, v string) (*pgserver.Server, context.Context, *pgx.Conn) {
	t.Helper()
	srv := testenv.Postgres(t)
	ctx := testenv.Context(t, 20*time.Second)
	conn := connect(t, ctx, srv.URL())
	exec(t, ctx, conn, "CREATE TABLE t (v text)")
	exec(t, ctx, conn, "INSERT INTO t VALUES ($1)", v)
	return srv, ctx, conn
}

func equal(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	srv := testenv.Postgres(t)
	ctx := testenv.Context(t, 20*time.Second)

	conn := connect(t, ctx, srv.URL())
	exec(t, ctx, conn, "CREATE TABLE t (v text PRIMARY KEY)")
	exec(t, ctx, conn, "INSERT INTO t VALUES ($1), ($2)", "a", "ü✓") // UTF8 survives

	// Read back over the other listener, proving both work.
	if got, want := values(t, ctx, srv.SocketURL()), []string{"a", "ü✓"}; !equal(got, want) {
		t.Fatalf("via socket: got %q, want %q", got, want)
	}
	if !strings.HasPrefix(srv.URL(), "postgres://postgres@127.0.0.1:"+strconv.Itoa(srv.Port())+"/") {
		t.Fatalf("URL %q does not name port %d", srv.URL(), srv.Port())
	}
	var enc, fsync, syncCommit string
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_encoding'), current_setting('fsync'), "+
		"current_setting('synchronous_commit')").Scan(&enc, &fsync, &syncCommit); err != nil {
		t.Fatal(err)
	}
	if enc != "UTF8" || fsync != "on" || syncCommit != "on" {
		t.Fatalf("server_encoding=%s fsync=%s synchronous_commit=%s, want UTF8 on on", enc, fsync, syncCommit)
	}
}

func TestStopStartKeepsData(t *testing.T) {
	t.Parallel()
	srv, ctx, _ := serverWithRow(t, "before-stop")
	pid, port := srv.PID(), srv.Port()

	if err := srv.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if srv.PID() != 0 || alive(pid) {
		t.Fatalf("postmaster %d still running after Stop", pid)
	}
	if _, err := pgx.Connect(ctx, srv.URL()); err == nil {
		t.Fatal("connected to a stopped server")
	}
	if err := srv.Stop(ctx); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatalf("start again: %v", err)
	}
	if srv.Port() != port {
		t.Fatalf("port changed from %d to %d", port, srv.Port())
	}
	if err := srv.Start(ctx); err == nil {
		t.Fatal("Start of a running server succeeded")
	}
	if got, want := values(t, ctx, srv.URL()), []string{"before-stop"}; !equal(got, want) {
		t.Fatalf("after restart: got %q, want %q", got, want)
	}
	if strings.Contains(srv.LogTail(), "automatic recovery in progress") {
		t.Fatal("a fast stop should not need crash recovery")
	}
}

func TestKillKeepsCommittedOnly(t *testing.T) {
	t.Parallel()
	srv, ctx, conn := serverWithRow(t, "committed")
	// An open transaction at crash time must vanish.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO t VALUES ('uncommitted')"); err != nil {
		t.Fatal(err)
	}
	pid := srv.PID()

	if err := srv.Kill(); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if alive(pid) {
		t.Fatalf("postmaster %d still running after Kill", pid)
	}
	if err := tx.Commit(ctx); err == nil {
		t.Fatal("commit on a killed server succeeded")
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatalf("start after kill: %v", err)
	}
	if got, want := values(t, ctx, srv.URL()), []string{"committed"}; !equal(got, want) {
		t.Fatalf("after crash: got %q, want %q", got, want)
	}
	// Proof that Kill was a crash and not a clean stop.
	if !strings.Contains(srv.LogTail(), "automatic recovery in progress") {
		t.Fatalf("no crash recovery in the log after Kill:\n%s", srv.LogTail())
	}
}

func TestCloseLeavesNothing(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t, 20*time.Second)
	srv := testenv.Postgres(t)

	conn := connect(t, ctx, srv.URL()) // a backend process, too
	exec(t, ctx, conn, "SELECT 1")
	pid := srv.PID()
	procs := append(childrenOf(t, pid), pid)
	if len(procs) < 3 {
		t.Fatalf("expected postmaster plus background processes, found %v", procs)
	}
	root := filepath.Dir(srv.DataDir())

	if err := srv.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	for _, p := range procs {
		if alive(p) {
			t.Errorf("process %d survived Close", p)
		}
	}
	for _, dir := range []string{root, srv.SocketDir()} {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived Close: %v", dir, err)
		}
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := srv.Start(ctx); err == nil {
		t.Fatal("Start after Close succeeded")
	}
}

// A caller-owned Dir is kept and reused; a deep Dir moves the socket to
// /tmp because sun_path is ~107 bytes, and Close removes that socket dir.
func TestCallerDirKeptAndLongSocketPath(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t, 60*time.Second)
	base, err := os.MkdirTemp("", "pgserver-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	// MkdirTemp makes 0700; the postgres user (when we are root) must enter.
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, strings.Repeat("d", 60), strings.Repeat("e", 40))

	srv := testenv.PostgresWith(t, pgserver.Options{Dir: dir})
	if got := srv.SocketDir(); strings.HasPrefix(got, dir) || len(got)+len("/.s.PGSQL.65535") >= 100 {
		t.Fatalf("socket dir %q (len %d) should have moved out of the long Dir", got, len(got))
	}
	if _, err := os.Stat(filepath.Join(srv.SocketDir(), ".s.PGSQL."+strconv.Itoa(srv.Port()))); err != nil {
		t.Fatalf("socket: %v", err)
	}
	conn := connect(t, ctx, srv.SocketURL())
	exec(t, ctx, conn, "CREATE TABLE t (v text)")
	exec(t, ctx, conn, "INSERT INTO t VALUES ('kept')")
	conn.Close(ctx)
	sock := srv.SocketDir()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket dir %s survived Close: %v", sock, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "PG_VERSION")); err != nil {
		t.Fatalf("caller's data dir was not kept: %v", err)
	}

	// Same Dir again: no initdb, the row is still there.
	srv2 := testenv.PostgresWith(t, pgserver.Options{Dir: dir})
	if got, want := values(t, ctx, srv2.URL()), []string{"kept"}; !equal(got, want) {
		t.Fatalf("reused Dir: got %q, want %q", got, want)
	}
}

func TestNotInstalled(t *testing.T) {
	empty := t.TempDir()
	ctx := testenv.Context(t, 10*time.Second)

	_, err := pgserver.Start(ctx, pgserver.Options{BinDir: empty})
	if !errors.Is(err, pgserver.ErrNotInstalled) {
		t.Fatalf("Start with empty BinDir: %v, want ErrNotInstalled", err)
	}
	if !strings.Contains(err.Error(), "apt-get install -y postgresql") {
		t.Fatalf("error lacks the install hint: %v", err)
	}
	t.Setenv("PG_BIN", empty)
	if _, err := pgserver.FindBinDir(ctx); !errors.Is(err, pgserver.ErrNotInstalled) {
		t.Fatalf("FindBinDir with empty PG_BIN: %v, want ErrNotInstalled", err)
	}
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// Format: pid (comm) state ...; comm may contain spaces and parens.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	var kids []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			kids = append(kids, n)
		}
	}
	return kids
}

// As root the server runs as the postgres user, which cannot enter a
// t.TempDir (its parent is 0700): Start must say so, not fail in initdb.
func TestUntraversableDirAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root hands the server to another user")
	}
	if _, err := pgserver.FindBinDir(t.Context()); err != nil {
		if testenv.RequireServices() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	_, err := pgserver.Start(testenv.Context(t, 10*time.Second), pgserver.Options{Dir: filepath.Join(t.TempDir(), "pg")})
	if err == nil || !strings.Contains(err.Error(), "not traversable") {
		t.Fatalf("Start in a 0700 tree: %v, want a 'not traversable' error", err)
	}
}
