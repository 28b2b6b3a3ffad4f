// Package pgserver runs a throwaway PostgreSQL server from the locally
// installed server binaries, for integration tests, the `ingest demo`
// command and benchmark scripts. It is a runtime package on purpose: it does
// not import "testing", so commands can use it too; the test-facing wrapper
// with skip/fail policy and automatic cleanup is internal/testenv.
//
// # Pieces
//
// [Start] finds the binaries (see [Options.BinDir]), creates a directory
// layout, runs initdb once (trust authentication, superuser "postgres",
// UTF8, C locale) and starts the postmaster as a direct child process. It
// returns once the server accepts connections on 127.0.0.1:[Server.Port]
// (see [Server.URL]) and on a unix socket in [Server.SocketDir].
//
// The returned [Server] then supports the fault scenarios the sinks are
// tested against:
//
//   - [Server.Stop]: fast shutdown (what `pg_ctl stop -m fast` does: SIGINT
//     to the postmaster); data is kept, [Server.Start] brings it back on the
//     same port.
//   - [Server.Kill]: immediate shutdown (`pg_ctl stop -m immediate`,
//     SIGQUIT): no shutdown checkpoint, so the next start runs crash
//     recovery from the WAL. Committed transactions must survive it, which is
//     why the server keeps fsync=on and synchronous_commit=on.
//   - [Server.Close]: stops the server if it runs and removes every
//     directory that Start created. It is idempotent.
//
// # Why a direct child and not pg_ctl start
//
// pg_ctl daemonizes the postmaster, so a test binary that panics or is
// killed would leave servers behind. Here the postmaster is our child with
// a parent-death signal (Linux), so it goes away with the process that
// started it even on the abnormal path, and [Server.Stop] and [Server.Kill]
// can wait for the exact process to exit instead of polling a pid file.
// The signals sent are the ones pg_ctl sends, so shutdown semantics are the
// same.
//
// # Running as root
//
// PostgreSQL refuses to run as root. When the current process is root,
// initdb and postgres run as the "postgres" OS user (Debian packages create
// it), and the directories Start creates are handed to that user. A
// caller-supplied [Options.Dir] must therefore be traversable by that user;
// directories from t.TempDir are not (their parent is 0700), which is why
// internal/testenv lets Start create its own directory under $TMPDIR.
//
// # Unix socket path
//
// A unix socket path must fit in sockaddr_un (about 107 bytes). The socket
// directory is <Dir>/sock when that keeps the socket path under 100 bytes
// and a fresh directory under /tmp otherwise; [Server.Close] removes it in
// both cases.
//
// When the binaries cannot be found, Start returns an error wrapping
// [ErrNotInstalled], whose message says how to install them.
package pgserver
