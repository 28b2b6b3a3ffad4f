package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
)

// Config is the whole configuration file (docs/config.md). Get one from
// [Load] or [Parse], which apply [Default] and validate; a Config built by
// hand should start from Default too.
type Config struct {
	Spool   Spool    `yaml:"spool"`
	Streams []Stream `yaml:"streams"`
	Batch   Batch    `yaml:"batch"`
	Kafka   Kafka    `yaml:"kafka"`
	DB      DB       `yaml:"db"`
	Metrics Metrics  `yaml:"metrics"`
	Consume Consume  `yaml:"consume"`
	// Tables maps the "table" value of offline lines to its definition and
	// routing.
	Tables map[string]*Table `yaml:"tables"`
}

// Spool is where the offline files are and where the loader keeps its state.
type Spool struct {
	// Dir holds one subdirectory per stream (required).
	Dir string `yaml:"dir"`
	// StateDir holds checkpoints and dead letters (default <dir>/.ingest).
	StateDir string `yaml:"state_dir"`
	// Retention 0 deletes a file once every enabled sink has passed it; a
	// positive value archives it and deletes it after that long.
	Retention time.Duration `yaml:"retention"`
	// CacheBytes bounds the decoded lines the sinks of a stream share so
	// that each line is read and decoded once, all streams together
	// (loader.Config.CacheBytes; default 32MiB).
	CacheBytes ByteSize `yaml:"cache_bytes"`
}

// Stream is one subdirectory of the spool. Listing streams is optional: by
// default every subdirectory of spool.dir is a stream with default settings
// (see [Config.StreamFor]).
type Stream struct {
	Name string `yaml:"name"`
	// Pattern is a glob for files of a legacy writer (not rotatefile); ""
	// means rotatefile's naming.
	Pattern string `yaml:"pattern"`
	// DefaultTable is the table of lines that have no "table" member.
	DefaultTable string `yaml:"default_table"`
	// SealAfter: a legacy file counts as complete once a newer file exists
	// and it has not grown for this long (default 10s).
	SealAfter time.Duration `yaml:"seal_after"`
}

// Batch bounds each batch handed to a sink: it is flushed at MaxRecords
// records, MaxBytes bytes of rows, or Linger after its first record,
// whichever comes first.
type Batch struct {
	MaxRecords int           `yaml:"max_records"`
	MaxBytes   ByteSize      `yaml:"max_bytes"`
	Linger     time.Duration `yaml:"linger"`
}

// Kafka configures the Kafka sink.
type Kafka struct {
	// Brokers is a comma-separated host:port list. "" turns the Kafka sink
	// off; "embedded" runs librdkafka's in-process mock cluster (dev only).
	Brokers string `yaml:"brokers"`
	// Properties are librdkafka properties (SASL, TLS, tuning), applied over
	// the sink's safe defaults. Values may be written as YAML numbers or
	// booleans; they are passed on as strings.
	Properties map[string]string `yaml:"properties"`
}

// DB configures the PostgreSQL sink.
type DB struct {
	// URL is a libpq/pgx connection string. "" falls back to the
	// INGEST_DB_URL, then DATABASE_URL environment variables; if all are
	// empty the Postgres sink is off.
	URL string `yaml:"url"`
}

// Metrics configures the HTTP endpoint for /metrics, /healthz and /readyz.
type Metrics struct {
	Listen string `yaml:"listen"`
}

// Consume configures `ingest consume`, which loads PostgreSQL from the
// tables' topics (docs/consume.md).
type Consume struct {
	// Group is the Kafka consumer group id, which also names the group's
	// checkpoints in PostgreSQL. "" means "ingest-<database name of
	// db.url>", resolved by the consume package, which parses the URL.
	Group string `yaml:"group"`
}

// Table is a table definition plus its routing: the schema part is inline
// (key, id, time, topic, db_table, columns, unknown_fields, db_storage), DB and Kafka
// choose the accounts each sink receives.
type Table struct {
	schema.Table `yaml:",inline"`
	// DB selects the accounts written to Postgres (default all: the
	// migration starts with the database fed as before).
	DB Selector `yaml:"db"`
	// Kafka selects the accounts produced to Kafka (default none).
	Kafka Selector `yaml:"kafka"`
}

// Defaults, in one place. [Default] returns them as a Config; the doc
// comments of the fields and of the package refer here.
const (
	DefaultMaxRecords = 2000
	DefaultMaxBytes   = 4 << 20 // 4MiB
	DefaultLinger     = 20 * time.Millisecond
	DefaultCacheBytes = loader.DefaultCacheBytes // 32MiB
	DefaultSealAfter  = 10 * time.Second
	DefaultListen     = "127.0.0.1:9464"
	// DefaultStateSubdir is joined to spool.dir when state_dir is empty;
	// the loader owns the name.
	DefaultStateSubdir = loader.DefaultStateSubdir
)

// Environment variables consulted for db.url when it is empty, in order.
var dbURLEnv = []string{"INGEST_DB_URL", "DATABASE_URL"}

// Default returns a Config holding every default. Values that depend on
// other keys (state_dir from spool.dir; each table's topic and db_table
// from its name; stream seal_after; db.url from the environment; selector
// defaults db: all, kafka: none) are filled in by [Parse].
func Default() *Config {
	return &Config{
		Spool:   Spool{CacheBytes: DefaultCacheBytes},
		Batch:   Batch{MaxRecords: DefaultMaxRecords, MaxBytes: DefaultMaxBytes, Linger: DefaultLinger},
		Metrics: Metrics{Listen: DefaultListen},
	}
}

// Error is one configuration problem. Path names the key the way a user
// would write it ("tables.raw_item.kafka.percent", "streams[0].name");
// Line is its line in the file (0 when unknown).
type Error struct {
	File string
	Line int
	Path string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		fmt.Fprintf(&b, "%s: ", e.File)
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads and parses the config file at path. See [Parse].
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return parse(data, path, os.Getenv)
}

// Parse parses and validates a config document. It is strict: an unknown
// key, a duplicate key, a value of the wrong type, or an invalid value is
// an error naming the key path and line. Every problem found is reported:
// the error joins one *[Error] per problem (errors.As finds the first),
// sorted by line. Values are only validated once every key is known and
// well-typed, so a document with a typo reports the typo alone.
func Parse(data []byte) (*Config, error) {
	return parse(data, "", os.Getenv)
}

func parse(data []byte, file string, getenv func(string) string) (*Config, error) {
	fail := func(errs []*Error) error {
		slices.SortStableFunc(errs, func(a, b *Error) int { return a.Line - b.Line })
		out := make([]error, len(errs))
		for i, e := range errs {
			e.File = file
			out[i] = e
		}
		return errors.Join(out...)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fail([]*Error{yamlSyntaxError(err)})
	}
	if doc.Kind == 0 || len(doc.Content) == 0 || len(bytes.TrimSpace(data)) == 0 {
		return nil, fail([]*Error{{Msg: "config is empty"}})
	}
	root := resolveAlias(doc.Content[0])
	w := walker{lines: map[string]int{}, set: map[string]struct{}{}}
	w.walk(root, reflect.TypeFor[Config](), "")
	if len(w.errs) > 0 {
		return nil, fail(w.errs)
	}
	cfg := Default()
	if err := root.Decode(cfg); err != nil {
		// The walk checks every leaf, so this is a bug or a yaml corner case.
		return nil, fail([]*Error{yamlSyntaxError(err)})
	}
	cfg.applyDefaults(w.set, getenv)
	if errs := cfg.validate(); len(errs) > 0 {
		for _, e := range errs {
			if e.Line == 0 {
				e.Line = w.lineOf(e.Path)
			}
		}
		return nil, fail(errs)
	}
	return cfg, nil
}

// yamlSyntaxError keeps yaml's message but moves its "line N" into Line.
func yamlSyntaxError(err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	e := &Error{Msg: msg}
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, tail, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				e.Line, e.Msg = n, tail
			}
		}
	}
	return e
}

// applyDefaults fills in the defaults that depend on other keys or on
// whether a key was set at all (set holds the paths with a non-empty value).
func (c *Config) applyDefaults(set map[string]struct{}, getenv func(string) string) {
	if c.Spool.Dir != "" {
		c.Spool.Dir = filepath.Clean(c.Spool.Dir)
	}
	if c.Spool.StateDir == "" && c.Spool.Dir != "" {
		c.Spool.StateDir = filepath.Join(c.Spool.Dir, DefaultStateSubdir)
	}
	for i := range c.Streams {
		if _, ok := set[fmt.Sprintf("streams[%d].seal_after", i)]; !ok {
			c.Streams[i].SealAfter = DefaultSealAfter
		}
	}
	if c.DB.URL == "" {
		for _, k := range dbURLEnv {
			if v := getenv(k); v != "" {
				c.DB.URL = v
				break
			}
		}
	}
	for name, t := range c.Tables {
		if t == nil {
			continue
		}
		t.Name = name
		if t.Topic == "" {
			t.Topic = name
		}
		if t.DBTable == "" {
			t.DBTable = name
		}
		if _, ok := set["tables."+name+".db"]; !ok {
			t.DB = All
		}
		if _, ok := set["tables."+name+".kafka"]; !ok {
			t.Kafka = None
		}
	}
}

func (c *Config) validate() []*Error {
	var errs []*Error
	bad := func(path, format string, args ...any) {
		errs = append(errs, &Error{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if c.Spool.Dir == "" {
		bad("spool.dir", "is required")
	}
	if c.Spool.Retention < 0 {
		bad("spool.retention", "must not be negative, got %s", c.Spool.Retention)
	}
	names := map[string]int{}
	for i, s := range c.Streams {
		p := fmt.Sprintf("streams[%d]", i)
		switch {
		case s.Name == "":
			bad(p+".name", "is required")
		case strings.ContainsAny(s.Name, `/\`) || s.Name != filepath.Base(s.Name) || strings.HasPrefix(s.Name, "."):
			bad(p+".name", "must be a plain directory name not starting with '.', got %q", s.Name)
		default:
			if j, dup := names[s.Name]; dup {
				bad(p+".name", "stream %q is already defined at streams[%d]", s.Name, j)
			}
			names[s.Name] = i
		}
		if s.Pattern != "" {
			if _, err := filepath.Match(s.Pattern, ""); err != nil || strings.ContainsRune(s.Pattern, '/') {
				bad(p+".pattern", "must be a file name glob such as \"*.ndjson\", got %q", s.Pattern)
			}
		}
		if s.DefaultTable != "" {
			if _, ok := c.Tables[s.DefaultTable]; !ok {
				bad(p+".default_table", "table %q is not defined under tables", s.DefaultTable)
			}
		}
		if s.SealAfter <= 0 {
			bad(p+".seal_after", "must be positive, got %s", s.SealAfter)
		}
	}
	if c.Spool.CacheBytes <= 0 {
		bad("spool.cache_bytes", "must be positive, got %d", c.Spool.CacheBytes)
	}
	if c.Batch.MaxRecords <= 0 {
		bad("batch.max_records", "must be positive, got %d", c.Batch.MaxRecords)
	}
	if c.Batch.MaxBytes <= 0 {
		bad("batch.max_bytes", "must be positive, got %d", c.Batch.MaxBytes)
	}
	if c.Batch.Linger < 0 {
		bad("batch.linger", "must not be negative, got %s", c.Batch.Linger)
	}
	if b := c.Kafka.Brokers; b != "" && b != "embedded" {
		for _, hp := range strings.Split(b, ",") {
			if _, port, err := net.SplitHostPort(strings.TrimSpace(hp)); err != nil || port == "" {
				bad("kafka.brokers", "must be \"\", \"embedded\" or a comma-separated host:port list, got %q", b)
				break
			}
		}
	}
	for k := range c.Kafka.Properties {
		if k == "bootstrap.servers" || k == "metadata.broker.list" {
			bad("kafka.properties."+k, "set kafka.brokers instead")
		}
	}
	// A group id with surrounding blanks is a quoting slip; Kafka would
	// take it as a different group, which starts over from scratch.
	if g := c.Consume.Group; g != strings.TrimSpace(g) || strings.ContainsFunc(g, unicode.IsControl) {
		bad("consume.group", "must not start or end with a blank or hold control characters, got %q", g)
	}
	if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
		bad("metrics.listen", "must be host:port, got %q", c.Metrics.Listen)
	}
	if len(c.Tables) == 0 {
		bad("tables", "at least one table is required")
	}
	for name, t := range c.Tables {
		p := "tables." + name
		if t == nil {
			bad(p, "table definition is empty")
			continue
		}
		if err := t.Validate(); err != nil {
			for _, fe := range fieldErrors(err) {
				bad(p+"."+fe.Field, "%s", fe.Msg)
			}
		}
	}
	return errs
}

// fieldErrors flattens the joined *schema.FieldError values of Validate.
func fieldErrors(err error) []*schema.FieldError {
	var out []*schema.FieldError
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var fe *schema.FieldError
		if errors.As(err, &fe) {
			out = append(out, fe)
		} else {
			out = append(out, &schema.FieldError{Field: "", Msg: err.Error()})
		}
	}
	walk(err)
	return out
}

// Schema builds the decoding schema from the tables. Parse has already
// validated them, so an error here means the Config was changed by hand.
func (c *Config) Schema() (*schema.Schema, error) {
	tables := make(map[string]*schema.Table, len(c.Tables))
	for name, t := range c.Tables {
		if t == nil {
			return nil, fmt.Errorf("config: table %q has no definition", name)
		}
		tables[name] = &t.Table
	}
	s, err := schema.New(tables)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return s, nil
}

// KafkaEnabled reports whether the Kafka sink is configured.
func (c *Config) KafkaEnabled() bool { return c.Kafka.Brokers != "" }

// DBEnabled reports whether the Postgres sink is configured.
func (c *Config) DBEnabled() bool { return c.DB.URL != "" }

// StreamFor returns the settings of the named stream: its entry under
// streams, or the defaults for a stream discovered as a subdirectory.
func (c *Config) StreamFor(name string) Stream {
	for _, s := range c.Streams {
		if s.Name == name {
			return s
		}
	}
	return Stream{Name: name, SealAfter: DefaultSealAfter}
}
