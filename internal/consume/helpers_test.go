package consume_test

import (
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/dualwrite/ingest/dbsink"
	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/internal/pgserver"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/kafkasink"
)

var binary string

// TestMain builds the ingest binary that the kill tests run as a child
// process (without -race: the kill tests exercise crash recovery, and
// the in-process tests run the same code under the race detector), then
// runs the tests under testenv.Main: shared broker stopped, goleak.
func TestMain(m *testing.M) {
	binary = testenv.BuildIngest("../../cmd/ingest")
	testenv.Main(m, true)
}

// env is what a test consumes from and loads into: the shared broker with
// two topics of the test's own (items: a table with an id column; events:
// one without) and their dead-letter topics, a throwaway PostgreSQL with
// the tables migrated, and a config file.
type env struct {
	kb                    *kafkaserver.Cluster
	pg                    *pgserver.Server
	items, events         string // topics
	cfgPath               string
	cfg                   *config.Config
	dir                   string
	itemsPart, eventsPart int
}

// tablesTemplate is the tests' two tables, on the items and events topics.
const tablesTemplate = `  items:
    key: account
    id: id
    time: ts
    topic: %q
    columns: {account: bigint, id: bigint, ts: bigint, body: text}
  events:
    key: account
    topic: %q
    columns: {account: bigint, seq: bigint, body: text}
`

func newEnv(t *testing.T, partitions, maxRecords int) *env {
	t.Helper()
	e := &env{kb: testenv.Broker(t), pg: testenv.Postgres(t), dir: t.TempDir(), itemsPart: partitions, eventsPart: partitions}
	e.items = testenv.Topic(t, e.kb, kafkaserver.TopicSpec{Partitions: partitions})
	e.events = testenv.Topic(t, e.kb, kafkaserver.TopicSpec{Partitions: partitions})
	ctx := testenv.Context(t, time.Minute)
	for _, topic := range []string{e.items, e.events} {
		if err := e.kb.CreateTopic(ctx, topic+".dlq", kafkaserver.TopicSpec{Partitions: 1}); err != nil {
			t.Fatal(err)
		}
	}
	e.cfg, e.cfgPath = loadertest.LoadConfig(t, loadertest.ConfigYAML(e.dir, e.kb.Bootstrap(), e.pg.URL(), maxRecords, fmt.Sprintf(tablesTemplate, e.items, e.events)))
	sch, err := e.cfg.Schema()
	if err != nil {
		t.Fatal(err)
	}
	db, err := dbsink.New(ctx, dbsink.Config{URL: e.cfg.DB.URL, Schema: sch})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return e
}

// producer produces messages shaped as kafkasink produces them: key the
// account, value the row JSON, timestamp the row's time, headers table,
// record id and source.
type producer struct {
	t *testing.T
	p *kafka.Producer
}

func newProducer(t *testing.T, bootstrap string) *producer {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": true,
		"partitioner": "murmur2_random", "linger.ms": 5, "go.logs.channel.enable": false,
	})
	if err != nil {
		t.Fatal(err)
	}
	pr := &producer{t: t, p: p}
	t.Cleanup(func() { p.Close() })
	return pr
}

// msg is one message to produce.
type msg struct {
	topic, table string
	partition    int32 // kafka.PartitionAny for the key's partition
	account      int64
	value        string
	recordID     string
	ts           time.Time
}

// item is a row of table items.
func item(topic string, account, id int64, ts time.Time) msg {
	return msg{topic: topic, table: "items", partition: kafka.PartitionAny, account: account, recordID: strconv.FormatInt(id, 10), ts: ts,
		value: fmt.Sprintf(`{"account":%d,"id":%d,"ts":%d,"body":"item %d"}`, account, id, ts.UnixMilli(), id)}
}

// items is the rows of table items with ids from to to, in order, each
// of account acct(id), all at ts.
func items(topic string, from, to int64, acct func(id int64) int64, ts time.Time) []msg {
	var ms []msg
	for id := from; id <= to; id++ {
		ms = append(ms, item(topic, acct(id), id, ts))
	}
	return ms
}

// event is a row of table events (no id column).
func event(topic string, account, seq int64) msg {
	return msg{topic: topic, table: "events", partition: kafka.PartitionAny, account: account, recordID: fmt.Sprintf("s/f/%d", seq),
		value: fmt.Sprintf(`{"account":%d,"seq":%d,"body":"event %d"}`, account, seq, seq)}
}

// send produces ms and waits until every one is acknowledged, returning
// their positions; it fails the test on an error.
// pairs returns a function giving, for ids from..to, an item and an event
// per id (account id%13, items stamped ts), for tests that load both topics.
func (e *env) pairs(ts time.Time) func(from, to int64) []msg {
	return func(from, to int64) []msg {
		var ms []msg
		for i := from; i <= to; i++ {
			ms = append(ms, item(e.items, i%13, i, ts), event(e.events, i%13, i))
		}
		return ms
	}
}

func (pr *producer) send(ms ...msg) []kafka.TopicPartition {
	pr.t.Helper()
	out, err := pr.trySend(ms...)
	if err != nil {
		pr.t.Fatal(err)
	}
	return out
}

// trySend is send for goroutines other than the test's.
func (pr *producer) trySend(ms ...msg) ([]kafka.TopicPartition, error) {
	report := make(chan kafka.Event, len(ms))
	for _, m := range ms {
		topic := m.topic
		km := &kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: m.partition},
			Key:            []byte(strconv.FormatInt(m.account, 10)),
			Value:          []byte(m.value),
			Timestamp:      m.ts,
			Headers: []kafka.Header{
				{Key: kafkasink.HeaderTable, Value: []byte(m.table)},
				{Key: kafkasink.HeaderRecordID, Value: []byte(m.recordID)},
				{Key: kafkasink.HeaderSource, Value: []byte("test/f/0")},
			},
		}
		for {
			err := pr.p.Produce(km, report)
			if err == nil {
				break
			}
			var ke kafka.Error
			if !errors.As(err, &ke) || ke.Code() != kafka.ErrQueueFull {
				return nil, fmt.Errorf("produce: %w", err)
			}
			pr.p.Flush(100)
		}
	}
	out := make([]kafka.TopicPartition, 0, len(ms))
	deadline := time.After(2 * time.Minute)
	for range ms {
		select {
		case ev := <-report:
			m := ev.(*kafka.Message)
			if m.TopicPartition.Error != nil {
				return nil, fmt.Errorf("delivery: %w", m.TopicPartition.Error)
			}
			out = append(out, m.TopicPartition)
		case <-deadline:
			return nil, errors.New("delivery reports did not come within 2 minutes")
		}
	}
	return out, nil
}

// queryInt runs a query returning one int64 on a connection of its own.
func queryInt(t *testing.T, pg *pgserver.Server, q string, args ...any) int64 {
	t.Helper()
	return loadertest.QueryIntURL(t, pg.URL(), q, args...)
}

// tryInt is queryInt that reports failure instead of failing the test
// (PostgreSQL may be down).
func tryInt(pg *pgserver.Server, q string) (int64, error) { return loadertest.TryQueryInt(pg.URL(), q) }

// checkExactlyOnce asserts that items holds ids 1..nItems once each and
// events seqs 1..nEvents once each (events has no id column: nothing but
// the consumer's offsets keeps a seq from being loaded twice).
func checkExactlyOnce(t *testing.T, pg *pgserver.Server, nItems, nEvents int64) {
	t.Helper()
	for _, c := range []struct {
		table, col string
		n          int64
	}{{"items", "id", nItems}, {"events", "seq", nEvents}} {
		rows := queryInt(t, pg, "SELECT count(*) FROM "+c.table)
		distinct := queryInt(t, pg, "SELECT count(DISTINCT "+c.col+") FROM "+c.table)
		inRange := queryInt(t, pg, fmt.Sprintf("SELECT count(DISTINCT %s) FROM %s WHERE %s BETWEEN 1 AND %d", c.col, c.table, c.col, c.n))
		if rows != c.n || distinct != c.n || inRange != c.n {
			dups := queryInt(t, pg, fmt.Sprintf("SELECT count(*) FROM (SELECT %s FROM %s GROUP BY 1 HAVING count(*) > 1) d", c.col, c.table))
			t.Errorf("%s: %d rows, %d distinct %s (%d of 1..%d, %d repeated), want each of 1..%d exactly once",
				c.table, rows, distinct, c.col, inRange, c.n, dups, c.n)
		}
	}
}

// child is an `ingest consume` process.
type child struct{ *testenv.Process }

// startConsume starts the binary's consume command with a short session
// timeout, so that the group notices a killed member in seconds.
func startConsume(t *testing.T, e *env, args ...string) *child {
	t.Helper()
	all := append([]string{"consume", "--config", e.cfgPath, "--consumer-property", "session.timeout.ms=6000",
		"--consumer-property", "heartbeat.interval.ms=500"}, args...)
	return &child{testenv.StartProcess(t, binary, all...)}
}

// stop sends SIGTERM and waits for the exit status.
func (c *child) stop(t *testing.T) {
	t.Helper()
	if err := c.Stop(60 * time.Second); err != nil {
		t.Errorf("ingest consume: %v; log:\n%s", err, testenv.Tail(c.Log.String(), 30))
	}
}
