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
	return ConnectURL(tb, srv.URL())
}

// ConnectURL is Connect for a database known only by its URL (a config's
// db.url).
func ConnectURL(tb testing.TB, url string) *pgx.Conn {
	tb.Helper()
	ctx := testenv.Context(tb, 30*time.Second)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, "SET TimeZone = 'UTC'"); err != nil {
		tb.Fatalf("set time zone: %v", err)
	}
	return conn
}

// Exec runs a statement, failing the test on error, and returns the
// number of rows it affected.
func Exec(tb testing.TB, conn *pgx.Conn, sql string, args ...any) int64 {
	tb.Helper()
	tag, err := conn.Exec(context.Background(), sql, args...)
	if err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return tag.RowsAffected()
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

// QueryIntURL is QueryInt on a connection of its own, closed before it
// returns: for a test that asks now and then (a poll would otherwise
// keep a connection open per call until the test ends).
func QueryIntURL(tb testing.TB, url, sql string, args ...any) int64 {
	tb.Helper()
	n, err := queryIntURL(testenv.Context(tb, 30*time.Second), url, sql, args...)
	if err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return n
}

// TryQueryInt is QueryIntURL that returns the error instead of failing
// the test, within 5 s: for polling a server that may be down (a test
// stops it on purpose).
func TryQueryInt(url, sql string, args ...any) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return queryIntURL(ctx, url, sql, args...)
}

func queryIntURL(ctx context.Context, url, sql string, args ...any) (int64, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var n int64
	err = conn.QueryRow(ctx, sql, args...).Scan(&n)
	return n, err
}
