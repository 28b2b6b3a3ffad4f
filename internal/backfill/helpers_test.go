package backfill_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/dbtest"
	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/internal/pgserver"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/jackc/pgx/v5"
)

// env is a throwaway PostgreSQL (tables migrated) and a fresh topic for
// raw_item on the test binary's real broker, plus a spool with archived
// files to backfill.
type env struct {
	pg    *pgserver.Server
	kc    *kafkaserver.Cluster
	topic string
	spool string
	lines []line // what the files hold, in file order
}

// line is one offline line of the fixture.
type line struct {
	Account string
	UUID    string
	Seq     int // per account, in file order
	Time    time.Time
}

// fixtureStart is the time field of the first line; line i is i seconds later.
var fixtureStart = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// tablesTmpl is table raw_item with its Kafka selector and topic.
const tablesTmpl = `  raw_item:
    key: project_id
    id: uuid
    time: timestamp
    columns: {project_id: bigint, timestamp: bigint, seq: bigint, body: text, uuid: uuid}
    db: all
    kafka: %s
    topic: %s
`

// partitions of the env's topic.
const partitions = 4

// newEnv starts PostgreSQL and makes the topic on the test binary's shared
// broker. Its retention is infinite: the fixture's rows, and so the
// messages' timestamps, are months old, and the broker's default 7 days
// would delete them at its next retention check, in the middle of a test.
func newEnv(tb testing.TB) *env {
	tb.Helper()
	return newEnvOn(tb, testenv.Broker(tb), "-1")
}

// newEnvOn is newEnv with the topic on kc, keeping messages for
// retentionMS (the topic's retention.ms).
func newEnvOn(tb testing.TB, kc *kafkaserver.Cluster, retentionMS string) *env {
	tb.Helper()
	e := &env{pg: testenv.Postgres(tb), kc: kc, spool: tb.TempDir()}
	e.topic = testenv.Topic(tb, kc, kafkaserver.TopicSpec{Partitions: partitions, Configs: map[string]string{"retention.ms": retentionMS}})
	dbtest.Migrate(tb, e.pg.URL(), e.config(tb, "none"))
	return e
}

// config returns the config with the given Kafka selector for raw_item.
func (e *env) config(tb testing.TB, kafkaSel string) *config.Config {
	tb.Helper()
	return e.configAt(tb, e.kc.Bootstrap(), e.pg.URL(), kafkaSel)
}

// configAt is config with the given brokers and database.
func (e *env) configAt(tb testing.TB, brokers, dbURL, kafkaSel string) *config.Config {
	tb.Helper()
	cfg, err := config.Parse([]byte(loadertest.ConfigYAML(e.spool, brokers, dbURL, 100, fmt.Sprintf(tablesTmpl, kafkaSel, e.topic))))
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// writeArchive writes n lines over files of perFile lines into
// <state_dir>/archive/api/ (where the live loader archives sealed files),
// accounts 1..accounts round robin, and returns that directory.
func (e *env) writeArchive(tb testing.TB, n, perFile, accounts int) string {
	tb.Helper()
	dir := loadertest.ArchiveDir(tb, e.spool, "api")
	seqs := map[string]int{}
	var b strings.Builder
	var file uint64
	flush := func() {
		if b.Len() == 0 {
			return
		}
		file++
		loadertest.WriteSealed(tb, dir, file, fixtureStart.Add(time.Duration(file)*time.Minute), b.String())
		b.Reset()
	}
	for i := range n {
		acct := strconv.Itoa(i%accounts + 1)
		l := line{Account: acct, UUID: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i*7919), Seq: seqs[acct], Time: fixtureStart.Add(time.Duration(i) * time.Second)}
		seqs[acct]++
		e.lines = append(e.lines, l)
		appendLine(&b, i%accounts+1, l)
		if (i+1)%perFile == 0 {
			flush()
		}
	}
	flush()
	return dir
}

// appendLine appends l as a raw_item line of account to b, the one shape
// of line every test here writes.
func appendLine(b *strings.Builder, account int, l line) {
	row, _ := json.Marshal(map[string]any{"project_id": account, "timestamp": l.Time.Unix(), "seq": l.Seq, "body": "b", "uuid": l.UUID})
	fmt.Fprintf(b, `{"table":"raw_item","row":%s}`+"\n", row)
}

// dbRows returns the uuids in raw_item, with their count including
// repeats (there are none: uuid is the primary key).
func (e *env) dbRows(tb testing.TB) map[string]bool {
	tb.Helper()
	rows, err := loadertest.Connect(tb, e.pg).Query(testenv.Context(tb, time.Minute), `SELECT uuid::text FROM raw_item`)
	if err != nil {
		tb.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]bool{}
	for _, id := range ids {
		out[id] = true
	}
	return out
}

// kafkaMessages reads every message of the topic.
func (e *env) kafkaMessages(tb testing.TB) []*kafka.Message {
	tb.Helper()
	msgs, err := e.kc.ReadTopic(testenv.Context(tb, time.Minute), e.topic)
	if err != nil {
		tb.Fatalf("read %s: %v", e.topic, err)
	}
	return msgs
}

// topicSize is the number of messages the topic holds (what retention
// has not deleted).
func (e *env) topicSize(tb testing.TB) int64 {
	tb.Helper()
	ctx := testenv.Context(tb, time.Minute)
	// A partition's leader answers metadata a moment before it serves
	// offsets (NOT_LEADER right after the topic is made): retry those.
	var lo, hi []int64
	var err error
	testenv.Eventually(tb, 30*time.Second, func() bool {
		lo, hi, err = e.kc.Watermarks(ctx, e.topic)
		var ke kafka.Error
		return err == nil || !errors.As(err, &ke) || !ke.IsRetriable()
	}, "watermarks of %s without a retriable error", e.topic)
	if err != nil {
		tb.Fatal(err)
	}
	var n int64
	for p := range hi {
		n += hi[p] - lo[p]
	}
	return n
}

// checkKafka checks that Kafka holds exactly the lines of the accounts
// in want (each at least once), keyed by account and in order per
// account, and returns the number of repeats.
func (e *env) checkKafka(tb testing.TB, want map[string]bool) int {
	tb.Helper()
	byUUID := map[string]line{}
	expected := 0
	for _, l := range e.lines {
		byUUID[l.UUID] = l
		if want[l.Account] {
			expected++
		}
	}
	seen := map[string]int{}
	last := map[string]int{} // account -> last seq of a first occurrence
	repeats := 0
	for _, m := range e.kafkaMessages(tb) {
		var row struct {
			UUID string `json:"uuid"`
		}
		if err := json.Unmarshal(m.Value, &row); err != nil {
			tb.Fatal(err)
		}
		l, ok := byUUID[row.UUID]
		if !ok || !want[l.Account] {
			tb.Fatalf("message for %s (account %s) should not be in Kafka", row.UUID, l.Account)
		}
		if string(m.Key) != l.Account {
			tb.Fatalf("message %s keyed %q, want account %s", row.UUID, m.Key, l.Account)
		}
		if !m.Timestamp.Equal(l.Time) {
			tb.Fatalf("message %s timestamp %v, want the row time %v", row.UUID, m.Timestamp, l.Time)
		}
		if seen[row.UUID]++; seen[row.UUID] > 1 {
			repeats++
			continue
		}
		if prev, ok := last[l.Account]; ok && l.Seq <= prev {
			tb.Fatalf("account %s: seq %d after %d: out of order", l.Account, l.Seq, prev)
		}
		last[l.Account] = l.Seq
	}
	if len(seen) != expected {
		tb.Fatalf("kafka has %d distinct records, want %d", len(seen), expected)
	}
	return repeats
}

func accountSet(accts ...string) map[string]bool {
	m := map[string]bool{}
	for _, a := range accts {
		m[a] = true
	}
	return m
}

func ctx(tb testing.TB) context.Context { return testenv.Context(tb, 2*time.Minute) }
