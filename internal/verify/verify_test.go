package verify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/dualwrite/ingest/internal/backfill"
	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/dbtest"
	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/internal/pgserver"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/internal/verify"
	"github.com/dualwrite/ingest/loader"
)

// env: a throwaway PostgreSQL, a Kafka topic and archived files whose
// lines the tests load with backfill, then compare with verify.
type env struct {
	pg        *pgserver.Server
	bootstrap string
	topic     string
	spool     string
	archive   string
	lines     []line
	body      string // of every row; default "x"
}

type line struct {
	account, uuid string
	time          time.Time
}

var t0 = time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)

// configTmpl is the tests' config: spool, batch settings, brokers,
// producer properties, database, raw_item's kafka selector and topic.
const configTmpl = `spool: {dir: %q}
%skafka: {brokers: %q, properties: {%s}}
db: {url: %q}
tables:
  raw_item:
    key: project_id
    id: uuid
    time: timestamp
    columns: {project_id: bigint, timestamp: bigint, body: text, uuid: uuid}
    db: all
    kafka: %s
    topic: %s
  no_id:
    key: project_id
    columns: {project_id: bigint}
`

// realTopic is a fresh 3-partition topic on the test binary's real
// broker. Its retention is infinite: the fixtures' rows (and so the
// messages' timestamps) are months old, and the broker's default 7 days
// would delete them at its next retention check, in the middle of a test.
func realTopic(tb testing.TB) (bootstrap, topic string) {
	tb.Helper()
	c := testenv.Broker(tb)
	return c.Bootstrap(), testenv.Topic(tb, c, kafkaserver.TopicSpec{Partitions: 3, Configs: map[string]string{"retention.ms": "-1"}})
}

// mockTopic is the topic raw_item on librdkafka's mock cluster, for the
// one thing only the mock has: a broker without timestamp lookups.
func mockTopic(tb testing.TB) (bootstrap, topic string) {
	tb.Helper()
	kc := testenv.Kafka(tb, 1)
	if err := kc.CreateTopic("raw_item", 3); err != nil {
		tb.Fatal(err)
	}
	return kc.Bootstrap(), "raw_item"
}

// newEnv writes n lines for accounts 1..accounts (line i at t0+i s; every
// tenth uuid upper-case, as an API may write it) into archived files, on
// the real broker.
func newEnv(tb testing.TB, n, accounts int) *env {
	tb.Helper()
	return newEnvOn(tb, n, accounts, realTopic)
}

func newEnvOn(tb testing.TB, n, accounts int, kafkaTopic func(testing.TB) (string, string)) *env {
	tb.Helper()
	e := &env{pg: testenv.Postgres(tb), spool: tb.TempDir()}
	e.bootstrap, e.topic = kafkaTopic(tb)
	dbtest.Migrate(tb, e.pg.URL(), e.config(tb, "all"))
	e.archive = e.writeLines(tb, "api", t0, n, accounts, 0)
	return e
}

// writeLines writes n lines for accounts 1..accounts, line i at base+i s
// with the uuid of number first+i, into the archive directory of stream,
// and returns that directory.
func (e *env) writeLines(tb testing.TB, stream string, base time.Time, n, accounts, first int) string {
	tb.Helper()
	dir := loadertest.ArchiveDir(tb, e.spool, stream)
	var b strings.Builder
	for i := range n {
		k := first + i
		l := line{account: strconv.Itoa(i%accounts + 1), uuid: fmt.Sprintf("%08x-1111-4000-8000-%012x", k, k), time: base.Add(time.Duration(i) * time.Second)}
		e.lines = append(e.lines, l)
		written := l.uuid
		if i%10 == 0 {
			written = strings.ToUpper(written)
		}
		body := e.body
		if body == "" {
			body = "x"
		}
		fmt.Fprintf(&b, `{"table":"raw_item","row":{"project_id":%s,"timestamp":%d,"body":%q,"uuid":%q}}`+"\n", l.account, l.time.Unix(), body, written)
		if (i+1)%200 == 0 || i == n-1 {
			loadertest.WriteSealed(tb, dir, uint64(i/200+1), base, b.String())
			b.Reset()
		}
	}
	return dir
}

// config routes raw_item's accounts to Kafka by kafkaSel (all of them go
// to PostgreSQL), in batches of 100 lines.
func (e *env) config(tb testing.TB, kafkaSel string) *config.Config {
	tb.Helper()
	return e.configWith(tb, kafkaSel, "batch: {max_records: 100, linger: 5ms}\n", `batch.num.messages: "100"`)
}

// configWith is config with the given batch line (empty for the defaults)
// and Kafka producer properties.
func (e *env) configWith(tb testing.TB, kafkaSel, batch, props string) *config.Config {
	tb.Helper()
	cfg, err := config.Parse(fmt.Appendf(nil, configTmpl, e.spool, batch, e.bootstrap, props, e.dbURL(), kafkaSel, e.topic))
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// dbURL is the server's, or an address never dialled when there is none.
func (e *env) dbURL() string {
	if e.pg == nil {
		return "postgres://verify@127.0.0.1:1/none"
	}
	return e.pg.URL()
}

func (e *env) backfill(tb testing.TB, cfg *config.Config, o backfill.Options) {
	tb.Helper()
	if o.Paths == nil {
		o.Paths = []string{e.archive}
	}
	if _, err := backfill.Run(testenv.Context(tb, time.Minute), cfg, o); err != nil {
		tb.Fatalf("backfill %+v: %v", o, err)
	}
}

// exec runs a statement on the test's database and returns the rows it
// affected.
func (e *env) exec(tb testing.TB, sql string, args ...any) int64 {
	tb.Helper()
	return loadertest.Exec(tb, loadertest.Connect(tb, e.pg), sql, args...)
}

func run(tb testing.TB, cfg *config.Config, o verify.Options) *verify.Report {
	tb.Helper()
	if o.Table == "" {
		o.Table = "raw_item"
	}
	rep, err := verify.Run(testenv.Context(tb, time.Minute), cfg, o)
	if err != nil {
		tb.Fatal(err)
	}
	return rep
}

func account(tb testing.TB, rep *verify.Report, a string) verify.Account {
	tb.Helper()
	for _, x := range rep.Accounts {
		if x.Account == a {
			return x
		}
	}
	tb.Fatalf("account %s not in the report", a)
	return verify.Account{}
}

func (e *env) uuidsOf(acct string, pick func(i int) bool) []string {
	var out []string
	n := 0
	for _, l := range e.lines {
		if l.account != acct {
			continue
		}
		if pick(n) {
			out = append(out, l.uuid)
		}
		n++
	}
	slices.Sort(out)
	return out
}

// Agreeing data exits OK; rows deleted from PostgreSQL name exactly their
// accounts and ids; a window leaving the deleted rows out agrees again.
// Real broker: the windows are found by the broker's timestamp lookup.
func TestVerifyAgreesThenFindsDeletedRows(t *testing.T) {
	e := newEnv(t, 1000, 8)
	cfg := e.config(t, "{accounts: [1, 2, 3, 4, 5]}")
	e.backfill(t, cfg, backfill.Options{})

	rep := run(t, cfg, verify.Options{})
	if !rep.OK || rep.Checked != 5 || len(rep.Accounts) != 8 || len(rep.Mismatched) != 0 || rep.Messages != 625 || rep.Undecodable != 0 {
		t.Fatalf("agreeing data: %+v", rep)
	}
	a1 := account(t, rep, "1")
	if !a1.Checked || !a1.Agree || a1.DB.Count != 125 || a1.DB != a1.Kafka {
		t.Fatalf("account 1: %+v", a1)
	}
	if a7 := account(t, rep, "7"); a7.Checked || a7.RoutedKafka || a7.DB.Count != 125 || a7.Kafka.Count != 0 {
		t.Fatalf("account 7 (db only): %+v", a7)
	}

	gone2 := e.uuidsOf("2", func(i int) bool { return i == 3 || i == 50 || i == 124 })
	gone4 := e.uuidsOf("4", func(i int) bool { return i == 0 })
	gone7 := e.uuidsOf("7", func(i int) bool { return i == 9 }) // not checked
	if n := e.exec(t, `DELETE FROM raw_item WHERE uuid::text = ANY($1)`, slices.Concat(gone2, gone4, gone7)); n != 5 {
		t.Fatalf("deleted %d rows", n)
	}
	rep = run(t, cfg, verify.Options{})
	if rep.OK || !slices.Equal(rep.Mismatched, []string{"2", "4"}) {
		t.Fatalf("after deleting rows: ok=%v mismatched=%v", rep.OK, rep.Mismatched)
	}
	a2 := account(t, rep, "2")
	if !slices.Equal(a2.MissingInDB, gone2) || len(a2.MissingInKafka) != 0 || a2.DB.Count != 122 || a2.Kafka.Count != 125 || a2.Duplicates != 0 {
		t.Fatalf("account 2: %+v, want missing in db %v", a2, gone2)
	}
	if a4 := account(t, rep, "4"); !slices.Equal(a4.MissingInDB, gone4) {
		t.Fatalf("account 4: %+v", a4)
	}
	var out bytes.Buffer
	rep.WriteText(&out)
	for _, want := range []string{"MISMATCH: 2 of 5 account(s) routed to both sinks disagree: 2, 4", "account 2: 3 missing in postgres: " + strings.Join(gone2, ", "), "db+kafka"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}

	// The deleted rows of account 2 are at t0+(8*3+1)s, +(8*50+1)s and
	// +(8*124+1)s; account 4's at t0+3s. A window after them all but the
	// last agrees, and so does one without any of them.
	w := loader.Window{Since: t0.Add(4 * time.Second), Until: t0.Add(401 * time.Second)}
	rep = run(t, cfg, verify.Options{Window: w})
	if rep.OK || !slices.Equal(rep.Mismatched, []string{"2"}) || len(account(t, rep, "2").MissingInDB) != 1 {
		t.Fatalf("window %v: %+v", w, rep)
	}
	w = loader.Window{Since: t0.Add(402 * time.Second), Until: t0.Add(900 * time.Second)}
	rep = run(t, cfg, verify.Options{Window: w})
	if !rep.OK || account(t, rep, "1").DB.Count != 62 {
		t.Fatalf("window %v: ok=%v %+v", w, rep.OK, account(t, rep, "1"))
	}
	// Routed to both: only account 99, which has no record. Both sides hold
	// records, but no account was compared: not a pass, unless allowed.
	none := e.config(t, "{accounts: [99]}")
	rep, err := verify.Run(testenv.Context(t, time.Minute), none, verify.Options{Table: "raw_item"})
	if !errors.Is(err, verify.ErrNothingToCompare) || rep == nil || rep.OK || rep.Empty || rep.Checked != 0 || !strings.Contains(err.Error(), "routed to both sinks") {
		t.Fatalf("no account routed to both: err %v, report %+v", err, rep)
	}
	out.Reset()
	rep.WriteText(&out)
	if !strings.Contains(out.String(), "NOTHING TO COMPARE: no account in the window is routed to both sinks") {
		t.Errorf("report:\n%s", out.String())
	}
	if rep, err = verify.Run(testenv.Context(t, time.Minute), none, verify.Options{Table: "raw_item", AllowEmpty: true}); err != nil || !rep.OK {
		t.Fatalf("no account routed to both, allowed: err %v, report %+v", err, rep)
	}
}

// Messages missing from Kafka (an account whose lines were never produced,
// and the second half of another's) are named; repeats are duplicates, not
// mismatches. Real broker: the claim is about what a topic really holds
// after at-least-once delivery, read by timestamp lookup.
func TestVerifyMissingMessagesAndDuplicates(t *testing.T) {
	e := newEnv(t, 600, 3)
	cfg := e.config(t, "all")
	e.backfill(t, cfg, backfill.Options{Sinks: []string{"db"}})
	half := t0.Add(300 * time.Second)
	e.backfill(t, cfg, backfill.Options{Sinks: []string{"kafka"}, Accounts: []string{"1"}, Window: loader.Window{Until: half}})
	e.backfill(t, cfg, backfill.Options{Sinks: []string{"kafka"}, Accounts: []string{"2"}})
	e.backfill(t, cfg, backfill.Options{Sinks: []string{"kafka"}, Accounts: []string{"2"}, Restart: true})

	rep := run(t, cfg, verify.Options{})
	if rep.OK || !slices.Equal(rep.Mismatched, []string{"1", "3"}) {
		t.Fatalf("ok=%v mismatched=%v", rep.OK, rep.Mismatched)
	}
	secondHalf := e.uuidsOf("1", func(i int) bool { return i >= 100 })
	if a1 := account(t, rep, "1"); !slices.Equal(a1.MissingInKafka, secondHalf) || len(a1.MissingInDB) != 0 {
		t.Fatalf("account 1: missing in kafka %d ids, want the %d of the second half", len(a1.MissingInKafka), len(secondHalf))
	}
	if a3 := account(t, rep, "3"); len(a3.MissingInKafka) != 200 || a3.Kafka.Count != 0 {
		t.Fatalf("account 3: %+v", a3)
	}
	a2 := account(t, rep, "2")
	if !a2.Agree || a2.Duplicates != 200 || a2.Kafka.Count != 200 || a2.Kafka != a2.DB {
		t.Fatalf("account 2 (sent twice): %+v", a2)
	}

	// The first half's window agrees for account 1.
	rep = run(t, cfg, verify.Options{Window: loader.Window{Until: half}})
	if !slices.Equal(rep.Mismatched, []string{"3"}) || rep.StartOffsets != verify.StartEarliest {
		t.Fatalf("until %v: %v %q", half, rep.Mismatched, rep.StartOffsets)
	}
	rep = run(t, cfg, verify.Options{Window: loader.Window{Since: half}})
	if !slices.Equal(rep.Mismatched, []string{"1", "3"}) || rep.StartOffsets != verify.StartByTimestamp {
		t.Fatalf("since %v: %v %q", half, rep.Mismatched, rep.StartOffsets)
	}
}

// A broker that does not look offsets up by timestamp is detected, and
// the partitions are read from their earliest offset, still exact.
// librdkafka's mock cluster: it is the broker without timestamp lookups
// (it answers every OffsetsForTimes with "end"); nothing here claims
// Kafka's behaviour.
func TestVerifyWithoutTimestampLookups(t *testing.T) {
	e := newEnvOn(t, 300, 3, mockTopic)
	cfg := e.config(t, "all")
	e.backfill(t, cfg, backfill.Options{SkipTopicCheck: true}) // the mock does not describe topic configs
	half := t0.Add(150 * time.Second)
	gone := e.uuidsOf("2", func(i int) bool { return i == 80 }) // at t0+(3*80+1)s, after half
	if n := e.exec(t, `DELETE FROM raw_item WHERE uuid::text = ANY($1)`, gone); n != 1 {
		t.Fatalf("deleted %d rows", n)
	}
	rep := run(t, cfg, verify.Options{Window: loader.Window{Since: half}})
	if rep.StartOffsets != verify.StartNoTimeLookups || rep.Messages != 300 || !slices.Equal(rep.Mismatched, []string{"2"}) ||
		!slices.Equal(account(t, rep, "2").MissingInDB, gone) || account(t, rep, "1").DB.Count != 50 {
		t.Fatalf("since %v: %+v", half, rep)
	}
}

// Messages of another table sharing the topic are left out; a value the
// schema refuses is keyed by its headers. Real broker: the foreign
// messages come from a plain producer, as another application's would.
func TestVerifyForeignMessages(t *testing.T) {
	e := newEnv(t, 30, 1)
	cfg := e.config(t, "all")
	e.backfill(t, cfg, backfill.Options{})
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": e.bootstrap})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	topic := e.topic
	for _, m := range []*kafka.Message{
		{Key: []byte("1"), Value: []byte(`{"project_id":1}`), Headers: []kafka.Header{{Key: "ingest.table", Value: []byte("other")}}},
		{Key: []byte("1"), Value: []byte(`not json`), Headers: []kafka.Header{{Key: "ingest.record_id", Value: []byte("0000000a-1111-4000-8000-00000000000a")}}},
		{Key: []byte("1"), Value: []byte(`not json`), Headers: []kafka.Header{{Key: "ingest.record_id", Value: []byte("ffffffff-1111-4000-8000-00000000000a")}}},
	} {
		m.TopicPartition = kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny}
		if err := p.Produce(m, nil); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		select {
		case ev := <-p.Events():
			if m, ok := ev.(*kafka.Message); !ok || m.TopicPartition.Error != nil {
				t.Fatalf("produce: %v", ev)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no delivery report")
		}
	}
	rep := run(t, cfg, verify.Options{})
	if rep.OtherTables != 1 || rep.Undecodable != 2 || rep.Messages != 33 {
		t.Fatalf("report %+v", rep)
	}
	a := account(t, rep, "1")
	if a.Duplicates != 1 || !slices.Equal(a.MissingInDB, []string{"ffffffff-1111-4000-8000-00000000000a"}) {
		t.Fatalf("account 1: %+v", a)
	}
}

// No Kafka and no PostgreSQL: these errors are found before verify
// connects to anything (the addresses in the config are never dialled).
func TestVerifyArgumentErrors(t *testing.T) {
	e := &env{bootstrap: "127.0.0.1:1", topic: "raw_item", spool: t.TempDir()}
	noKafka := e.config(t, "all")
	noKafka.Kafka.Brokers = ""
	noTime := e.config(t, "all")
	noTime.Tables["raw_item"].Time = ""
	oauth := e.config(t, "all")
	oauth.Kafka.Properties = map[string]string{"security.protocol": "SASL_SSL", "sasl.mechanism": "OAUTHBEARER"}
	for _, tc := range []struct {
		name string
		cfg  *config.Config
		o    verify.Options
		arg  string
	}{
		{"unknown table", e.config(t, "all"), verify.Options{Table: "nope"}, "--table"},
		{"no id", e.config(t, "all"), verify.Options{Table: "no_id"}, "tables.no_id.id"},
		{"no time", noTime, verify.Options{Table: "raw_item", Window: loader.Window{Since: t0}}, "--since/--until"},
		{"no kafka", noKafka, verify.Options{Table: "raw_item"}, "kafka.brokers"},
		{"oauthbearer without oidc", oauth, verify.Options{Table: "raw_item"}, "kafka.properties"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := verify.Run(context.Background(), tc.cfg, tc.o)
			var ae *verify.ArgError
			if !errors.As(err, &ae) || ae.Arg != tc.arg {
				t.Fatalf("err %v, want an ArgError for %s", err, tc.arg)
			}
		})
	}
}

// No services: the digest's arithmetic and the report's JSON shape.
func TestDigestIsOrderIndependentAndJSON(t *testing.T) {
	if verify.Digest("a")+verify.Digest("b") != verify.Digest("b")+verify.Digest("a") || verify.Digest("a") == verify.Digest("b") {
		t.Fatal("digest")
	}
	data, _ := json.Marshal(verify.Report{Mismatched: []string{}})
	if !strings.Contains(string(data), `"mismatched_accounts":[]`) {
		t.Fatalf("json %s", data)
	}
}
