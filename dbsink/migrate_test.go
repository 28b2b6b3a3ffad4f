package dbsink

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dualwrite/ingest/schema"
)

func TestMigrateIsIdempotentAndChecksExistingTables(t *testing.T) {
	t.Parallel()
	sch := mustSchema(t, map[string]*schema.Table{
		"events": {Key: "acct", ID: "id", DBTable: "app.events",
			Columns:   map[string]string{"acct": "bigint", "id": "uuid", "n": "integer"},
			DBStorage: map[string]string{"toast_tuple_target": "8160"}},
	})
	e := newSinkEnv(t, sch, true)
	srv, s, conn, ctx := e.srv, e.sink, e.conn, e.ctx
	// Twice, and concurrently: the advisory lock serialises the creates.
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- s.Migrate(ctx) }()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatalf("Migrate again: %v", err)
		}
	}
	if n := queryInt(t, conn, `SELECT count(*) FROM pg_tables WHERE (schemaname, tablename) IN (('app', 'events'), ('public', 'ingest_checkpoints'))`); n != 2 {
		t.Fatalf("%d of the 2 tables exist", n)
	}
	if n := queryInt(t, conn, `SELECT count(*) FROM pg_class WHERE oid = 'app.events'::regclass AND 'toast_tuple_target=8160' = ANY (reloptions)`); n != 1 {
		t.Errorf("app.events was not created with its db_storage parameter")
	}

	// A table that exists without a configured column, or without a unique
	// index on its id, is reported by name.
	exec(t, conn, `CREATE TABLE legacy (acct bigint, id text, n bigint)`)
	exec(t, conn, `CREATE TABLE legacy2 (acct bigint, body text)`)
	bad := mustSchema(t, map[string]*schema.Table{
		"legacy":  {Key: "acct", ID: "id", Columns: map[string]string{"acct": "bigint", "id": "text", "n": "integer"}},
		"legacy2": {Key: "acct", Columns: map[string]string{"acct": "bigint", "body": "text", "missing col": "jsonb"}},
	})
	s2 := newSink(t, srv, bad, false)
	err := s2.Migrate(ctx)
	if err == nil {
		t.Fatal("Migrate accepted tables that do not match the config")
	}
	for _, want := range []string{`"legacy" has no unique index on its id column "id"`, `"legacy2" has no column "missing col"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	exec(t, conn, `ALTER TABLE legacy ADD PRIMARY KEY (id)`)
	exec(t, conn, `ALTER TABLE legacy2 ADD COLUMN "missing col" jsonb`)
	if err := s2.Migrate(ctx); err != nil {
		t.Fatalf("Migrate after fixing the tables: %v", err)
	}

	// Migrate does not retry: with the server down it fails, and the error
	// says the caller may retry.
	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	err = s2.Migrate(ctx)
	if err == nil || !Retryable(err) {
		t.Fatalf("Migrate with the server down = %v (retryable %v)", err, Retryable(err))
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	sch := mustSchema(t, map[string]*schema.Table{"a": {Key: "k", Columns: map[string]string{"k": "bigint"}}})
	for _, tc := range []struct {
		name   string
		cfg    Config
		fields []string
	}{
		{"empty", Config{}, []string{"Schema", "URL"}},
		{"bad url", Config{URL: "postgres://u:secret@host:notaport/db", Schema: sch}, []string{"URL"}},
		{"bad numbers", Config{URL: "postgres://localhost/db", Schema: sch, PoolSize: -1, MinBackoff: time.Second, MaxBackoff: time.Millisecond, AttemptTimeout: -1},
			[]string{"AttemptTimeout", "MaxBackoff", "PoolSize"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(context.Background(), tc.cfg)
			if err == nil {
				t.Fatal("New accepted the config")
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error leaks the password: %v", err)
			}
			var fields []string
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var ce *ConfigError
				if !errors.As(e, &ce) {
					t.Fatalf("%v is not a *ConfigError", e)
				}
				fields = append(fields, ce.Field)
			}
			if strings.Join(fields, ",") != strings.Join(tc.fields, ",") {
				t.Fatalf("bad fields %v, want %v (%v)", fields, tc.fields, err)
			}
		})
	}
	s, err := New(context.Background(), Config{URL: "postgres://localhost:1/db", Schema: sch})
	if err != nil {
		t.Fatalf("valid config: %v", err)
	}
	defer s.Close()
	if s.Name() != "db" || s.cfg.PoolSize != DefaultPoolSize || s.cfg.MaxBackoff != DefaultMaxBackoff {
		t.Fatalf("defaults not applied: %+v", s.cfg)
	}
}
