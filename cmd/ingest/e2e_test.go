package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/gen"
	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/internal/mockkafka"
	"github.com/dualwrite/ingest/internal/pgserver"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/loader"
	"github.com/jackc/pgx/v5"
)

var binary string

// TestMain builds the binary the tests run (with the race detector), then
// runs them under testenv.Main, which stops the shared Kafka broker at the
// end and checks for leaked goroutines.
func TestMain(m *testing.M) {
	binary = testenv.BuildIngest(".", "-race")
	testenv.Main(m, true)
}

const e2eTemplate = `spool: {dir: %q, retention: 1h}
batch: {max_records: 200, linger: 5ms}
kafka: {brokers: %q}
db: {url: %q}
metrics: {listen: "127.0.0.1:0"}
tables:
%s`

// e2eConfig is the config of these tests: gen's raw_item table with the
// given Kafka selector.
func e2eConfig(spool, brokers, dbURL, kafkaRoute string) string {
	return fmt.Sprintf(e2eTemplate, spool, brokers, dbURL, gen.TableConfig("raw_item", kafkaRoute))
}

// e2eEnv is what the binary runs against in these tests: a throwaway
// PostgreSQL, a Kafka with a topic for table raw_item, and a spool and a
// config file in a temporary directory. The Kafka is either a real broker
// (kb, with the topic named topic: newBrokerEnv, newClusterEnv) or
// librdkafka's mock cluster with topic "raw_item" (kc: newE2EEnv, for the
// tests that claim no broker behaviour).
type e2eEnv struct {
	pg                  *pgserver.Server
	kc                  *mockkafka.Cluster
	kb                  *kafkaserver.Cluster
	topic               string
	dir, spool, cfgPath string
	swaps               int // swapConfig's versions
}

// newE2EEnv is an environment on librdkafka's mock cluster.
func newE2EEnv(t *testing.T, partitions int) *e2eEnv {
	t.Helper()
	e := &e2eEnv{pg: testenv.Postgres(t), kc: testenv.Kafka(t, 1), topic: "raw_item"}
	if err := e.kc.CreateTopic("raw_item", partitions); err != nil {
		t.Fatal(err)
	}
	e.dirs(t)
	return e
}

// newBrokerEnv is an environment on the test binary's shared real broker
// (testenv.Broker), with a topic of the test's own.
func newBrokerEnv(t *testing.T, partitions int) *e2eEnv {
	t.Helper()
	kb := testenv.Broker(t)
	return newClusterEnv(t, kb, kafkaserver.TopicSpec{Partitions: partitions})
}

// newClusterEnv is an environment on a given real cluster, with a topic
// made from spec.
func newClusterEnv(t *testing.T, kb *kafkaserver.Cluster, spec kafkaserver.TopicSpec) *e2eEnv {
	t.Helper()
	e := &e2eEnv{pg: testenv.Postgres(t), kb: kb, topic: testenv.Topic(t, kb, spec)}
	e.dirs(t)
	return e
}

func (e *e2eEnv) dirs(t *testing.T) {
	t.Helper()
	e.dir = t.TempDir()
	e.spool = filepath.Join(e.dir, "spool")
	if err := os.MkdirAll(e.spool, 0o750); err != nil {
		t.Fatal(err)
	}
	e.cfgPath = filepath.Join(e.dir, "ingest.yaml")
}

// stateDir is the loader's state dir of this environment: the config
// leaves it to its default under the spool.
func (e *e2eEnv) stateDir() string {
	return filepath.Join(e.spool, loader.DefaultStateSubdir)
}

// config is e2eConfig for this environment; on a real broker table
// raw_item goes to the test's topic.
func (e *e2eEnv) config(kafkaRoute string) string {
	if e.kb == nil {
		return e2eConfig(e.spool, e.kc.Bootstrap(), e.pg.URL(), kafkaRoute)
	}
	tables := gen.TableConfig("raw_item", kafkaRoute) + fmt.Sprintf("    topic: %q\n", e.topic)
	return fmt.Sprintf(e2eTemplate, e.spool, e.kb.Bootstrap(), e.pg.URL(), tables)
}

// bootstrap is the Kafka bootstrap of this environment.
func (e *e2eEnv) bootstrap() string {
	if e.kb == nil {
		return e.kc.Bootstrap()
	}
	return e.kb.Bootstrap()
}

// writeConfig replaces path by rename, as config management does, so a
// running `ingest run` never reads it half written.
func (e *e2eEnv) writeConfig(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, text)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// swapConfig updates path the way a Kubernetes ConfigMap volume does: the
// text goes into a new directory beside it, and a symlink ..data is
// swapped to it by rename; path itself is a symlink through ..data, made
// on the first call. No event names path.
func (e *e2eEnv) swapConfig(t *testing.T, path, text string) {
	t.Helper()
	dir, base := filepath.Split(path)
	e.swaps++
	version := fmt.Sprintf("..v%d", e.swaps)
	if err := os.Mkdir(filepath.Join(dir, version), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, version, base), text)
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(path); err != nil || target != filepath.Join("..data", base) {
		os.Remove(path)
		if err := os.Symlink(filepath.Join("..data", base), path); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *e2eEnv) migrate(t *testing.T) {
	t.Helper()
	ingestOK(t, "migrate", "--config", e.cfgPath)
}

// configure writes the config file (text, e.g. e.config(route)) and
// creates its tables, as an operator does before the first run.
func (e *e2eEnv) configure(t *testing.T, text string) {
	t.Helper()
	e.writeConfig(t, e.cfgPath, text)
	e.migrate(t)
}

// Exit codes and usage errors. Kafka: none, nothing here connects.
func TestExitCodesAndUsage(t *testing.T) {
	if out, code := ingest(t, "version"); code != 0 || !strings.HasPrefix(out, "ingest ") {
		t.Errorf("version: %d %q", code, out)
	}
	if _, code := ingest(t, "no-such-command"); code != 2 {
		t.Errorf("unknown command exits %d, want 2", code)
	}
	if out, code := ingest(t, "run"); code != 2 || !strings.Contains(out, "--config") {
		t.Errorf("run without config: %d %q", code, out)
	}
	good := filepath.Join(t.TempDir(), "good.yaml")
	writeFile(t, good, e2eConfig(t.TempDir(), "127.0.0.1:1", "", "all"))
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	writeFile(t, bad, "spool: {dir: /tmp}\ntables:\n  t:\n    key: k\n    columns: {k: bigint}\n    kafka: {percent: 140}\n")
	if out, code := ingest(t, "run", "--config", bad); code != 2 || !strings.Contains(out, "tables.t.kafka.percent") {
		t.Errorf("invalid config: exit %d, output %q; want 2 naming the key", code, out)
	}
	if _, code := ingest(t, "gen", "--dir", t.TempDir(), "--rate", "-1"); code != 2 {
		t.Errorf("gen --rate -1 exits %d, want 2", code)
	}
	// Flag errors of every command, not only the App's, exit 2 naming the
	// flag (urfave/cli gives them to the command's OnUsageError).
	for _, args := range [][]string{
		{"run", "--bogus"}, {"status", "--bogus"}, {"consume", "--bogus"}, {"schema", "sql", "--bogus"}, {"dev", "postgres", "--bogus"},
		{"backfill", "--retention-margin", "xyz", "x"}, {"gen"}, {"verify", "--config", good},
	} {
		out, code := ingest(t, args...)
		want := map[string]string{"gen": "--dir", "verify": "--table", "backfill": "retention-margin"}[args[0]]
		if want == "" {
			want = "bogus"
		}
		if code != 2 || !strings.Contains(out, want) {
			t.Errorf("%s: exit %d, output %q; want 2 naming %s", strings.Join(args, " "), code, out, want)
		}
	}
	// good routes raw_item to PostgreSQL (db defaults to all) with db.url
	// empty: run refuses to start rather than retire files whose records
	// never reached PostgreSQL.
	if out, code := ingest(t, "run", "--config", good); code != 2 || !strings.Contains(out, "tables.raw_item.db") || !strings.Contains(out, "db: none") {
		t.Errorf("run with a route to a sink that is off: exit %d, output %q; want 2 naming tables.raw_item.db and the fix", code, out)
	}
	// No sink at all, and a Kafka property the sink refuses: config errors.
	noSink := filepath.Join(t.TempDir(), "nosink.yaml")
	writeFile(t, noSink, strings.Replace(e2eConfig(t.TempDir(), "", "", "none"), "    db: all\n", "    db: none\n", 1))
	refused := filepath.Join(t.TempDir(), "refused.yaml")
	writeFile(t, refused, strings.NewReplacer(`kafka: {brokers: "127.0.0.1:1"}`, `kafka: {brokers: "127.0.0.1:1", properties: {transactional.id: x}}`,
		"    db: all\n", "    db: none\n").Replace(e2eConfig(t.TempDir(), "127.0.0.1:1", "", "all")))
	for cfg, want := range map[string]string{noSink: "no sink enabled", refused: "transactional.id"} {
		if out, code := ingest(t, "run", "--config", cfg); code != 2 || !strings.Contains(out, want) {
			t.Errorf("run --config %s: exit %d, output %q; want 2 naming %s", filepath.Base(cfg), code, out, want)
		}
	}
}

// The end-to-end check: gen writes while `ingest run` dual-writes;
// the Kafka route moves none -> {percent: 30} -> all by rewriting the config
// file. Each phase writes its own stream, after the loader applied the
// phase's route, so every record's expected sinks are known: Postgres gets
// every row once; Kafka gets nothing of phase a, exactly the 30% accounts of
// phase b and everything of phase c, keyed by account, in file order.
//
// Kafka: the shared real broker, a topic of this test's own: the test
// claims what Kafka holds, keyed and in order.
func TestRunDualWritesThroughRouteChanges(t *testing.T) {
	e := newBrokerEnv(t, 4)
	pg, kc, spool, cfgPath := e.pg, e.kb, e.spool, e.cfgPath
	// The config starts as a ConfigMap volume holds it (a symlink through
	// ..data); phase b's change swaps ..data, phase c's replaces the file
	// by rename, as config management does.
	e.swapConfig(t, cfgPath, e.config("none"))
	e.migrate(t)
	if out, code := ingest(t, "schema", "sql", "--config", cfgPath); code != 0 || !strings.Contains(out, `CREATE TABLE IF NOT EXISTS "raw_item"`) {
		t.Fatalf("schema sql: %d %s", code, out)
	}

	// A flag overrides a key of the file (metrics.listen): the reloads
	// below must not take it for a change that needs a restart.
	run, runLog := start(t, "run", "--config", cfgPath, "--metrics-listen", "off")
	defer func() {
		if t.Failed() {
			t.Logf("ingest run log:\n%s", runLog.String())
		}
	}()

	const perPhase = 2000
	phase := func(stream, route string, write func(t *testing.T, path, text string)) {
		if route != "" {
			write(t, cfgPath, e.config(route))
			testenv.Eventually(t, 20*time.Second, func() bool {
				return strings.Contains(runLog.String(), "tables.raw_item.kafka: ") &&
					strings.Contains(runLog.String(), "-> "+route)
			}, "reload to %s applied", route)
		}
		ingestOK(t, "gen", "--dir", spool, "--stream", stream, "--rate", "2000", "--count", strconv.Itoa(perPhase), "--accounts", "100", "--size", "400")
		testenv.Eventually(t, 60*time.Second, func() bool { return statusLag(t, cfgPath) == 0 }, "both sinks caught up with stream %s", stream)
	}
	phase("a", "", nil)
	phase("b", "{percent: 30}", e.swapConfig)
	phase("c", "all", e.writeConfig)

	// SIGHUP reloads without a file event (the file is unchanged).
	unchanged := func() int { return strings.Count(runLog.String(), "config reloaded: no route or batch change") }
	before := unchanged()
	if err := run.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() bool { return unchanged() > before }, "SIGHUP reloaded the unchanged file")

	// A config that does not parse is rejected and the old one stays.
	writeFile(t, cfgPath, "spool: [broken")
	testenv.Eventually(t, 20*time.Second, func() bool { return strings.Contains(runLog.String(), "config reload rejected") }, "invalid config rejected")
	if strings.Contains(runLog.String(), "needs a restart") {
		t.Errorf("a reload reported the key --metrics-listen overrides as changed:\n%s", runLog.String())
	}

	stop(t, run)

	// What each phase wrote, from the archive (retention keeps the files).
	lines := map[string][]written{}
	for _, stream := range []string{"a", "b", "c"} {
		lines[stream] = writtenLines(t, spool, stream)
		if len(lines[stream]) != perPhase {
			t.Fatalf("stream %s: found %d written lines, want %d", stream, len(lines[stream]), perPhase)
		}
	}

	ctx := testenv.Context(t, time.Minute)
	rows, distinct := rawItemRows(t, pg.URL())
	if rows != 3*perPhase || distinct != rows {
		t.Fatalf("postgres: %d rows, %d distinct; want %d once each", rows, distinct, 3*perPhase)
	}

	want := map[string]bool{} // uuids Kafka must have
	for _, l := range lines["b"] {
		if config.Bucket(l.account) < 3000 {
			want[l.uuid] = true
		}
	}
	for _, l := range lines["c"] {
		want[l.uuid] = true
	}
	// The run has stopped: the topic holds all it will.
	msgs, err := kc.ReadTopic(ctx, e.topic)
	if err != nil {
		t.Fatalf("read topic: %v", err)
	}
	got := map[string]bool{}
	lastPos := map[string]string{} // per key: source position of the last message
	for _, m := range msgs {
		var v struct {
			ProjectID int64  `json:"project_id"`
			UUID      string `json:"uuid"`
		}
		if err := json.Unmarshal(m.Value, &v); err != nil {
			t.Fatal(err)
		}
		if string(m.Key) != strconv.FormatInt(v.ProjectID, 10) {
			t.Fatalf("message key %q for account %d", m.Key, v.ProjectID)
		}
		if !want[v.UUID] {
			t.Fatalf("record %s of account %d reached Kafka but was not routed there", v.UUID, v.ProjectID)
		}
		got[v.UUID] = true
		src := header(m, "ingest.source")
		if prev := lastPos[string(m.Key)]; prev != "" && !sourceBefore(prev, src) {
			t.Fatalf("account %s: %s after %s: out of file order", m.Key, src, prev)
		}
		lastPos[string(m.Key)] = src
	}
	if len(got) != len(want) {
		t.Fatalf("kafka has %d of the %d routed records", len(got), len(want))
	}
	t.Logf("kafka: %d messages for %d routed records; postgres: %d rows", len(msgs), len(want), rows)
}

// pgStrings runs sql, a query of one text column, on the PostgreSQL at
// url and returns its values.
func pgStrings(t *testing.T, url, sql string) []string {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect to PostgreSQL for %s: %v", sql, err)
	}
	defer conn.Close(ctx)
	rows, _ := conn.Query(ctx, sql) // an error comes back from CollectRows
	vals, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return vals
}

// rawItemRows counts the rows of raw_item in the PostgreSQL at url, and
// how many distinct record ids they hold: a line loaded twice shows as
// rows > distinct.
func rawItemRows(t *testing.T, url string) (rows, distinct int) {
	t.Helper()
	ctx := testenv.Context(t, 30*time.Second)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect to PostgreSQL to count raw_item: %v", err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT uuid) FROM raw_item`).Scan(&rows, &distinct); err != nil {
		t.Fatalf("count raw_item: %v", err)
	}
	return rows, distinct
}

// sourceBefore compares "stream/file/offset" positions of one stream, or
// orders streams by name (the phases a, b, c ran one after another).
func sourceBefore(a, b string) bool {
	pa, pb := strings.Split(a, "/"), strings.Split(b, "/")
	if pa[0] != pb[0] {
		return pa[0] < pb[0]
	}
	if pa[1] != pb[1] {
		return pa[1] < pb[1]
	}
	oa, _ := strconv.ParseInt(pa[2], 10, 64)
	ob, _ := strconv.ParseInt(pb[2], 10, 64)
	return oa < ob
}

func header(m *kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// streamStatus is what `ingest status --json` says of each stream.
func streamStatus(t *testing.T, cfgPath string) []loader.StreamStatus {
	t.Helper()
	streams, _ := statusEntries(t, ingestOK(t, "status", "--config", cfgPath, "--json"))
	return streams
}

// statusLag returns the total lag in bytes over every stream and sink, and
// counts a sink without a checkpoint as lagging.
func statusLag(t *testing.T, cfgPath string) int64 {
	t.Helper()
	var lag int64
	for _, s := range streamStatus(t, cfgPath) {
		for _, k := range s.Sinks {
			lag += k.LagBytes
			if k.Checkpoint == nil {
				lag++
			}
		}
	}
	return lag
}

// `ingest run --trace-acks` times every record gen wrote, for each sink,
// and `ingest dev latency-report` summarizes the trace
// (scripts/bench-latency's method). Kafka: librdkafka's mock cluster
// (newE2EEnv): the claim is about the trace and its report, not about a
// broker.
func TestRunTraceAcksAndLatencyReport(t *testing.T) {
	e := newE2EEnv(t, 2)
	e.configure(t, e.config("all"))
	trace := filepath.Join(e.dir, "acks.tsv")
	run, _ := start(t, "run", "--config", e.cfgPath, "--trace-acks", trace)

	const lines = 1500
	ingestOK(t, "gen", "--dir", e.spool, "--rate", "3000", "--count", strconv.Itoa(lines), "--accounts", "50", "--size", "300")
	testenv.Eventually(t, 60*time.Second, func() bool { return statusLag(t, e.cfgPath) == 0 }, "both sinks caught up")
	stop(t, run)

	data, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), "\n"); n != 2*lines {
		t.Errorf("trace has %d lines, want one per record and sink: %d", n, 2*lines)
	}
	out, code := ingest(t, "dev", "latency-report", trace)
	if code != 0 {
		t.Fatalf("latency-report: %d %s", code, out)
	}
	rows := strings.Split(strings.TrimSpace(out), "\n")
	if len(rows) != 3 || !strings.HasPrefix(rows[0], "SINK") {
		t.Fatalf("latency-report:\n%s", out)
	}
	for i, sink := range []string{"db", "kafka"} {
		f := strings.Fields(rows[i+1])
		if len(f) != 6 || f[0] != sink || f[1] != strconv.Itoa(lines) {
			t.Fatalf("row for %s: %q (want %s, %d records)", sink, rows[i+1], sink, lines)
		}
		p50, _ := strconv.ParseFloat(f[2], 64)
		maxMS, _ := strconv.ParseFloat(f[5], 64)
		if !(p50 > 0 && p50 <= maxMS && maxMS < 60_000) {
			t.Errorf("%s: p50 %v ms, max %v ms: not a latency", sink, p50, maxMS)
		}
	}
	if out, code := ingest(t, "dev", "latency-report", filepath.Join(e.dir, "missing")); code == 0 {
		t.Errorf("latency-report of a missing file exits 0: %s", out)
	}
}

// `ingest demo` passes its own checks. Kafka: librdkafka's mock cluster,
// because that is what the demo runs on (in-process, nothing installed).
func TestDemoPassesItsChecks(t *testing.T) {
	if _, err := pgserver.FindBinDir(t.Context()); err != nil && !testenv.RequireServices() {
		t.Skipf("the demo needs the PostgreSQL server binaries: %v", err)
	}
	out, code := ingest(t, "demo", "--duration", "4s", "--rate", "1000")
	if code != 0 || !strings.Contains(out, "all checks passed") || strings.Contains(out, "FAIL") {
		t.Fatalf("demo exited %d:\n%s", code, out)
	}
	for _, want := range []string{"PostgreSQL holds every line exactly once", "per-account order in Kafka", "latency append -> kafka ack: p50"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo report lacks %q", want)
		}
	}
}

// kill -9 of `ingest run` five times while gen writes: Postgres still gets
// every row exactly once, Kafka every record at least once, in order per
// account once repeats (same record id) are dropped. Kafka: the shared
// real broker, a topic of this test's own: the claim is about what a real
// broker holds after the producer died mid-batch (idempotent producer
// state, acks=all).
func TestRunSurvivesKillDashNine(t *testing.T) {
	e := newBrokerEnv(t, 4)
	spool, cfgPath := e.spool, e.cfgPath
	e.configure(t, e.config("all"))
	const count = 8000
	gen, genLog := start(t, "gen", "--dir", spool, "--rate", "1500", "--count", strconv.Itoa(count), "--accounts", "50", "--size", "300")
	log := &testenv.SyncBuffer{}
	start := func() *exec.Cmd {
		return startTo(t, log, "run", "--config", cfgPath)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	for range 5 {
		run := start()
		time.Sleep(time.Duration(300+rng.IntN(700)) * time.Millisecond) // the kill point
		kill9(t, run)
	}
	if err := gen.Wait(); err != nil {
		t.Fatalf("gen: %v\n%s", err, genLog)
	}
	run := start()
	testenv.Eventually(t, 60*time.Second, func() bool { return statusLag(t, cfgPath) == 0 }, "caught up after the kills")
	stop(t, run)

	// Postgres: every line once; Kafka (everything, repeats included: the
	// run has stopped): every line, in order per account.
	lines := writtenLines(t, spool, "api")
	if len(lines) != count {
		t.Fatalf("read back %d lines, gen wrote %d", len(lines), count)
	}
	checkDelivered(t, e, lines)
}

// The database password and SASL credentials never show in logs, errors,
// status output or metrics. Kafka: the shared real broker, a topic of this
// test's own: the SASL settings are passed to librdkafka but unused on the
// broker's plaintext listener; what matters is every output of a real run.
func TestSecretsNeverShow(t *testing.T) {
	e := newBrokerEnv(t, 1)
	pg := e.pg
	const dbSecret, saslSecret = "Db-S3cret-pw-9431", "Sasl-S3cret-pw-2718"
	// Trust authentication ignores the password, so the URL still works.
	url := strings.Replace(pg.URL(), "postgres@", "postgres:"+dbSecret+"@", 1)
	cfg := strings.Replace(e.config("all"), pg.URL(), url, 1) +
		"# SASL settings the plaintext listener does not use\n"
	cfg = strings.Replace(cfg, "kafka: {brokers: ", "kafka: {properties: {sasl.username: ingest, sasl.password: "+saslSecret+"}, brokers: ", 1)
	cfgPath := e.cfgPath
	e.writeConfig(t, cfgPath, cfg)

	var outputs []string
	out, code := ingest(t, "migrate", "--config", cfgPath)
	if code != 0 {
		t.Fatalf("migrate: %d %s", code, out)
	}
	outputs = append(outputs, out)
	ingest(t, "gen", "--dir", e.spool, "--count", "50")

	run, log := start(t, "run", "--config", cfgPath, "--debug", "--metrics-listen", "127.0.0.1:0")
	testenv.Eventually(t, 30*time.Second, func() bool { return statusLag(t, cfgPath) == 0 }, "loaded")
	out, _ = ingest(t, "status", "--config", cfgPath)
	outputs = append(outputs, out)
	out, _ = ingest(t, "status", "--config", cfgPath, "--json")
	outputs = append(outputs, out)
	// The metrics address is in the start-up log line.
	if i := strings.Index(log.String(), `"metrics":"`); i >= 0 {
		addr := log.String()[i+len(`"metrics":"`):]
		addr = addr[:strings.IndexByte(addr, '"')]
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		outputs = append(outputs, string(body))
	} else {
		t.Fatalf("no metrics address in the log:\n%s", log.String())
	}
	stop(t, run)
	outputs = append(outputs, log.String())

	// Failures must not print the secrets either: a database that refuses,
	// and a broker that is not there.
	bad := strings.Replace(cfg, strconv.Itoa(pg.Port()), "1", 1)
	writeFile(t, cfgPath, bad)
	out, code = ingest(t, "migrate", "--config", cfgPath)
	if code == 0 {
		t.Fatal("migrate against a closed port succeeded")
	}
	outputs = append(outputs, out)
	for i, o := range outputs {
		for _, secret := range []string{dbSecret, saslSecret} {
			if strings.Contains(o, secret) {
				t.Errorf("output %d shows a secret:\n%s", i, o)
			}
		}
	}
}
