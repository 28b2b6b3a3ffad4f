package dbsink

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/dualwrite/ingest/internal/pgserver"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func mustSchema(tb testing.TB, tables map[string]*schema.Table) *schema.Schema {
	tb.Helper()
	s, err := schema.New(tables)
	if err != nil {
		tb.Fatalf("schema: %v", err)
	}
	return s
}

// newSink opens a sink on srv with fast retries, closed in cleanup, and
// migrated when migrate is set.
func newSink(tb testing.TB, srv *pgserver.Server, sch *schema.Schema, migrate bool, mod ...func(*Config)) *Sink {
	tb.Helper()
	cfg := Config{
		URL:        srv.URL(),
		Schema:     sch,
		MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
		Logger:     testLogger(tb),
	}
	for _, m := range mod {
		m(&cfg)
	}
	s, err := New(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(s.Close)
	if migrate {
		if err := s.Migrate(testenv.Context(tb, 30*time.Second)); err != nil {
			tb.Fatalf("Migrate: %v", err)
		}
	}
	return s
}

// testLogger logs through tb only when -v is on, so that retry warnings
// are visible while debugging but do not flood normal runs.
func testLogger(tb testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return nil
	}
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// lineFile lays out lines as one offline file would: each record's
// position is its byte offset in file.
type lineFile struct {
	file  string
	pos   []loader.Position // pos[i] is where line i starts; pos[len] is the end
	lines [][]byte
}

func newLineFile(file string, lines []string) *lineFile {
	f := &lineFile{file: file}
	var off int64
	for _, l := range lines {
		f.pos = append(f.pos, loader.Position{File: file, Offset: off})
		f.lines = append(f.lines, []byte(l))
		off += int64(len(l)) + 1
	}
	f.pos = append(f.pos, loader.Position{File: file, Offset: off})
	return f
}

// decode turns lines [from, to) into records, failing the test on a line
// Decode rejects.
func (f *lineFile) decode(tb testing.TB, s *schema.Schema, from, to int) []loader.Record {
	tb.Helper()
	var recs []loader.Record
	for i := from; i < to; i++ {
		rec, err := s.Decode(f.lines[i], "")
		if err != nil {
			tb.Fatalf("decode line %d: %v\n%s", i, err, f.lines[i])
		}
		recs = append(recs, loader.Record{Record: rec, Pos: f.pos[i], Line: f.lines[i], RecordID: rec.ID})
	}
	return recs
}

// rawRecord builds a record without Decode, for rows Decode would refuse.
func rawRecord(t *schema.Table, pos loader.Position, row string) loader.Record {
	return loader.Record{Record: schema.Record{Table: t, Row: []byte(row)}, Pos: pos, Line: []byte(row)}
}

// deadLetters records what a batch rejected.
type deadLetters struct {
	mu   sync.Mutex
	list []deadLetter
}

type deadLetter struct {
	Pos            loader.Position
	Reason, Detail string
}

func (d *deadLetters) reject(_ context.Context, r *loader.Record, reason, detail string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.list = append(d.list, deadLetter{r.Pos, reason, detail})
	return nil
}

func (d *deadLetters) all() []deadLetter {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]deadLetter(nil), d.list...)
}

// submit runs Submit and returns what ack got, once it came.
func submit(tb testing.TB, ctx context.Context, s *Sink, b *loader.Batch) error {
	tb.Helper()
	acks := make(chan error, 1)
	if err := s.Submit(ctx, b, func(err error) { acks <- err }); err != nil {
		return fmt.Errorf("Submit: %w", err)
	}
	select {
	case err := <-acks:
		return err
	case <-time.After(2 * time.Minute):
		tb.Fatalf("no ack for batch %d of stream %s", b.Seq, b.Stream)
		return nil
	}
}

func connect(tb testing.TB, srv *pgserver.Server) *pgx.Conn {
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

func exec(tb testing.TB, conn *pgx.Conn, sql string, args ...any) {
	tb.Helper()
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
}

func queryInt(tb testing.TB, conn *pgx.Conn, sql string, args ...any) int64 {
	tb.Helper()
	var n int64
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return n
}

func checkpointOf(tb testing.TB, s *Sink, stream string) loader.Position {
	tb.Helper()
	pos, ok, err := s.Checkpoint(testenv.Context(tb, 30*time.Second), stream)
	if err != nil || !ok {
		tb.Fatalf("Checkpoint(%s) = %v, %v, %v", stream, pos, ok, err)
	}
	return pos
}
