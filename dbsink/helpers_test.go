package dbsink

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/dualwrite/ingest/internal/loadertest"
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
		Logger:     loadertest.Logger(tb),
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

// sinkEnv is where most sink tests start: a PostgreSQL of their own, a
// sink on it, a connection to check what landed, and a context that ends
// the test instead of letting it hang.
type sinkEnv struct {
	srv  *pgserver.Server
	sch  *schema.Schema
	sink *Sink
	conn *pgx.Conn
	ctx  context.Context
}

// newSinkEnv starts that environment for sch; migrate and mod are as for
// newSink.
func newSinkEnv(t *testing.T, sch *schema.Schema, migrate bool, mod ...func(*Config)) *sinkEnv {
	t.Helper()
	srv := testenv.Postgres(t)
	return &sinkEnv{
		srv:  srv,
		sch:  sch,
		sink: newSink(t, srv, sch, migrate, mod...),
		conn: connect(t, srv),
		ctx:  testenv.Context(t, 60*time.Second),
	}
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

// batch is lines [from, to) of f as one batch of stream, decoded with s,
// without a dead-letter queue.
func (f *lineFile) batch(tb testing.TB, s *schema.Schema, stream string, from, to int) *loader.Batch {
	tb.Helper()
	return loader.NewBatch(stream, f.pos[from], f.pos[to], f.decode(tb, s, from, to), nil)
}

// rawRecord builds a record without Decode, for rows Decode would refuse.
func rawRecord(t *schema.Table, pos loader.Position, row string) loader.Record {
	return loader.Record{Record: schema.Record{Table: t, Row: []byte(row)}, Pos: pos, Line: []byte(row)}
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

// The package's tests' names for the shared PostgreSQL helpers.
var (
	connect  = loadertest.Connect
	exec     = loadertest.Exec
	queryInt = loadertest.QueryInt
)

func checkpointOf(tb testing.TB, s *Sink, stream string) loader.Position {
	tb.Helper()
	pos, ok, err := s.Checkpoint(testenv.Context(tb, 30*time.Second), stream)
	if err != nil || !ok {
		tb.Fatalf("Checkpoint(%s) = %v, %v, %v", stream, pos, ok, err)
	}
	return pos
}

// noCheckpoint fails the test unless s has no checkpoint for stream; when
// says at which point of the test.
func noCheckpoint(tb testing.TB, s *Sink, stream, when string) {
	tb.Helper()
	if pos, ok, err := s.Checkpoint(testenv.Context(tb, 30*time.Second), stream); err != nil || ok {
		tb.Fatalf("Checkpoint(%s) %s = %v, %v, %v; want none", stream, when, pos, ok, err)
	}
}
