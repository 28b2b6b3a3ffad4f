package dbsink

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dualwrite/ingest/schema"
)

// Defaults for the zero values of [Config].
const (
	DefaultName           = "db"
	DefaultPoolSize       = 4
	DefaultMinBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultAttemptTimeout = 5 * time.Minute
	// defaultConnectTimeout applies when the URL sets no connect_timeout:
	// without one, a connect to a black-holed host would hang for the
	// kernel's TCP timeout (minutes) before the first retry.
	defaultConnectTimeout = 10 * time.Second
)

// Config configures [New]. Only URL and Schema are required; every other
// zero value means the default named next to the field.
type Config struct {
	// URL is the PostgreSQL connection string, in any form pgx accepts
	// (postgres://user@host/db?sslmode=... or "host=... dbname=..."). It
	// may carry a password, so it never appears in errors or logs.
	URL string
	// Schema lists the tables [Sink.Migrate] and [DDL] create. Submit
	// itself stores each record by the table it was decoded against
	// (Record.Table), so a config reload that builds a new Schema takes
	// effect at the next batch without a new Sink.
	Schema *schema.Schema
	// Name is the sink name, the key of this sink's checkpoint rows
	// (default "db"). Two loaders writing the same streams into the same
	// database must not share a name with different data; a backfill
	// should use its own name (e.g. "backfill") so that it never moves the
	// live loader's checkpoints.
	Name string
	// PoolSize is the maximum number of connections (default 4). A batch
	// uses one connection, so this bounds how many streams load at once.
	PoolSize int32
	// MinBackoff and MaxBackoff bound the wait between retries of a
	// transaction that failed on a transient error (default 100ms, 30s).
	// The wait doubles from MinBackoff up to MaxBackoff, with jitter.
	MinBackoff, MaxBackoff time.Duration
	// AttemptTimeout bounds one transaction attempt (default 5m). It is a
	// safety net for a connection that hangs without an error (a peer
	// that vanished without a RST); the attempt is then retried.
	AttemptTimeout time.Duration
	// Logger receives retries and rejected rows; nil discards them.
	Logger *slog.Logger
}

// ConfigError reports an invalid [Config] field. Field is the Go field
// name ("URL", "PoolSize"), so that the CLI can map it to its config key
// or flag.
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string { return "dbsink: config " + e.Field + ": " + e.Msg }

// withDefaults returns a copy of c with zero values replaced by defaults.
func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.PoolSize == 0 {
		c.PoolSize = DefaultPoolSize
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = max(DefaultMaxBackoff, c.MinBackoff)
	}
	if c.AttemptTimeout == 0 {
		c.AttemptTimeout = DefaultAttemptTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// validate checks c (after defaults) and builds the pool config. Every
// problem is reported, each as a *ConfigError, joined with errors.Join.
func (c Config) validate() (*pgxpool.Config, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	var pc *pgxpool.Config
	if c.URL == "" {
		bad("URL", "is required")
	} else {
		var err error
		if pc, err = pgxpool.ParseConfig(c.URL); err != nil {
			// pgx masks passwords in its parse errors.
			bad("URL", "%v", err)
		}
	}
	if c.Schema == nil {
		bad("Schema", "is required")
	} else if len(c.Schema.Tables()) == 0 {
		bad("Schema", "has no tables")
	}
	if strings.IndexByte(c.Name, 0) >= 0 {
		bad("Name", "contains a NUL byte")
	}
	if c.PoolSize < 1 {
		bad("PoolSize", "must be at least 1, got %d", c.PoolSize)
	}
	if c.MinBackoff < 0 {
		bad("MinBackoff", "must not be negative, got %v", c.MinBackoff)
	}
	if c.MaxBackoff < c.MinBackoff {
		bad("MaxBackoff", "%v is below MinBackoff %v", c.MaxBackoff, c.MinBackoff)
	}
	if c.AttemptTimeout < 0 {
		bad("AttemptTimeout", "must not be negative, got %v", c.AttemptTimeout)
	}
	if len(errs) > 0 {
		slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
		return nil, errors.Join(errs...)
	}
	pc.MaxConns = c.PoolSize
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	return pc, nil
}
