package sinks_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/internal/sinks"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/kafkasink"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
)

func TestMain(m *testing.M) { testenv.Main(m, true) }

func parse(t *testing.T, kafka, dbURL, topic string) (*config.Config, *schema.Schema) {
	t.Helper()
	cfg, err := config.Parse(fmt.Appendf(nil, `spool: {dir: /nonexistent}
kafka: {brokers: %q}
db: {url: %q}
tables:
  ev: {key: account, id: id, topic: %q, columns: {account: bigint, id: text}, db: {accounts: [1]}, kafka: {accounts: [2]}}
`, kafka, dbURL, topic))
	if err != nil {
		t.Fatal(err)
	}
	sch, err := cfg.Schema()
	if err != nil {
		t.Fatal(err)
	}
	return cfg, sch
}

// No Kafka, no PostgreSQL: the table of in-flight defaults.
func TestMaxInFlightPerMode(t *testing.T) {
	for _, c := range []struct {
		mode sinks.Mode
		kind string
		want int
	}{
		{sinks.Live, config.SinkDB, 1}, {sinks.Live, config.SinkKafka, 4},
		{sinks.Backfill, config.SinkDB, 2}, {sinks.Backfill, config.SinkKafka, 8},
		{sinks.ReadOnly, config.SinkDB, 0}, {sinks.ReadOnly, config.SinkKafka, 0},
		{sinks.Live, "s3", 0},
	} {
		if got := sinks.MaxInFlight(c.mode, c.kind); got != c.want {
			t.Errorf("MaxInFlight(%v, %s) = %d, want %d", c.mode, c.kind, got, c.want)
		}
	}
}

// Real PostgreSQL (testenv.Postgres) and a real Kafka broker
// (testenv.Broker): Build opens both sinks of a config, PostgreSQL first
// whatever the order asked, names them, gives each the mode's batches in
// flight and the config's route, and wraps them; in Live mode Kafka is the
// background start.
func TestBuildBothSinksForEachMode(t *testing.T) {
	pg := testenv.Postgres(t)
	c := testenv.Broker(t)
	topic := testenv.Topic(t, c, kafkaserver.TopicSpec{Partitions: 1})
	cfg, sch := parse(t, c.Bootstrap(), pg.URL(), topic)
	ctx := testenv.Context(t, 2*time.Minute)
	ev := sch.Tables()[0]
	for _, mode := range []sinks.Mode{sinks.Live, sinks.Backfill, sinks.ReadOnly} {
		wrapped := map[string]bool{}
		set, err := sinks.Build(ctx, cfg, sch, sinks.Options{
			Mode: mode, Kinds: []string{config.SinkKafka, config.SinkDB},
			Name: func(kind string) string { return "job-" + kind },
			Wrap: func(kind string, s loader.Sink) loader.Sink { wrapped[kind] = true; return s },
		})
		if err != nil {
			t.Fatalf("mode %v: %v", mode, err)
		}
		if len(set.Specs) != 2 || set.DB == nil || set.Kafka == nil {
			set.Close()
			t.Fatalf("mode %v: %d specs, db %v, kafka %v", mode, len(set.Specs), set.DB, set.Kafka)
		}
		if (set.Lazy != nil) != (mode == sinks.Live) {
			t.Errorf("mode %v: Lazy set %t, want the background start in Live mode only", mode, set.Lazy != nil)
		}
		for i, kind := range []string{config.SinkDB, config.SinkKafka} {
			sp := set.Specs[i]
			if sp.Sink.Name() != "job-"+kind || set.Kinds["job-"+kind] != kind || !wrapped[kind] {
				t.Errorf("mode %v spec %d: name %q, kinds %v, wrapped %v", mode, i, sp.Sink.Name(), set.Kinds, wrapped)
			}
			if sp.MaxInFlight != sinks.MaxInFlight(mode, kind) {
				t.Errorf("mode %v %s: MaxInFlight %d", mode, kind, sp.MaxInFlight)
			}
			if mode == sinks.ReadOnly {
				if sp.Route != nil {
					t.Errorf("read-only %s has a route", kind)
				}
				continue
			}
			// db routes account 1 only, kafka account 2 only.
			want := map[string]string{config.SinkDB: "1", config.SinkKafka: "2"}[kind]
			if sp.Route == nil || !sp.Route(ev, want) || sp.Route(ev, "3") {
				t.Errorf("mode %v %s: route does not follow the config's selector", mode, kind)
			}
		}
		set.Close()
	}
}

// Real Kafka broker (testenv.Broker): a missing topic fails Build with the
// config key named and kafkasink's error reachable; a sink that is not
// enabled or not known is refused before anything is opened.
func TestBuildRefusesMissingTopicAndDisabledSinks(t *testing.T) {
	c := testenv.Broker(t)
	cfg, sch := parse(t, c.Bootstrap(), "", "sinks-test-no-such-topic")
	ctx := testenv.Context(t, time.Minute)
	_, err := sinks.Build(ctx, cfg, sch, sinks.Options{Mode: sinks.Live})
	var missing *kafkasink.MissingTopicError
	if !errors.As(err, &missing) || !strings.HasPrefix(err.Error(), "kafka sink (kafka.brokers): ") {
		t.Fatalf("Build with a missing topic: %v", err)
	}
	if _, err := sinks.Build(ctx, cfg, sch, sinks.Options{Kinds: []string{config.SinkDB}}); err == nil {
		t.Error("Build of db with db.url empty: no error")
	}
	if _, err := sinks.Build(ctx, cfg, sch, sinks.Options{Kinds: []string{"s3"}}); err == nil {
		t.Error("Build of an unknown kind: no error")
	}
}
