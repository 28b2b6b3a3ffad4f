package main

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/backfill"
	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/internal/pgserver"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/jackc/pgx/v5"
)

// cutover is the binary's view of a cutover: a PostgreSQL with the tables
// migrated, a Kafka topic for raw_item, and a spool whose stream "api"
// holds sealed files written by `ingest gen`.
type cutover struct {
	pg      *pgserver.Server
	kc      *kafkaserver.Cluster // nil: a test of the db sink alone
	brokers string
	topic   string
	dir     string
	spool   string
	cfg     string
	files   string // the stream directory to backfill
	lines   int
}

// newCutover with a real broker: a cluster of one node for the test alone,
// not testenv.Broker's shared one, because this package's TestMain (in
// e2e_test.go) does not stop a shared broker. The topic keeps its messages
// forever: gen's rows carry event times, and a retention check must not
// take any while the test counts them.
func newCutover(t *testing.T, lines int) *cutover {
	t.Helper()
	kc := testenv.Cluster(t, 1, nil)
	c := newCutoverAt(t, lines, kc.Bootstrap())
	c.kc = kc
	c.topic = testenv.Topic(t, kc, kafkaserver.TopicSpec{Partitions: 4, Configs: map[string]string{"retention.ms": "-1"}})
	c.writeCutoverConfig(t, c.cfg, "all", c.topic)
	return c
}

// newCutoverAt writes the config with brokers (never dialled by a db-only
// test), migrates and generates the files.
func newCutoverAt(t *testing.T, lines int, brokers string) *cutover {
	t.Helper()
	c := &cutover{pg: testenv.Postgres(t), brokers: brokers, topic: "raw_item", dir: t.TempDir(), lines: lines}
	c.spool = filepath.Join(c.dir, "spool")
	if err := os.MkdirAll(c.spool, 0o750); err != nil {
		t.Fatal(err)
	}
	c.cfg = filepath.Join(c.dir, "ingest.yaml")
	c.writeCutoverConfig(t, c.cfg, "all", c.topic)
	if out, code := ingest(t, "migrate", "--config", c.cfg); code != 0 {
		t.Fatalf("migrate: %d %s", code, out)
	}
	if out, code := ingest(t, "gen", "--dir", c.spool, "--stream", "api", "--count", strconv.Itoa(lines), "--accounts", "12", "--size", "300", "--max-bytes", "100000"); code != 0 {
		t.Fatalf("gen: %d %s", code, out)
	}
	c.files = filepath.Join(c.spool, "api")
	return c
}

// writeCutoverConfig writes gen's raw_item table with the Kafka selector
// route, produced to topic.
func (c *cutover) writeCutoverConfig(t *testing.T, path, route, topic string) {
	t.Helper()
	text := e2eConfig(c.spool, c.brokers, c.pg.URL(), route) + "    topic: " + topic + "\n"
	if err := os.WriteFile(path, []byte(text), 0o640); err != nil {
		t.Fatal(err)
	}
}

// start runs the binary in the background, output collected.
func start(t *testing.T, args ...string) (*exec.Cmd, *testenv.SyncBuffer) {
	t.Helper()
	out := &testenv.SyncBuffer{}
	return startTo(t, out, args...), out
}

// startTo runs the binary in the background with its output going to out
// (a log that several runs share, as in the kill tests). Cleanup kills
// and reaps it if the test has not, so a failing test leaves no process.
func startTo(t *testing.T, out io.Writer, args ...string) *exec.Cmd {
	t.Helper()
	cmd := testenv.Command(t, backgroundWithin, binary, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ingest %s: %v", strings.Join(args, " "), err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

var percentRE = regexp.MustCompile(`"msg":"backfill progress","percent":"([0-9.]+)"`)

// waitHalfway waits until a progress log line reports between 20% and 80%.
func waitHalfway(t *testing.T, out *testenv.SyncBuffer) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, func() bool {
		for _, m := range percentRE.FindAllStringSubmatch(out.String(), -1) {
			if p, _ := strconv.ParseFloat(m[1], 64); p >= 20 && p <= 80 {
				return true
			}
		}
		return false
	}, "backfill progress between 20%% and 80%%; output:\n%s", out)
}

func summaryOf(t *testing.T, out string) backfill.Summary {
	t.Helper()
	i := strings.Index(out, "{\n")
	if i < 0 {
		t.Fatalf("no JSON summary in:\n%s", out)
	}
	var s backfill.Summary
	if err := json.NewDecoder(strings.NewReader(out[i:])).Decode(&s); err != nil {
		t.Fatalf("summary: %v in:\n%s", err, out)
	}
	return s
}

// dbUUIDs returns the uuids in raw_item and the distinct accounts.
func (c *cutover) dbUUIDs(t *testing.T) (map[string]bool, []string) {
	t.Helper()
	ids := pgStrings(t, c.pg.URL(), `SELECT uuid::text FROM raw_item`)
	accts := pgStrings(t, c.pg.URL(), `SELECT DISTINCT project_id::text FROM raw_item ORDER BY 1`)
	set := map[string]bool{}
	for _, id := range ids {
		set[id] = true
	}
	if len(set) != len(ids) {
		t.Fatalf("postgres: %d rows, %d distinct ids", len(ids), len(set))
	}
	return set, accts
}

// kafkaUUIDs returns how often each uuid is in the topic, checking per
// account order (by the row's seq) over first occurrences.
func (c *cutover) kafkaUUIDs(t *testing.T, atLeast int) map[string]int {
	t.Helper()
	msgs, err := c.kc.ReadTopic(testenv.Context(t, time.Minute), c.topic)
	if err != nil {
		t.Fatalf("read %s: %v", c.topic, err)
	}
	if len(msgs) < atLeast {
		t.Fatalf("%s holds %d messages, want at least %d", c.topic, len(msgs), atLeast)
	}
	seen := map[string]int{}
	last := map[string]int64{}
	for _, m := range msgs {
		var row struct {
			UUID string `json:"uuid"`
			Seq  int64  `json:"seq"`
		}
		json.Unmarshal(m.Value, &row)
		if seen[row.UUID]++; seen[row.UUID] > 1 {
			continue
		}
		if prev, ok := last[string(m.Key)]; ok && row.Seq <= prev {
			t.Fatalf("account %s: seq %d after %d", m.Key, row.Seq, prev)
		}
		last[string(m.Key)] = row.Seq
	}
	return seen
}

// Interrupted by SIGINT halfway, and in another run killed with SIGKILL
// halfway, a backfill run again with the same arguments completes with
// nothing missing: every line once in PostgreSQL, at least once in Kafka.
// Real broker: "at least once in Kafka" is a claim about a real topic.
func TestBackfillInterruptedAndKilledResumes(t *testing.T) {
	c := newCutover(t, 4000)
	args := []string{"backfill", "--config", c.cfg, "--sink", "both", "--progress", "log", "--log-every", "100ms", "--json"}

	cmd, out := start(t, append(append(args, "--rate", "1500"), c.files)...)
	waitHalfway(t, out)
	cmd.Process.Signal(os.Interrupt)
	if code := exitCode(cmd.Wait()); code != 1 {
		t.Fatalf("interrupted backfill exited %d, want 1:\n%s", code, out)
	}
	s := summaryOf(t, out.String())
	if s.Complete || s.DoneBytes == 0 || s.DoneBytes >= s.Bytes {
		t.Fatalf("interrupted summary %+v", s)
	}
	if !strings.Contains(out.String(), "run the same command again to resume") {
		t.Fatalf("no resume hint:\n%s", out)
	}

	res, code := ingest(t, append(args, c.files)...)
	if code != 0 {
		t.Fatalf("resumed backfill exited %d:\n%s", code, res)
	}
	s = summaryOf(t, res)
	if !s.Complete || !s.Resumed || s.DoneBytes != s.Bytes || s.LinesRead >= int64(c.lines) {
		t.Fatalf("resumed summary %+v", s)
	}
	ids, _ := c.dbUUIDs(t)
	if len(ids) != c.lines {
		t.Fatalf("postgres has %d rows after the resumed backfill, want %d", len(ids), c.lines)
	}
	inKafka := c.kafkaUUIDs(t, c.lines)
	for id := range ids {
		if inKafka[id] == 0 {
			t.Fatalf("record %s missing in kafka", id)
		}
	}

	// kill -9 halfway through a fresh generation, then the same command
	// without --restart resumes that generation.
	cmd, out = start(t, append(append(args, "--rate", "1500", "--restart"), c.files)...)
	waitHalfway(t, out)
	cmd.Process.Signal(syscall.SIGKILL)
	if code := exitCode(cmd.Wait()); code != -1 {
		t.Fatalf("killed backfill: exit %d", code)
	}
	res, code = ingest(t, append(args, c.files)...)
	if code != 0 {
		t.Fatalf("backfill after kill -9 exited %d:\n%s", code, res)
	}
	s = summaryOf(t, res)
	if !s.Complete || !s.Resumed || s.Generation != 1 {
		t.Fatalf("after kill -9: %+v", s)
	}
	if ids, _ := c.dbUUIDs(t); len(ids) != c.lines {
		t.Fatalf("postgres has %d rows, want %d once each", len(ids), c.lines)
	}
	inKafka = c.kafkaUUIDs(t, 2*c.lines)
	if len(inKafka) != c.lines {
		t.Fatalf("kafka has %d distinct records, want %d", len(inKafka), c.lines)
	}
}

// verify's exit status and report on the binary: 0 when the sides agree,
// 1 naming exactly the accounts with rows deleted from PostgreSQL, 1
// naming exactly the accounts whose messages never reached a topic, 1
// with "nothing to compare" on an empty window (0 with --allow-empty), 2
// on a bad table. Real broker: verify reads the topic as a consumer would.
func TestVerifyCommand(t *testing.T) {
	c := newCutover(t, 1500)
	if out, code := ingest(t, "backfill", "--config", c.cfg, "--progress", "off", c.files); code != 0 {
		t.Fatalf("backfill: %d\n%s", code, out)
	}
	out, code := ingest(t, "verify", "--config", c.cfg, "--table", "raw_item")
	if code != 0 || !strings.Contains(out, "OK: all") {
		t.Fatalf("verify on agreeing data: exit %d\n%s", code, out)
	}
	_, accts := c.dbUUIDs(t)
	if len(accts) < 4 {
		t.Fatalf("only %d accounts", len(accts))
	}

	// Rows deleted in PostgreSQL.
	victims := []string{accts[1], accts[3]}
	ctx := testenv.Context(t, time.Minute)
	conn, err := pgx.Connect(ctx, c.pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range victims {
		conn.Exec(ctx, `DELETE FROM raw_item WHERE uuid IN (SELECT uuid FROM raw_item WHERE project_id = $1 LIMIT 2)`, a)
	}
	conn.Close(ctx)
	out, code = ingest(t, "verify", "--config", c.cfg, "--table", "raw_item", "--json")
	var rep struct {
		OK         bool     `json:"ok"`
		Mismatched []string `json:"mismatched_accounts"`
	}
	if err := json.Unmarshal([]byte(out[:strings.LastIndex(out, "}")+1]), &rep); err != nil {
		t.Fatalf("verify --json: %v\n%s", err, out)
	}
	if code != 1 || rep.OK || !slices.Equal(rep.Mismatched, victims) {
		t.Fatalf("after deleting rows of %v: exit %d, report %+v\n%s", victims, code, rep, out)
	}
	out, code = ingest(t, "verify", "--config", c.cfg, "--table", "raw_item")
	if code != 1 || !strings.Contains(out, "MISMATCH: 2 of") || !strings.Contains(out, "disagree: "+strings.Join(victims, ", ")) {
		t.Fatalf("human report: exit %d\n%s", code, out)
	}

	// Messages that never reached a topic: raw_item on a topic of its own,
	// and every account but two backfilled there.
	topicB := testenv.Topic(t, c.kc, kafkaserver.TopicSpec{Partitions: 2, Configs: map[string]string{"retention.ms": "-1"}})
	cfgB := filepath.Join(c.dir, "b.yaml")
	c.writeCutoverConfig(t, cfgB, "all", topicB)
	missing := []string{accts[0], accts[2]}
	var sent []string
	for _, a := range accts {
		if !slices.Contains(missing, a) {
			sent = append(sent, a)
		}
	}
	if out, code := ingest(t, "backfill", "--config", cfgB, "--sink", "kafka", "--accounts", strings.Join(sent, ","), "--progress", "off", c.files); code != 0 {
		t.Fatalf("backfill to raw_item_b: %d\n%s", code, out)
	}
	// Put the deleted rows back first: only Kafka is short now.
	if out, code := ingest(t, "backfill", "--config", c.cfg, "--sink", "db", "--restart", "--progress", "off", c.files); code != 0 {
		t.Fatalf("db backfill: %d\n%s", code, out)
	}
	out, code = ingest(t, "verify", "--config", cfgB, "--table", "raw_item")
	if code != 1 || !strings.Contains(out, "disagree: "+strings.Join(missing, ", ")+"\n") || !strings.Contains(out, "missing in kafka") {
		t.Fatalf("messages missing from kafka: exit %d\n%s", code, out)
	}
	t.Logf("verify with messages missing from kafka:\n%s", out)

	// A window before every record: nothing on either side.
	empty := []string{"verify", "--config", c.cfg, "--table", "raw_item", "--since", "2000-01-01", "--until", "2000-01-02"}
	if out, code := ingest(t, empty...); code != 1 || !strings.Contains(out, "nothing to compare") || !strings.Contains(out, "--allow-empty") {
		t.Fatalf("empty window: exit %d, want 1 with \"nothing to compare\"\n%s", code, out)
	}
	if out, code := ingest(t, append(empty, "--allow-empty", "--json")...); code != 0 || !strings.Contains(out, `"nothing_to_compare": true`) || !strings.Contains(out, `"partition_reads"`) {
		t.Fatalf("empty window --allow-empty: exit %d, want 0\n%s", code, out)
	}
	if out, code := ingest(t, "verify", "--help"); code != 0 || !strings.Contains(out, "--allow-empty") {
		t.Fatalf("verify --help: exit %d, lacks --allow-empty\n%s", code, out)
	}

	if out, code := ingest(t, "verify", "--config", c.cfg, "--table", "nope"); code != 2 || !strings.Contains(out, "--table") {
		t.Fatalf("unknown table: exit %d\n%s", code, out)
	}
	if out, code := ingest(t, "verify", "--config", c.cfg, "--table", "raw_item", "--since", "yesterday"); code != 2 || !strings.Contains(out, "--since") {
		t.Fatalf("bad --since: exit %d\n%s", code, out)
	}
}

// On a terminal the progress is a bar (bytes, lines/s, ETA); piped, it is
// log lines. No Kafka: only the db sink runs (the configured broker
// address is never dialled).
func TestBackfillProgressBarOnTerminalLogLinesOtherwise(t *testing.T) {
	if _, err := exec.LookPath("script"); err != nil {
		// scripts/install-deps installs it (bsdutils); CI must not pass
		// without the bar having been checked.
		if testenv.RequireServices() {
			t.Fatalf("script(1) not installed (run scripts/install-deps): %v", err)
		}
		t.Skip("script(1) not installed: no pseudo-terminal to test with")
	}
	c := newCutoverAt(t, 3000, "127.0.0.1:1")
	cmdline := strings.Join([]string{binary, "backfill", "--config", c.cfg, "--sink", "db", "--rate", "2000", c.files}, " ")
	// script runs the command on a pseudo-terminal and copies what it
	// writes; stdin must not be ours (go test's may be closed).
	cmd := testenv.Command(t, runWithin, "script", "-qfec", cmdline, "/dev/null")
	cmd.Stdin = strings.NewReader("")
	tty, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("backfill on a pty: %v\n%s", err, tty)
	}
	ttyOut := string(tty)
	for _, want := range []string{"lines/s", "100%", "|", "B/s", "backfill complete"} {
		if !strings.Contains(ttyOut, want) {
			t.Errorf("terminal output lacks %q:\n%q", want, ttyOut)
		}
	}
	if !regexp.MustCompile(`\[\d+s:\d+s\]`).MatchString(ttyOut) {
		t.Errorf("terminal output has no [elapsed:ETA]:\n%q", ttyOut)
	}
	if strings.Contains(ttyOut, `"msg":"backfill progress"`) {
		t.Errorf("terminal output has log lines:\n%q", ttyOut)
	}

	piped, code := ingest(t, "backfill", "--config", c.cfg, "--sink", "db", "--rate", "2000", "--restart", "--log-every", "300ms", c.files)
	if code != 0 {
		t.Fatalf("piped backfill: %d\n%s", code, piped)
	}
	if n := strings.Count(piped, `"msg":"backfill progress"`); n < 2 {
		t.Errorf("piped output has %d progress log lines, want several:\n%s", n, piped)
	}
	if strings.Contains(piped, "\r") || strings.Contains(piped, "B/s") {
		t.Errorf("piped output has a bar:\n%q", piped)
	}
	t.Logf("terminal output:\n%s", ttyOut)
}

// Usage errors exit 2 naming the flag or key. No services: they are found
// before anything is dialled.
func TestBackfillCommandUsage(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("spool: {dir: /tmp}\ndb: {url: 'postgres://x@127.0.0.1:1/x'}\ntables:\n  t:\n    key: k\n    columns: {k: bigint}\n"), 0o640)
	emptyDir := filepath.Join(dir, "empty")
	nested := filepath.Join(dir, "nested")
	for _, d := range []string{emptyDir, filepath.Join(nested, "api")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"backfill", "--config", cfg}, "PATH"},
		{[]string{"backfill", "--config", cfg, "--sink", "s3", "/tmp"}, "--sink"},
		{[]string{"backfill", "--config", cfg, "--sink", "kafka", "/tmp"}, "kafka.brokers"},
		{[]string{"backfill", "--config", cfg, "--since", "2026-01-02", "--until", "2026-01-01", "/tmp"}, "--since"},
		{[]string{"backfill", "--config", cfg, "--progress", "fancy", "/tmp"}, "--progress"},
		{[]string{"backfill", "--config", cfg, filepath.Join(dir, "x.ndjson.open")}, "active file"},
		// A directory holding nothing to read: exit 2 saying so, not
		// "done, 0 lines".
		{[]string{"backfill", "--config", cfg, emptyDir}, "no sealed file found"},
		{[]string{"backfill", "--config", cfg, nested}, "directory: backfill does not recurse"},
	} {
		out, code := ingest(t, tc.args...)
		if code != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d, want 2 naming %s:\n%s", tc.args[3:], code, tc.want, out)
		}
	}
}

func TestParseTimeFlag(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-05-01T10:00:00Z":      time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC),
		"2026-05-01T12:00:00+02:00": time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC),
		"2026-05-01":                time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC),
		"2026-05-01T08:30":          time.Date(2026, 5, 1, 8, 30, 0, 0, time.UTC),
		"1574948156":                time.Unix(1574948156, 0).UTC(),
		"1574948156123":             time.UnixMilli(1574948156123).UTC(),
		"-2h":                       now.Add(-2 * time.Hour),
	} {
		got, err := parseTimeFlag(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTimeFlag(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseTimeFlag("tomorrow", now); err == nil {
		t.Error("tomorrow parsed")
	}
}

// A window reaching further back than the topic keeps exits 2 before
// producing anything, naming the topic, its retention and the fix; the
// same files without the window (rows of now) go through. Real broker:
// the retention is read from the topic's config.
func TestBackfillCommandRefusesWhatRetentionWouldDelete(t *testing.T) {
	c := newCutover(t, 500)
	short := testenv.Topic(t, c.kc, kafkaserver.TopicSpec{Partitions: 2, Configs: map[string]string{"retention.ms": "3600000"}})
	cfg := filepath.Join(c.dir, "short.yaml")
	c.writeCutoverConfig(t, cfg, "all", short)
	args := []string{"backfill", "--config", cfg, "--sink", "kafka", "--progress", "off"}
	out, code := ingest(t, append(args, "--since", "2000-01-01", c.files)...)
	if code != 2 || !strings.Contains(out, "topic "+short) || !strings.Contains(out, "retention.ms=3600000") || !strings.Contains(out, "--add-config retention.ms") {
		t.Fatalf("--since 2000-01-01 on a topic keeping 1h: exit %d, want 2 naming the topic, its retention and the fix\n%s", code, out)
	}
	ctx := testenv.Context(t, time.Minute)
	if msgs, err := c.kc.ReadTopic(ctx, short); err != nil || len(msgs) != 0 {
		t.Fatalf("refused up front, yet %s holds %d messages (%v)", short, len(msgs), err)
	}
	if out, code := ingest(t, append(args, c.files)...); code != 0 {
		t.Fatalf("rows of now: exit %d\n%s", code, out)
	}
	if msgs, err := c.kc.ReadTopic(ctx, short); err != nil || len(msgs) != c.lines {
		t.Fatalf("%s holds %d messages (%v), want %d", short, len(msgs), err, c.lines)
	}
}
