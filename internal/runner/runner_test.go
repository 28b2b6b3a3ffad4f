package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/dbtest"
	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/rotatefile"
)

// testTables is table ev, on the topic given, half its accounts but 7
// routed to Kafka.
const testTables = `  ev:
    key: account
    id: id
    topic: %q
    columns: {account: bigint, id: text}
    db: all
    kafka: {percent: 50, exclude: [7]}
`

// loadConfig writes the tests' config for a spool, Kafka bootstrap,
// PostgreSQL URL and the topic of table ev, with ev's Kafka selector
// replaced when kafkaRoute is set, and loads it. It returns the config and
// its path.
func loadConfig(t *testing.T, spool, brokers, dbURL, topic, kafkaRoute string) (*config.Config, string) {
	t.Helper()
	text := loadertest.ConfigYAML(spool, brokers, dbURL, 0, fmt.Sprintf(testTables, topic))
	if kafkaRoute != "" {
		text = strings.Replace(text, "{percent: 50, exclude: [7]}", kafkaRoute, 1)
	}
	return loadertest.LoadConfig(t, text)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// /metrics, /healthz and /readyz of a run loading both sinks. Kafka: the
// shared real broker (testenv.Broker) with a topic of this test: the
// metrics claim acks and lag of a real producer; nothing here stops Kafka.
func TestMetricsHealthAndReadiness(t *testing.T) {
	pg := testenv.Postgres(t)
	kc := testenv.Broker(t)
	topic := testenv.Topic(t, kc, kafkaserver.TopicSpec{Partitions: 2})
	spool := t.TempDir()
	cfg, path := loadConfig(t, spool, kc.Bootstrap(), pg.URL(), topic, "")
	ctx := testenv.Context(t, time.Minute)
	dbtest.Migrate(t, pg.URL(), cfg)

	w, err := rotatefile.Open(rotatefile.Options{Dir: spool, Stream: "api"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := w.Append(fmt.Appendf(nil, `{"table":"ev","row":{"account":%d,"id":"r%d"}}`, i, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Append([]byte(`{"table":"ev","row":{}}`)); err != nil { // a dead letter
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(runCtx, cfg, Options{ConfigPath: path, Started: func(a string) { addr <- a }})
	}()
	base := "http://" + <-addr
	if code, body := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz with both sinks up: %d %s", code, body)
	}
	testenv.Eventually(t, 20*time.Second, func() bool {
		_, body := get(t, base+"/metrics")
		return strings.Contains(body, `ingest_records_acked_total{sink="db",stream="api"} 20`)
	}, "db acks 20 records")
	var body string
	testenv.Eventually(t, 20*time.Second, func() bool {
		_, body = get(t, base+"/metrics")
		return strings.Contains(body, `ingest_lag_bytes{sink="kafka",stream="api"} 0`)
	}, "lag measured and zero")
	for _, want := range []string{
		`ingest_lines_read_total{sink="db",stream="api"} 21`,
		`ingest_lines_dead_lettered_total{reason="missing_key",sink="",stream="api"} 1`,
		`ingest_batch_latency_seconds_count{sink="kafka"}`,
		`ingest_lag_bytes{sink="kafka",stream="api"}`,
		`ingest_lag_seconds{sink="db",stream="api"}`,
		`ingest_route_percent{sink="kafka",table="ev"} 50`,
		`ingest_route_accounts{list="exclude",sink="kafka",table="ev"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
			for _, l := range strings.Split(body, "\n") {
				if strings.HasPrefix(l, strings.SplitN(want, "{", 2)[0]) {
					t.Log(l)
				}
			}
		}
	}

	// Readiness follows the database.
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "db") {
		t.Errorf("/readyz with PostgreSQL down: %d %q, want 503 naming db", code, body)
	}
	if code, body := get(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz with PostgreSQL down: %d %q, want 200: the process works", code, body)
	}
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// Kafka unreachable when `ingest run` starts: the database sink loads
// anyway, /readyz says not ready, and once the broker returns the Kafka
// sink starts by itself and catches up from its checkpoint. Then the
// broker goes down while the run goes on (#20): /readyz is 503 naming
// kafka within a few seconds, /healthz stays 200, the database keeps
// loading, and once the broker is back /readyz is 200 again and Kafka has
// the lines written meanwhile. While the Kafka sink has not started,
// ingest_lag_seconds{sink="kafka"} exists and grows (the lines wait for
// it), and it falls to 0 once the sink has caught up. Kafka: a real single-node cluster of this
// test's own (testenv.Cluster), because the test kills and restarts it; a
// closed port would not show the sink finding the broker again.
func TestKafkaDownAtStartAndWhileRunning(t *testing.T) {
	pg := testenv.Postgres(t)
	kc := testenv.Cluster(t, 1, nil)
	topic := testenv.Topic(t, kc, kafkaserver.TopicSpec{Partitions: 2})
	spool := t.TempDir()
	cfg, _ := loadConfig(t, spool, kc.Bootstrap(), pg.URL(), topic, "all")
	ctx := testenv.Context(t, 3*time.Minute)
	dbtest.Migrate(t, pg.URL(), cfg)
	const n = 200
	writeEvents(t, spool, n)

	if err := kc.Kill(1); err != nil {
		t.Fatal(err)
	}
	base, stop, done := startRun(t, cfg, time.Minute, "with Kafka down")
	testenv.Eventually(t, 30*time.Second, func() bool {
		_, body := get(t, base+"/metrics")
		return strings.Contains(body, fmt.Sprintf(`ingest_records_acked_total{sink="db",stream="api"} %d`, n))
	}, "the database loads while Kafka is down")
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "kafka") {
		t.Errorf("/readyz with Kafka down: %d %q, want 503 naming kafka", code, body)
	}
	const kafkaLag = `ingest_lag_seconds{sink="kafka",stream="api"}`
	var lag0 float64
	testenv.Eventually(t, 10*time.Second, func() bool {
		var ok bool
		lag0, ok = metricValue(t, base, kafkaLag)
		return ok && lag0 > 0
	}, "%s above 0 while the Kafka sink has not started", kafkaLag)
	testenv.Eventually(t, 10*time.Second, func() bool {
		lag, _ := metricValue(t, base, kafkaLag)
		return lag >= lag0+1
	}, "%s growing past %v while the Kafka sink has not started", kafkaLag, lag0)
	if err := kc.Restart(ctx, 1); err != nil {
		t.Fatal(err)
	}
	msgs, err := kc.Consume(ctx, topic, n)
	if err != nil || len(msgs) < n {
		t.Fatalf("kafka after the broker returned: %d of %d messages: %v", len(msgs), n, err)
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		lag, ok := metricValue(t, base, kafkaLag)
		return ok && lag == 0
	}, "%s back to 0 once the Kafka sink caught up", kafkaLag)
	testenv.Eventually(t, 30*time.Second, func() bool {
		code, _ := get(t, base+"/readyz")
		return code == 200
	}, "/readyz 200 after Kafka returned")

	// Down again, now that the sink runs: the producer retries in silence,
	// so only /readyz can tell.
	if err := kc.Kill(1); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	// A probe waits readyTimeout for a broker, and its result is reused
	// for kafkasink's probeEvery (1 s): ~3 s, more on a loaded machine.
	var body string
	testenv.Eventually(t, 8*time.Second, func() bool {
		var code int
		code, body = get(t, base+"/readyz")
		return code == http.StatusServiceUnavailable
	}, "/readyz 503 within 8 s of the broker going down")
	t.Logf("/readyz 503 %v after the kill: %q", time.Since(down).Round(10*time.Millisecond), body)
	if !strings.Contains(body, "kafka: not ready: ") || !strings.Contains(body, "db: ready") {
		t.Errorf("/readyz body %q: want a line saying kafka is not ready and why, and db ready", body)
	}
	if code, body := get(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz with Kafka down: %d %q, want 200: the process works", code, body)
	}
	writeEventsFrom(t, spool, n, n)
	testenv.Eventually(t, 30*time.Second, func() bool {
		_, body := get(t, base+"/metrics")
		return strings.Contains(body, fmt.Sprintf(`ingest_records_acked_total{sink="db",stream="api"} %d`, 2*n))
	}, "the database loads while Kafka is down")
	if code, _ := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz %d while Kafka is still down, want 503", code)
	}
	if err := kc.Restart(ctx, 1); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	// librdkafka reconnects with a backoff that has grown to its maximum
	// (reconnect.backoff.max.ms, 10 s, ±20 %) during the outage.
	var last string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last /readyz body: %q", last)
		}
	})
	testenv.Eventually(t, 30*time.Second, func() bool {
		var code int
		code, last = get(t, base+"/readyz")
		return code == 200
	}, "/readyz 200 within 30 s of the broker serving again")
	t.Logf("/readyz 200 %v after the broker served again", time.Since(back).Round(10*time.Millisecond))
	msgs, err = kc.Consume(ctx, topic, 2*n)
	if err != nil {
		t.Fatalf("kafka after the second outage: %d of %d messages: %v", len(msgs), 2*n, err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// metricValue reads one series (name{labels} as /metrics spells it) from
// the run's /metrics; ok is false when it is not there.
func metricValue(t *testing.T, base, series string) (v float64, ok bool) {
	t.Helper()
	_, body := get(t, base+"/metrics")
	for _, line := range strings.Split(body, "\n") {
		if rest, found := strings.CutPrefix(line, series+" "); found {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("/metrics: %q: %v", line, err)
			}
			return v, true
		}
	}
	return 0, false
}

// startRun starts Run in the background and returns the base URL of its
// metrics endpoint once it has started; it fails the test when Run returns
// first or has not started within limit (what names the situation). stop
// ends Run (also at cleanup); done yields Run's result.
func startRun(t *testing.T, cfg *config.Config, limit time.Duration, what string) (base string, stop context.CancelFunc, done <-chan error) {
	t.Helper()
	runCtx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	addr := make(chan string, 1)
	result := make(chan error, 1)
	go func() {
		result <- Run(runCtx, cfg, Options{Started: func(a string) { addr <- a }})
	}()
	select {
	case a := <-addr:
		return "http://" + a, stop, result
	case err := <-result:
		t.Fatalf("Run refused to start %s: %v", what, err)
	case <-time.After(limit):
		t.Fatalf("Run not started %v after the call %s", limit, what)
	}
	return "", stop, result
}

// The Kafka sink's start must not hold up the other sinks: with the brokers
// unreachable its topic check waits for a metadata timeout, and the
// database must have loaded everything well before that. Stopping Run
// while Kafka is still down stops the background attempts too, well
// within the loader's shutdown timeout. Kafka: none, a loopback port
// nothing listens on: the claim is about Run's start-up, and to a client
// a dead broker is exactly a refused connection.
func TestDBLoadsAtOnceWhileKafkaIsDown(t *testing.T) {
	pg := testenv.Postgres(t)
	spool := t.TempDir()
	cfg, _ := loadConfig(t, spool, deadAddr(t), pg.URL(), "ev", "all")
	dbtest.Migrate(t, pg.URL(), cfg)
	const n = 100
	writeEvents(t, spool, n)

	// Half kafkasink's 10 s metadata timeout, which the old start-up
	// waited for before any sink loaded.
	const quick = 5 * time.Second
	start := time.Now()
	base, stop, done := startRun(t, cfg, quick, "with Kafka down: the Kafka sink's start blocks the others")
	testenv.Eventually(t, quick-time.Since(start), func() bool {
		_, body := get(t, base+"/metrics")
		return strings.Contains(body, fmt.Sprintf(`ingest_records_acked_total{sink="db",stream="api"} %d`, n))
	}, "the database loads every line within %v of the start while Kafka is down", quick)

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5*time.Second + 10*time.Second): // kafkasink's attempt to start (5 s) may be under way
		t.Fatal("Run did not return after its context ended while Kafka was down")
	}
}

// deadAddr returns a loopback address that refused connections a moment
// ago: a Kafka broker that is down.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// Broker reachable but the topic absent: Run stops with a start-up error
// naming the topic, and the database sink has loaded nothing by then (the
// topics are checked before any sink loads). Kafka: the shared real broker,
// which, unlike librdkafka's mock, never creates a topic a client asks for.
func TestMissingTopicStopsRun(t *testing.T) {
	pg := testenv.Postgres(t)
	kc := testenv.Broker(t)
	topic := "missing-" + strings.ReplaceAll(t.Name(), "/", "_") // never created
	spool := t.TempDir()
	cfg, _ := loadConfig(t, spool, kc.Bootstrap(), pg.URL(), topic, "all")
	dbtest.Migrate(t, pg.URL(), cfg)
	writeEvents(t, spool, 100)
	ctx := testenv.Context(t, time.Minute)
	err := Run(ctx, cfg, Options{})
	var se *StartupError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), fmt.Sprintf("topic %q does not exist", topic)) {
		t.Fatalf("Run = %v, want a StartupError naming topic %s", err, topic)
	}
	if ctx.Err() != nil {
		t.Fatal("Run returned only when the test's context ended")
	}
	if rows := countRows(t, pg.URL()); rows != 0 {
		t.Errorf("PostgreSQL holds %d rows after a start refused for a missing topic, want 0", rows)
	}
	if exists, err := kc.TopicExists(ctx, topic); err != nil || exists {
		t.Errorf("topic %s exists=%v (err %v) after the check: the check must not create it", topic, exists, err)
	}
}

// countRows counts the rows of table ev.
func countRows(t *testing.T, url string) int {
	t.Helper()
	return int(loadertest.QueryIntURL(t, url, `SELECT count(*) FROM ev`))
}

// writeEvents appends n valid lines of table ev over 10 accounts to the
// stream "api" under spool, through the writer.
func writeEvents(t *testing.T, spool string, n int) {
	t.Helper()
	writeEventsFrom(t, spool, 0, n)
}

// writeEventsFrom is writeEvents with ids from first on.
func writeEventsFrom(t *testing.T, spool string, first, n int) {
	t.Helper()
	w, err := rotatefile.Open(rotatefile.Options{Dir: spool, Stream: "api"})
	if err != nil {
		t.Fatal(err)
	}
	for i := first; i < first+n; i++ {
		if err := w.Append(fmt.Appendf(nil, `{"table":"ev","row":{"account":%d,"id":"r%d"}}`, i%10, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}
