package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/gen"
	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/rotatefile"
	"github.com/jackc/pgx/v5"
)

// How long the outages of these tests last. The defaults are issue #14's;
// set the variables (e.g. INGEST_KAFKA_OUTAGE=5s) to iterate faster.
const (
	envOutage        = "INGEST_KAFKA_OUTAGE"         // two of three brokers down
	envClusterOutage = "INGEST_KAFKA_CLUSTER_OUTAGE" // every broker down
)

func outage(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration such as 5s", name, v)
	}
	return d
}

// loadRun is `ingest run` loading a steady stream that the test writes
// in-process through gen (so it knows exactly when writing stops), with
// what the outage tests watch while it runs.
type loadRun struct {
	t   *testing.T
	e   *e2eEnv
	run *exec.Cmd
	log *testenv.SyncBuffer

	stopGen context.CancelFunc
	genDone chan error
	lines   int64
}

// startLoad starts `ingest run` on e (config written, tables migrated)
// and gen writing rate lines a second to stream "api" until stopWriting.
func startLoad(t *testing.T, e *e2eEnv, rate float64) *loadRun {
	t.Helper()
	e.writeConfig(t, e.cfgPath, e.config("all"))
	e.migrate(t)
	lr := &loadRun{t: t, e: e, log: &testenv.SyncBuffer{}, genDone: make(chan error, 1)}
	lr.run = exec.Command(binary, "run", "--config", e.cfgPath)
	lr.run.Stdout, lr.run.Stderr = lr.log, lr.log
	if err := lr.run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		lr.run.Process.Kill()
		lr.run.Wait()
		if t.Failed() {
			t.Logf("ingest run log (tail):\n%s", tailLines(lr.log.String(), 60))
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	lr.stopGen = cancel
	t.Cleanup(cancel)
	go func() {
		st, err := gen.Run(ctx, gen.Options{
			Dir: e.spool, Rate: rate, Accounts: 40, Size: 300, Seed: uint64(time.Now().UnixNano()),
			// Small files, so the stream spans several and the positions
			// compared below cross file boundaries.
			Writer: rotatefile.Options{MaxBytes: 1 << 20},
		})
		lr.lines = st.Lines
		lr.genDone <- err
	}()
	return lr
}

// stopWriting stops gen and returns how many lines it wrote.
func (lr *loadRun) stopWriting() int64 {
	lr.t.Helper()
	lr.stopGen()
	if err := <-lr.genDone; err != nil && !errors.Is(err, context.Canceled) {
		lr.t.Fatalf("gen: %v", err)
	}
	return lr.lines
}

// finish waits until both sinks have every line, stops `ingest run` with
// SIGTERM and expects exit 0.
func (lr *loadRun) finish(within time.Duration) {
	lr.t.Helper()
	testenv.Eventually(lr.t, within, func() bool { return statusLag(lr.t, lr.e.cfgPath) == 0 }, "both sinks caught up")
	lr.run.Process.Signal(syscall.SIGTERM)
	if err := lr.run.Wait(); err != nil {
		lr.t.Fatalf("ingest run after SIGTERM: %v (want exit 0)", err)
	}
}

// kafkaCheckpoint is the Kafka sink's checkpoint of stream "api" (zero
// before its first ack), from `ingest status --json`.
func (lr *loadRun) kafkaCheckpoint() loader.Position {
	lr.t.Helper()
	out, code := ingest(lr.t, "status", "--config", lr.e.cfgPath, "--json")
	if code != 0 {
		lr.t.Fatalf("status: %d %s", code, out)
	}
	var st []loader.StreamStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		lr.t.Fatalf("status --json: %v: %s", err, out)
	}
	for _, s := range st {
		for _, k := range s.Sinks {
			if s.Stream == "api" && k.Sink == "kafka" && k.Checkpoint != nil {
				return *k.Checkpoint
			}
		}
	}
	return loader.Position{}
}

// rows counts the rows PostgreSQL holds now.
func (lr *loadRun) rows() int {
	lr.t.Helper()
	ctx := testenv.Context(lr.t, 30*time.Second)
	conn, err := pgx.Connect(ctx, lr.e.pg.URL())
	if err != nil {
		lr.t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM raw_item`).Scan(&n); err != nil {
		lr.t.Fatal(err)
	}
	return n
}

// kafkaMoves waits until Kafka's checkpoint is past from: Kafka acks again.
func (lr *loadRun) kafkaMoves(from loader.Position, within time.Duration, what string) loader.Position {
	lr.t.Helper()
	var now loader.Position
	testenv.Eventually(lr.t, within, func() bool {
		now = lr.kafkaCheckpoint()
		return from.Before(now)
	}, "Kafka's checkpoint moves past %v (%s)", from, what)
	return now
}

// readyz returns the status and body of the run's /readyz; the address
// is in its start-up log line.
func (lr *loadRun) readyz() (int, string) {
	lr.t.Helper()
	var addr string
	testenv.Eventually(lr.t, 30*time.Second, func() bool {
		log := lr.log.String()
		i := strings.Index(log, `"metrics":"`)
		if i < 0 {
			return false
		}
		addr = log[i+len(`"metrics":"`):]
		addr = addr[:strings.IndexByte(addr, '"')]
		return true
	}, "the metrics address in the run's log")
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		lr.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// readyAgain waits until /readyz is 200.
func (lr *loadRun) readyAgain(within time.Duration) {
	lr.t.Helper()
	var code int
	var body string
	testenv.Eventually(lr.t, within, func() bool {
		code, body = lr.readyz()
		return code == http.StatusOK
	}, "/readyz 200 once the brokers are back (last: %d %q)", code, body)
}

// stallSeen is how long an outage must last for /readyz to have said that
// Kafka does not answer by its end, whether no broker answers or the
// brokers that answer acknowledge nothing (runner's kafkaStallAfter, 10 s,
// plus margin).
const stallSeen = 15 * time.Second

// outage keeps the brokers down for d while the run goes on, and checks
// what an outage must look like from outside: Kafka's checkpoint does not
// move (nothing can be acked without the brokers: produce stalls rather
// than drop), PostgreSQL keeps loading, and /readyz is 503 naming kafka
// (when d is long enough). Acks of batches replicated just before the kill
// may still land, so the checkpoint is taken after a grace period.
func (lr *loadRun) outage(d time.Duration, what string) {
	lr.t.Helper()
	grace := min(5*time.Second, d/3)
	start := time.Now()
	rows0 := lr.rows()
	wait(lr.t, grace)
	held := lr.kafkaCheckpoint()
	wait(lr.t, d-time.Since(start))
	after := lr.kafkaCheckpoint()
	rows1 := lr.rows()
	if d >= stallSeen {
		if code, body := lr.readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "kafka: not ready") {
			lr.t.Errorf("%s: /readyz %d %q at the end of the outage, want 503 saying kafka is not ready", what, code, body)
		} else {
			lr.t.Logf("%s: /readyz 503: %q", what, body)
		}
	}
	if after != held {
		lr.t.Errorf("%s: Kafka's checkpoint moved from %v to %v while the brokers were down", what, held, after)
	}
	if rows1 <= rows0 {
		lr.t.Errorf("%s: PostgreSQL stopped loading during the Kafka outage: %d rows at its start, %d at its end", what, rows0, rows1)
	}
	lr.t.Logf("%s for %v: PostgreSQL %d -> %d rows, Kafka's checkpoint held at %v", what, d.Round(time.Second), rows0, rows1, held)
}

// wait lets d of the scenario pass (an outage's length, not a way to wait
// for something to happen), ending early with the test.
func wait(t *testing.T, d time.Duration) {
	t.Helper()
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-t.Context().Done():
		t.Fatal("test ended during an outage")
	}
}

// written is one line gen wrote.
type written struct {
	uuid, account string
	seq           int64
}

// writtenLines reads back every line of a stream, archived or not.
func writtenLines(t *testing.T, spool, stream string) []written {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(spool, ".ingest", "archive", stream, "*"))
	live, _ := filepath.Glob(filepath.Join(spool, stream, "*.ndjson"))
	files = append(files, live...)
	sort.Strings(files)
	var out []written
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			if l == "" {
				continue
			}
			var v struct {
				Row struct {
					ProjectID int64  `json:"project_id"`
					UUID      string `json:"uuid"`
					Seq       int64  `json:"seq"`
				} `json:"row"`
			}
			if err := json.Unmarshal([]byte(l), &v); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			out = append(out, written{v.Row.UUID, strconv.FormatInt(v.Row.ProjectID, 10), v.Row.Seq})
		}
	}
	return out
}

// checkDelivered checks the end state of an outage test: PostgreSQL holds
// every written line exactly once; Kafka holds every one at least once,
// keyed by account, and per account in write order once repeats (same
// record id) are dropped.
func checkDelivered(t *testing.T, e *e2eEnv, lines []written) {
	t.Helper()
	ctx := testenv.Context(t, 2*time.Minute)
	conn, err := pgx.Connect(ctx, e.pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rows, distinct int
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT uuid) FROM raw_item`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != len(lines) || distinct != rows {
		t.Errorf("postgres: %d rows, %d distinct; want the %d written lines once each", rows, distinct, len(lines))
	}

	msgs, err := e.kb.ReadTopic(ctx, e.topic)
	if err != nil {
		t.Fatalf("read topic: %v", err)
	}
	want := make(map[string]written, len(lines))
	for _, l := range lines {
		want[l.uuid] = l
	}
	seen := map[string]bool{}
	next := map[string]int64{} // per account: the seq expected next
	repeats := 0
	for _, m := range msgs {
		id := header(m, "ingest.record_id")
		l, ok := want[id]
		if !ok {
			t.Fatalf("kafka holds record %q at %v that was never written", id, m.TopicPartition)
		}
		if string(m.Key) != l.account {
			t.Fatalf("record %s of account %s has key %q", id, l.account, m.Key)
		}
		if seen[id] {
			repeats++
			continue
		}
		seen[id] = true
		if l.seq != next[l.account] {
			t.Fatalf("account %s: seq %d where %d was due: out of write order (or a line missing before it)", l.account, l.seq, next[l.account])
		}
		next[l.account]++
	}
	if len(seen) != len(lines) {
		var missing []string
		for _, l := range lines {
			if !seen[l.uuid] && len(missing) < 5 {
				missing = append(missing, fmt.Sprintf("%s (account %s seq %d)", l.uuid, l.account, l.seq))
			}
		}
		t.Fatalf("kafka has %d of the %d written lines; missing e.g. %v", len(seen), len(lines), missing)
	}
	t.Logf("postgres: %d rows once each; kafka: %d messages for %d lines (%d repeats)", rows, len(msgs), len(lines), repeats)
}

// busiestPartition is the partition of topic holding the most messages.
func busiestPartition(t *testing.T, c *kafkaserver.Cluster, topic string) int32 {
	t.Helper()
	ends, err := c.EndOffsets(testenv.Context(t, time.Minute), topic)
	if err != nil {
		t.Fatal(err)
	}
	best := 0
	for p, n := range ends {
		if n > ends[best] {
			best = p
		}
	}
	return int32(best)
}

// restartAll restarts the given nodes at once: a node coming back alone
// may wait for the controller quorum the others complete.
func restartAll(t *testing.T, c *kafkaserver.Cluster, ids []int32) {
	t.Helper()
	ctx := testenv.Context(t, 3*time.Minute)
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { errs[i] = c.Restart(ctx, id) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("restart nodes %v: %v", ids, err)
	}
}

// killAll kills the given nodes (kill -9) at once.
func killAll(t *testing.T, c *kafkaserver.Cluster, ids []int32) {
	t.Helper()
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { errs[i] = c.Kill(id) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("kill nodes %v: %v", ids, err)
	}
}

// Issue #14: `ingest run` loads a steady stream into a real 3-node cluster
// (replication 3, min.insync.replicas 2) while (1) the leader of the
// busiest partition is killed with kill -9, Kafka acks again after the
// failover, and the node comes back; then (2) two brokers are killed at
// once and stay down (INGEST_KAFKA_OUTAGE, default 30 s): with one replica
// left nothing can be acked, so produce must stall (Kafka's checkpoint
// holds) rather than drop, while PostgreSQL keeps loading, and /readyz is
// 503 although the broker left answers metadata; then both come back and
// /readyz is 200 again. At the end every line is in Kafka at least once and in order per
// account, and PostgreSQL holds every row exactly once. Kafka: a cluster
// of this test's own (testenv.Cluster): it kills brokers, and only a real
// cluster moves leadership and enforces min.insync.replicas.
func TestRunThroughLeaderKillAndTwoBrokersDown(t *testing.T) {
	down := outage(t, envOutage, 30*time.Second)
	c := testenv.Cluster(t, 3, nil)
	e := newClusterEnv(t, c, kafkaserver.TopicSpec{
		Partitions: 4, Replication: 3, Configs: map[string]string{"min.insync.replicas": "2"},
	})
	lr := startLoad(t, e, 300)
	ctx := testenv.Context(t, 10*time.Minute)

	// A fresh cluster may take a while to hand out idempotent producer
	// ids ("coordinator load in progress"), hence the generous bound.
	cp := lr.kafkaMoves(loader.Position{}, 2*time.Minute, "loading started")

	// (1) The leader of the busiest partition dies.
	p := busiestPartition(t, c, e.topic)
	leader, err := c.Leader(ctx, e.topic, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	rows0 := lr.rows()
	cp = lr.kafkaMoves(lr.kafkaCheckpoint(), time.Minute, "after the leader's kill -9")
	if rows := lr.rows(); rows <= rows0 {
		t.Errorf("PostgreSQL did not load while Kafka failed over: %d rows, then %d", rows0, rows)
	}
	if now, err := c.Leader(ctx, e.topic, p); err != nil || now == leader {
		t.Errorf("partition %d: leader %d (err %v) after node %d died, want another", p, now, err, leader)
	}
	t.Logf("partition %d's leader %d killed; Kafka acked again after %v", p, leader, time.Since(killed).Round(100*time.Millisecond))
	restartAll(t, c, []int32{leader})
	cp = lr.kafkaMoves(cp, time.Minute, "after the leader came back")

	// (2) Two brokers down at once: one replica left, below min ISR 2.
	var two []int32
	for _, id := range c.IDs() {
		if id != leader {
			two = append(two, id)
		}
	}
	killAll(t, c, two)
	lr.outage(down, fmt.Sprintf("nodes %v down", two))
	restartAll(t, c, two)
	lr.kafkaMoves(cp, 2*time.Minute, "after two brokers came back")
	lr.readyAgain(30 * time.Second)

	n := lr.stopWriting()
	lr.finish(2 * time.Minute)
	lines := writtenLines(t, e.spool, "api")
	if int64(len(lines)) != n {
		t.Fatalf("read back %d lines, gen wrote %d", len(lines), n)
	}
	checkDelivered(t, e, lines)
	if strings.Contains(lr.log.String(), `"level":"ERROR"`) {
		t.Logf("ingest run logged errors (shown for the record, not a failure: the outages are real):\n%s", grepLines(lr.log.String(), `"level":"ERROR"`, 10))
	}
}

// Issue #14: every node of a real 3-node cluster is killed and stays down
// (INGEST_KAFKA_CLUSTER_OUTAGE, default 60 s) while `ingest run` loads a
// steady stream; PostgreSQL keeps loading, Kafka's checkpoint does not move
// while the cluster is down, /readyz is 503, and once it is back /readyz
// is 200 and nothing is lost. Kafka:
// a cluster of this test's own (testenv.Cluster), because it is killed;
// three nodes, so coming back needs the controller quorum to form again.
func TestRunThroughWholeClusterDown(t *testing.T) {
	down := outage(t, envClusterOutage, 60*time.Second)
	c := testenv.Cluster(t, 3, nil)
	e := newClusterEnv(t, c, kafkaserver.TopicSpec{
		Partitions: 4, Replication: 3, Configs: map[string]string{"min.insync.replicas": "2"},
	})
	lr := startLoad(t, e, 300)
	cp := lr.kafkaMoves(loader.Position{}, 2*time.Minute, "loading started")

	killAll(t, c, c.IDs())
	lr.outage(down, "the whole cluster down")
	restartAll(t, c, c.IDs())
	lr.kafkaMoves(cp, 2*time.Minute, "after the cluster came back")
	lr.readyAgain(30 * time.Second)

	n := lr.stopWriting()
	lr.finish(2 * time.Minute)
	lines := writtenLines(t, e.spool, "api")
	if int64(len(lines)) != n {
		t.Fatalf("read back %d lines, gen wrote %d", len(lines), n)
	}
	checkDelivered(t, e, lines)
}

// Issue #14: a routed topic that does not exist stops `ingest run` at
// start-up (exit 1) with a message naming the topic, and PostgreSQL has
// loaded nothing by then although lines were waiting (#20). Kafka: the
// shared real broker, which does not create topics that clients ask for
// (librdkafka's mock does, so it cannot show this).
func TestRunRefusesMissingTopic(t *testing.T) {
	e := newBrokerEnv(t, 1)
	e.topic = "missing-" + strings.ReplaceAll(t.Name(), "/", "_") // never created
	e.writeConfig(t, e.cfgPath, e.config("all"))
	e.migrate(t)
	if out, code := ingest(t, "gen", "--dir", e.spool, "--count", "200"); code != 0 {
		t.Fatalf("gen: %d %s", code, out)
	}
	start := time.Now()
	out, code := ingest(t, "run", "--config", e.cfgPath)
	if code != 1 || !strings.Contains(out, e.topic) || !strings.Contains(out, "does not exist") {
		t.Fatalf("ingest run with topic %s missing: exit %d, output:\n%s\nwant exit 1 naming the topic", e.topic, code, out)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("ingest run took %v to refuse a missing topic", d)
	}
	ctx := testenv.Context(t, time.Minute)
	conn, err := pgx.Connect(ctx, e.pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rows int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM raw_item`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 0 {
		t.Errorf("PostgreSQL loaded %d rows before ingest run refused to start", rows)
	}
	if exists, err := e.kb.TopicExists(ctx, e.topic); err != nil || exists {
		t.Errorf("topic %s exists=%v (err %v) after ingest run: it must not be created", e.topic, exists, err)
	}
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func grepLines(s, sub string, n int) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out[:min(n, len(out))], "\n")
}
