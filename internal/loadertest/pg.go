package loadertest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dualwrite/ingest/internal/pgserver"
	"github.com/dualwrite/ingest/internal/testenv"
)

// Connect opens a connection to srv, closed in cleanup. Its time zone is
// UTC, so timestamps read back compare with the rows' UTC times.
func Connect(tb testing.TB, srv *pgserver.Server) *pgx.Conn {
	tb.Helper()
	ctx := testenv.Context(tb, 30*time.Second)
	conn, err := pgx.Connect(ctx, srv.URL())
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, "SET TimeZone = 'UTC'"); err != nil {
		tb.Fatalf("set time zone: %v", err)
	}
	return conn
}

// Exec runs a statement, failing the test on error.
func Exec(tb testing.TB, conn *pgx.Conn, sql string, args ...any) {
	tb.Helper()
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
}

// QueryInt runs a query returning one integer, failing the test on error.
func QueryInt(tb testing.TB, conn *pgx.Conn, sql string, args ...any) int64 {
	tb.Helper()
	var n int64
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return n
}
