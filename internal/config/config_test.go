package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// specExample is the reference config of docs/config.md (section "Every key
// at a glance"), verbatim: if a key is renamed or its default changes, this
// test fails until the user documentation is changed with it.
const specExample = `spool:
  dir: /var/spool/ingest
  state_dir: ""            # default <dir>/.ingest
  retention: 0s            # 0 = delete once all sinks passed; >0 = archive, delete after
streams:                   # optional; default: every subdirectory of spool.dir
  - name: api
    pattern: "*.ndjson"
    default_table: ""      # for legacy lines without "table"
batch: {max_records: 2000, max_bytes: 4MiB, linger: 20ms}
kafka:
  brokers: ""              # empty: Kafka sink off; "embedded": in-process mock (dev only)
  properties: {}           # librdkafka properties
db:
  url: ""                  # also INGEST_DB_URL / DATABASE_URL; empty: db sink off
metrics: {listen: "127.0.0.1:9464"}
consume: {group: ""}       # ingest consume's group; default ingest-<database of db.url>
tables:
  raw_item:
    key: project_id        # account key inside row
    id: uuid               # optional unique id inside row
    time: timestamp        # optional event time inside row (epoch seconds/ms or RFC 3339):
                           # the Kafka message timestamp, and the field that backfill
                           # --since/--until and verify windows filter on
    topic: raw_item
    db_table: raw_item
    columns: {project_id: bigint, timestamp: bigint, body: text, version: integer,
              billable: integer, uuid: uuid}
    db: all
    kafka: {percent: 25}
`

func noEnv(string) string { return "" }

func TestParseSpecExample(t *testing.T) {
	cfg, err := parse([]byte(specExample), "", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Spool.Dir != "/var/spool/ingest" || cfg.Spool.StateDir != "/var/spool/ingest/.ingest" || cfg.Spool.Retention != 0 {
		t.Errorf("spool = %+v", cfg.Spool)
	}
	if len(cfg.Streams) != 1 || cfg.Streams[0] != (Stream{Name: "api", Pattern: "*.ndjson", SealAfter: 10 * time.Second}) {
		t.Errorf("streams = %+v", cfg.Streams)
	}
	if cfg.Batch != (Batch{MaxRecords: 2000, MaxBytes: 4 << 20, Linger: 20 * time.Millisecond}) {
		t.Errorf("batch = %+v", cfg.Batch)
	}
	if cfg.KafkaEnabled() || cfg.DBEnabled() || len(cfg.Kafka.Properties) != 0 {
		t.Errorf("sinks should be off: kafka %+v db %+v", cfg.Kafka, cfg.DB)
	}
	if cfg.Metrics.Listen != "127.0.0.1:9464" {
		t.Errorf("metrics = %+v", cfg.Metrics)
	}
	tbl := cfg.Tables["raw_item"]
	if tbl == nil || tbl.Name != "raw_item" || tbl.Key != "project_id" || tbl.ID != "uuid" || tbl.Time != "timestamp" ||
		tbl.Topic != "raw_item" || tbl.DBTable != "raw_item" || len(tbl.Columns) != 6 || tbl.Columns["version"] != "integer" {
		t.Fatalf("table = %+v", tbl)
	}
	if tbl.DB.String() != "all" || tbl.Kafka.String() != "{percent: 25}" {
		t.Errorf("routes db=%s kafka=%s", tbl.DB, tbl.Kafka)
	}
	s, err := cfg.Schema()
	if err != nil {
		t.Fatal(err)
	}
	rec, err := s.Decode([]byte(`{"table":"raw_item","row":{"project_id":1,"timestamp":1574948156,"body":"eJyN","version":2,"billable":1,"uuid":"bad3a155-585f-47cb-bc3e-51767d52c2a2"},"counter":356}`), "")
	if err != nil || rec.Key != "1" {
		t.Fatalf("decode with config schema: %v %+v", err, rec)
	}
}

const minimal = `spool: {dir: /data/spool}
tables:
  t: {key: k, columns: {k: text}}
`

func TestDefaults(t *testing.T) {
	cfg, err := parse([]byte(minimal), "", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	tests := []struct {
		name      string
		got, want any
	}{
		{"state_dir", cfg.Spool.StateDir, "/data/spool/.ingest"},
		{"retention", cfg.Spool.Retention, time.Duration(0)},
		{"cache_bytes", cfg.Spool.CacheBytes, ByteSize(32 << 20)},
		{"loader cache", LoaderConfig(cfg, nil, nil, nil).CacheBytes, 32 << 20},
		{"streams", len(cfg.Streams), 0},
		{"max_records", cfg.Batch.MaxRecords, 2000},
		{"max_bytes", cfg.Batch.MaxBytes, ByteSize(4 << 20)},
		{"linger", cfg.Batch.Linger, 20 * time.Millisecond},
		{"metrics", cfg.Metrics.Listen, "127.0.0.1:9464"},
		{"brokers", cfg.Kafka.Brokers, ""},
		{"db url", cfg.DB.URL, ""},
		{"consume group", cfg.Consume.Group, ""}, // resolved by ingest consume from db.url
		{"topic", cfg.Tables["t"].Topic, "t"},
		{"db_table", cfg.Tables["t"].DBTable, "t"},
		{"db route", cfg.Tables["t"].DB.String(), "all"},
		{"kafka route", cfg.Tables["t"].Kafka.String(), "none"},
		{"discovered stream", cfg.StreamFor("web"), Stream{Name: "web", SealAfter: 10 * time.Second}},
		{"Default batch", d.Batch, cfg.Batch},
		{"Default metrics", d.Metrics, cfg.Metrics},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}

	cfg, err = parse([]byte(minimal+"streams: [{name: api}, {name: legacy, seal_after: 1m, pattern: '*.log'}]\n"), "", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Streams[0].SealAfter != 10*time.Second || cfg.Streams[1].SealAfter != time.Minute {
		t.Errorf("seal_after = %v, %v", cfg.Streams[0].SealAfter, cfg.Streams[1].SealAfter)
	}
	if got := cfg.StreamFor("legacy"); got.Pattern != "*.log" {
		t.Errorf("StreamFor(legacy) = %+v", got)
	}
}

func TestExplicitValues(t *testing.T) {
	cfg, err := parse([]byte(`
spool: {dir: ./spool/, state_dir: /state, retention: 24h}
batch: {max_records: 10, max_bytes: 512KiB, linger: 0s}
kafka:
  brokers: "k1:9092, k2:9092"
  properties: {compression.type: zstd, linger.ms: 5, enable.idempotence: true}
db: {url: "postgres://localhost/ingest"}
metrics: {listen: ":9000"}
consume: {group: ingest-replica}
tables:
  t:
    key: k
    topic: events.v1
    db_table: ingest.events
    unknown_fields: reject
    db_storage: {toast_tuple_target: 8160, fillfactor: 90}
    columns: {k: bigint}
    db: none
    kafka: {percent: 100, exclude: [13]}
`), "", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Spool.Dir != "spool" || cfg.Spool.StateDir != "/state" || cfg.Spool.Retention != 24*time.Hour {
		t.Errorf("spool = %+v", cfg.Spool)
	}
	if cfg.Batch != (Batch{10, 512 << 10, 0}) {
		t.Errorf("batch = %+v", cfg.Batch)
	}
	if p := cfg.Kafka.Properties; p["linger.ms"] != "5" || p["enable.idempotence"] != "true" || p["compression.type"] != "zstd" {
		t.Errorf("properties = %v", p)
	}
	tb := cfg.Tables["t"]
	if tb.Topic != "events.v1" || tb.DBTable != "ingest.events" || tb.DB.String() != "none" || tb.Kafka.Match("13") || !tb.Kafka.Match("14") {
		t.Errorf("table = %+v", tb)
	}
	if st := tb.DBStorage; len(st) != 2 || st["toast_tuple_target"] != "8160" || st["fillfactor"] != "90" {
		t.Errorf("db_storage = %v", st)
	}
	if !cfg.KafkaEnabled() || !cfg.DBEnabled() {
		t.Error("sinks should be on")
	}
	if cfg.Consume.Group != "ingest-replica" {
		t.Errorf("consume.group = %q", cfg.Consume.Group)
	}
}

func TestEnvFallback(t *testing.T) {
	tests := []struct {
		name, yaml, ingest, database, want string
	}{
		{"neither", minimal, "", "", ""},
		{"INGEST_DB_URL", minimal, "postgres://a", "postgres://b", "postgres://a"},
		{"DATABASE_URL", minimal, "", "postgres://b", "postgres://b"},
		{"config wins", minimal + "db: {url: 'postgres://c'}\n", "postgres://a", "postgres://b", "postgres://c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("INGEST_DB_URL", tt.ingest)
			t.Setenv("DATABASE_URL", tt.database)
			cfg, err := Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.DB.URL != tt.want {
				t.Errorf("db.url = %q, want %q", cfg.DB.URL, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"empty document", "", "config is empty"},
		{"comments only", "# nothing\n", "config is empty"},
		{"yaml syntax", "spool: {dir: /x\n", "line 1: did not find expected ',' or '}'"},
		{"not a mapping", "- a\n", "must be a mapping"},
		{"unknown top-level key", minimal + "sinks: {}\n", "line 4: sinks: unknown key"},
		{"unknown key with suggestion", "spool: {dri: /x}\n" + minimal[len("spool: {dir: /data/spool}\n"):], `line 1: spool.dri: unknown key (did you mean "dir"?)`},
		{"unknown table key", minimal + "  u: {key: k, columns: {k: text}, topik: x}\n", `line 4: tables.u.topik: unknown key (did you mean "topic"?)`},
		{"unknown stream key", minimal + "streams:\n  - name: a\n    patern: x\n", `line 6: streams[0].patern: unknown key (did you mean "pattern"?)`},
		{"unknown selector key", minimal + "  u: {key: k, columns: {k: text}, kafka: {percnt: 5}}\n", `line 4: tables.u.kafka.percnt: unknown key (did you mean "percent"?)`},
		{"duplicate key", minimal + "batch: {linger: 1s, linger: 2s}\n", "line 4: batch.linger: duplicate key (first at line 4)"},
		{"duplicate map key", minimal + "kafka:\n  properties:\n    acks: all\n    acks: '1'\n", "line 7: kafka.properties.acks: duplicate key (first at line 6)"},
		{"map key not a scalar", minimal + "kafka: {properties: {[acks]: all}}\n", "line 4: kafka.properties: keys must be scalars"},
		{"wrong scalar type", minimal + "batch:\n  max_records: lots\n", `line 5: batch.max_records: must be an integer, got "lots"`},
		{"int duration", minimal + "batch:\n  linger: 20\n", `line 5: batch.linger: must be a duration such as "20ms" or "10s", got "20"`},
		{"list for string", "spool: {dir: [a]}\n" + minimal[len("spool: {dir: /data/spool}\n"):], "line 1: spool.dir: must be a string"},
		{"bad byte size", minimal + "batch: {max_bytes: 4 megs}\n", `line 4: batch.max_bytes: must be a size such as 4MiB, 512KiB or 1048576, got "4 megs"`},
		{"zero byte size", minimal + "batch: {max_bytes: 0}\n", "line 4: batch.max_bytes: must be positive, got 0"},
		{"zero cache", "spool: {dir: /data/spool, cache_bytes: 0}\ntables:\n  t: {key: k, columns: {k: text}}\n", "line 1: spool.cache_bytes: must be positive, got 0"},
		{"bad cache size", "spool: {dir: /data/spool, cache_bytes: lots}\ntables:\n  t: {key: k, columns: {k: text}}\n", `line 1: spool.cache_bytes: must be a size such as 4MiB, 512KiB or 1048576, got "lots"`},
		{"missing spool dir", "tables: {t: {key: k, columns: {k: text}}}\n", "spool.dir: is required"},
		{"negative retention", "spool: {dir: /x, retention: -1s}\n" + minimal[len("spool: {dir: /data/spool}\n"):], "spool.retention: must not be negative"},
		{"stream without name", minimal + "streams: [{pattern: '*.log'}]\n", "line 4: streams[0].name: is required"},
		{"stream name with slash", minimal + "streams: [{name: a/b}]\n", `streams[0].name: must be a plain directory name not starting with '.', got "a/b"`},
		{"stream name hidden", minimal + "streams: [{name: .ingest}]\n", `streams[0].name: must be a plain directory name`},
		{"duplicate stream", minimal + "streams: [{name: a}, {name: a}]\n", `streams[1].name: stream "a" is already defined at streams[0]`},
		{"bad pattern", minimal + "streams: [{name: a, pattern: '[x'}]\n", `streams[0].pattern: must be a file name glob`},
		{"unknown default table", minimal + "streams: [{name: a, default_table: nope}]\n", `streams[0].default_table: table "nope" is not defined under tables`},
		{"zero seal_after", minimal + "streams: [{name: a, seal_after: 0s}]\n", "streams[0].seal_after: must be positive, got 0s"},
		{"zero max_records", minimal + "batch: {max_records: 0}\n", "batch.max_records: must be positive, got 0"},
		{"negative linger", minimal + "batch: {linger: -5ms}\n", "batch.linger: must not be negative, got -5ms"},
		{"bad brokers", minimal + "kafka: {brokers: 'k1:9092,,k2'}\n", `kafka.brokers: must be "", "embedded" or a comma-separated host:port list`},
		{"bootstrap in properties", minimal + "kafka: {properties: {bootstrap.servers: x:1}}\n", "line 4: kafka.properties.bootstrap.servers: set kafka.brokers instead"},
		{"bad listen", minimal + "metrics: {listen: localhost}\n", `metrics.listen: must be host:port, got "localhost"`},
		{"blank-padded group", minimal + "consume: {group: ' replica'}\n", `line 4: consume.group: must not start or end with a blank or hold control characters, got " replica"`},
		{"unknown consume key", minimal + "consume: {grup: x}\n", `line 4: consume.grup: unknown key (did you mean "group"?)`},
		{"no tables", "spool: {dir: /x}\n", "tables: at least one table is required"},
		{"empty table", minimal + "  u:\n", "line 4: tables.u: table definition is empty"},
		{"table key not a column", minimal + "  u:\n    key: project_id\n    columns: {account: bigint}\n", `line 5: tables.u.key: "project_id" is not in columns`},
		{"table bad type", minimal + "  u:\n    key: k\n    columns:\n      k: text\n      n: blob\n", `line 8: tables.u.columns.n: unsupported type "blob"`},
		{"table bad topic", minimal + "  u: {key: k, topic: 'a b', columns: {k: text}}\n", `tables.u.topic: "a b" has character ' '`},
		{"percent too high", minimal + "  u:\n    key: k\n    columns: {k: text}\n    kafka: {percent: 140}\n", "line 7: tables.u.kafka.percent: must be between 0 and 100, got 140"},
		{"percent negative", minimal + "  u: {key: k, columns: {k: text}, db: {percent: -1}}\n", "tables.u.db.percent: must be between 0 and 100, got -1"},
		{"percent not a number", minimal + "  u: {key: k, columns: {k: text}, db: {percent: half}}\n", `tables.u.db.percent: must be a number between 0 and 100, got "half"`},
		{"percent too precise", minimal + "  u: {key: k, columns: {k: text}, db: {percent: 0.125}}\n", "tables.u.db.percent: has more than two decimals"},
		{"bad selector word", minimal + "  u: {key: k, columns: {k: text}, db: some}\n", `tables.u.db: must be all, none or a mapping with percent, accounts, exclude; got "some"`},
		{"selector list", minimal + "  u: {key: k, columns: {k: text}, db: [1]}\n", "tables.u.db: must be all, none or a mapping"},
		{"accounts not a list", minimal + "  u: {key: k, columns: {k: text}, db: {accounts: 5}}\n", "tables.u.db.accounts: must be a list of account keys"},
		{"float account", minimal + "  u: {key: k, columns: {k: text}, db: {accounts: [1.5]}}\n", `tables.u.db.accounts[0]: must be an integer or a string, got float "1.5"`},
		{"empty account", minimal + "  u: {key: k, columns: {k: text}, kafka: {exclude: ['']}}\n", "tables.u.kafka.exclude[0]: account key must not be empty"},
		{"huge account", minimal + "  u: {key: k, columns: {k: text}, kafka: {accounts: [99999999999999999999]}}\n", "tables.u.kafka.accounts[0]: integer 99999999999999999999 does not fit in 64 bits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse([]byte(tt.yaml), "", noEnv)
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("no *config.Error in %v", err)
			}
		})
	}
}

func TestParseReportsEveryError(t *testing.T) {
	_, err := parse([]byte(`spool: {dir: /x}
batch: {max_records: 0, linger: -1s}
tables:
  t: {key: k, columns: {k: text}, kafka: {percent: 101}}
`), "", noEnv)
	want := "line 2: batch.max_records: must be positive, got 0\n" +
		"line 2: batch.linger: must not be negative, got -1s"
	// The selector error is found while walking, before validation, so it
	// is reported alone: a config with type errors is not validated further.
	if err == nil || !strings.Contains(err.Error(), "line 4: tables.t.kafka.percent") {
		t.Fatalf("err = %v", err)
	}
	_, err = parse([]byte(`spool: {dir: /x}
batch: {max_records: 0, linger: -1s}
tables:
  t: {key: k, columns: {k: text}}
`), "", noEnv)
	if err == nil || err.Error() != want {
		t.Fatalf("err:\n%v\nwant:\n%s", err, want)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ingest.yaml")
	if err := os.WriteFile(path, []byte(minimal+"batch: {max_records: -1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || err.Error() != path+":4: batch.max_records: must be positive, got -1" {
		t.Fatalf("err = %v", err)
	}
	var ce *Error
	if !errors.As(err, &ce) || ce.File != path || ce.Line != 4 || ce.Path != "batch.max_records" {
		t.Errorf("Error = %+v", ce)
	}

	if err := os.WriteFile(path, []byte(minimal), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err := Load(path); err != nil || cfg.Spool.Dir != "/data/spool" {
		t.Fatalf("Load = %+v, %v", cfg, err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestEmptyValuesMeanDefault: "key:" with no value is the same as leaving
// the key out, not a zero value.
func TestEmptyValuesMeanDefault(t *testing.T) {
	cfg, err := parse([]byte(`spool:
  dir: /x
  state_dir:
streams:
  - name: a
    seal_after:
batch:
  linger:
tables:
  t:
    key: k
    columns: {k: text}
    db:
    kafka:
`), "", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Spool.StateDir != "/x/.ingest" || cfg.Streams[0].SealAfter != DefaultSealAfter || cfg.Batch.Linger != DefaultLinger {
		t.Errorf("defaults not applied: %+v %+v %+v", cfg.Spool, cfg.Streams, cfg.Batch)
	}
	if tb := cfg.Tables["t"]; tb.DB.String() != "all" || tb.Kafka.String() != "none" {
		t.Errorf("routes db=%s kafka=%s", tb.DB, tb.Kafka)
	}
}

func TestYAMLAnchors(t *testing.T) {
	cfg, err := parse([]byte(`spool: {dir: /x}
tables:
  a: &base {key: k, columns: {k: text}, kafka: {percent: 10}}
  b: *base
`), "", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Tables["b"].Key != "k" || cfg.Tables["b"].Name != "b" || cfg.Tables["b"].Kafka.Percent != 10 {
		t.Errorf("b = %+v", cfg.Tables["b"])
	}
}
