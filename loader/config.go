package loader

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/dualwrite/ingest/schema"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults applied by [New] to zero fields of [Config].
const (
	DefaultMaxRecords      = 2000
	DefaultMaxBytes        = 4 << 20
	DefaultLinger          = 20 * time.Millisecond
	DefaultSealAfter       = 10 * time.Second
	DefaultPollInterval    = 100 * time.Millisecond
	DefaultMaxLineBytes    = 16 << 20
	DefaultShutdownTimeout = 30 * time.Second
	DefaultMaxInFlight     = 1
	DefaultCacheBytes      = 32 << 20
	maxRetryBackoff        = 30 * time.Second
)

// BatchConfig bounds a batch; a batch is handed to its sink when any bound
// is reached, or Linger after its first line.
type BatchConfig struct {
	MaxRecords int           // default 2000
	MaxBytes   int           // bytes of the records' lines; default 4 MiB
	Linger     time.Duration // default 20 ms
}

func (b BatchConfig) withDefaults() BatchConfig {
	b.MaxRecords = orDefault(b.MaxRecords, DefaultMaxRecords)
	b.MaxBytes = orDefault(b.MaxBytes, DefaultMaxBytes)
	b.Linger = orDefault(b.Linger, DefaultLinger)
	return b
}

// StreamConfig is one stream's settings. Pattern, when set, admits files of
// a legacy writer: names matching it (on the name without ".open"), ordered
// by name; such a file is complete once renamed away from ".open", or once
// a newer file exists and it has not changed for SealAfter.
type StreamConfig struct {
	Name         string
	Pattern      string
	DefaultTable string        // for lines without "table"
	SealAfter    time.Duration // default 10 s
}

// RouteFunc says whether a record of table with account key goes to a sink.
type RouteFunc func(table *schema.Table, key string) bool

// SinkSpec is a sink and how the loader feeds it.
type SinkSpec struct {
	Sink Sink
	// Route selects the records for this sink; nil sends every record.
	Route RouteFunc
	// MaxInFlight is how many batches of one stream may await their ack.
	// Default 1. Checkpoints still advance only over a contiguous prefix.
	MaxInFlight int
	// Store keeps this sink's checkpoints. Nil means: the sink's own, if it
	// implements [CheckpointOwner], else a [FileStore] in the state dir.
	Store CheckpointStore
}

// Config configures a [Loader]. Zero fields take the documented defaults.
type Config struct {
	// Dir is the spool directory; each subdirectory is a stream. Required.
	Dir string
	// StateDir holds checkpoints, dead letters and archives. Default
	// Dir/.ingest.
	StateDir string
	// Streams lists the streams to load. Empty: every subdirectory of Dir
	// (not hidden), including ones created later.
	Streams []StreamConfig
	// Schema decodes and validates lines. Required.
	Schema *schema.Schema
	Batch  BatchConfig
	// Retention: 0 deletes a file once every sink passed it; > 0 moves it
	// to StateDir/archive/<stream>/ and deletes it after this long.
	Retention time.Duration
	// PollInterval is the fallback for file systems whose change events
	// are missing: every pipeline looks for new data at least this often.
	// Default 100 ms.
	PollInterval time.Duration
	// MaxLineBytes: longer lines are dead-lettered (reason line_too_long)
	// without being held in memory. Default 16 MiB.
	MaxLineBytes int
	// ShutdownTimeout bounds how long Run waits for in-flight batches after
	// its context ends. Default 30 s.
	ShutdownTimeout time.Duration
	// CacheBytes bounds the decoded lines that the pipelines of a stream
	// share (so that each line is read and decoded once however many
	// sinks take it), all streams together: each stream gets an equal
	// share, at most 4 × Batch.MaxBytes, and keeps no more than its share
	// of spare chunks either. Without it the memory grew with the number
	// of streams. Default 32 MiB (two streams at the default batch size).
	CacheBytes int

	Logger   *slog.Logger          // nil: discard
	Registry prometheus.Registerer // nil: metrics are kept but not registered

	now      func() time.Time
	noEvents bool                           // tests: behave as on a file system without change events
	openFile func(string) (*os.File, error) // tests: os.Open with injected failures
}

func (c Config) withDefaults() (Config, error) {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("loader: Config.Dir is required"))
	}
	if c.Schema == nil {
		errs = append(errs, errors.New("loader: Config.Schema is required"))
	}
	c.CacheBytes = orDefault(c.CacheBytes, DefaultCacheBytes)
	if c.StateDir == "" {
		c.StateDir = filepath.Join(c.Dir, DefaultStateSubdir)
	}
	c.Batch = c.Batch.withDefaults()
	seen := map[string]bool{}
	for i, s := range c.Streams {
		if s.Name == "" || s.Name != filepath.Base(s.Name) || s.Name[0] == '.' {
			errs = append(errs, fmt.Errorf("loader: Streams[%d].Name %q must be a non-hidden directory name", i, s.Name))
		}
		if seen[s.Name] {
			errs = append(errs, fmt.Errorf("loader: stream %q listed twice", s.Name))
		}
		seen[s.Name] = true
		if s.Pattern != "" {
			if _, err := filepath.Match(s.Pattern, ""); err != nil {
				errs = append(errs, fmt.Errorf("loader: stream %q: pattern %q: %v", s.Name, s.Pattern, err))
			}
		}
		c.Streams[i].SealAfter = orDefault(s.SealAfter, DefaultSealAfter)
	}
	c.PollInterval = orDefault(c.PollInterval, DefaultPollInterval)
	c.MaxLineBytes = orDefault(c.MaxLineBytes, DefaultMaxLineBytes)
	c.ShutdownTimeout = orDefault(c.ShutdownTimeout, DefaultShutdownTimeout)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, errors.Join(errs...)
}

// orDefault is v, or def when v is zero or negative: a zero field takes
// its documented default, and a negative size or duration means nothing
// else either.
func orDefault[T ~int | ~int64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

func (c Config) streamConfig(name string) (StreamConfig, bool) {
	if len(c.Streams) == 0 {
		return StreamConfig{Name: name, SealAfter: DefaultSealAfter}, true
	}
	for _, s := range c.Streams {
		if s.Name == name {
			return s, true
		}
	}
	return StreamConfig{}, false
}
