package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/gen"
	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/internal/sinks"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/rotatefile"
)

// kill9KafkaInFlight is how many batches per stream `ingest run` keeps at
// the Kafka sink: docs/operations.md ("The guarantees, in short") states
// that after a kill -9 only those batches are produced again, so the
// documented bound per restart is kill9KafkaInFlight × batch.max_records
// records. It is the loader's own setting, so the bound follows it.
const kill9KafkaInFlight = sinks.LiveKafkaInFlight

// kill9Seed is the environment variable that replays a run's kill points.
const kill9Seed = "INGEST_KILL_SEED"

// `ingest run`, dual-writing with malformed lines mixed in, is killed with
// SIGKILL 10 times at random points while a rotatefile writer appends, and
// restarted each time; a last run catches up and stops on SIGTERM. Then:
//   - per restart, the records it produced that an earlier run had already
//     produced (by ingest.record_id) are at most the documented bound,
//     kill9KafkaInFlight × batch.max_records of the config, and no run
//     produces a record twice itself;
//   - every valid line is in Kafka at least once and in PostgreSQL once;
//   - every malformed line is in the dead-letter files exactly once (file
//     and offset unique), and nowhere else.
//
// Which run produced a message is told by its offset: once a killed
// process has exited, its partitions' end offsets are read until they
// stop moving (a produce request it sent before dying may still be
// appended), and only then is the next run started, so run i's messages
// are those between the end offsets after kill i-1 and after kill i.
//
// Kafka: the shared real broker (testenv.Broker), a topic of this test's
// own: the claim is what a real broker holds after its producer was
// killed mid-batch. PostgreSQL: a throwaway server (testenv.Postgres).
func TestRunKilledTenTimesRepeatsWithinBound(t *testing.T) {
	const kills = 10
	e := newBrokerEnv(t, 4)
	e.configure(t, e.config("all"))
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	bound := kill9KafkaInFlight * cfg.Batch.MaxRecords

	seed := uint64(loadertest.EnvInt(t, kill9Seed, int(time.Now().UnixNano())))
	t.Logf("kill points: seed %d (%s=%d replays them)", seed, kill9Seed, seed)
	rng := rand.New(rand.NewPCG(seed, 9))

	// A backlog first, so that the first runs have whole batches in flight;
	// then a steady rate until the last kill, so every run has work.
	w := startKill9Writer(t, e.spool, seed, 4000, 1500)

	log := &testenv.SyncBuffer{}
	defer func() {
		if t.Failed() {
			t.Logf("ingest run logs (tail):\n%s", testenv.Tail(log.String(), 80))
		}
	}()
	start := func(n int) *exec.Cmd {
		t.Helper()
		fmt.Fprintf(log, "---- run %d\n", n)
		return startTo(t, log, "run", "--config", e.cfgPath)
	}

	// ends[i] holds, per partition, the end offset once run i is over.
	var ends [][]int64
	for i := range kills {
		before := kill9Sum(kill9EndOffsets(t, e))
		run := start(i)
		var how string
		if i%2 == 0 {
			// Anywhere from start-up on.
			d := time.Duration(100+rng.IntN(2400)) * time.Millisecond
			time.Sleep(d) // the kill point, drawn at random: not a wait for anything
			how = fmt.Sprintf("%v after start", d)
		} else {
			// While it delivers: once this run's first messages are in.
			testenv.Eventually(t, 60*time.Second, func() bool { return kill9Sum(kill9EndOffsets(t, e)) > before }, "run %d delivers", i)
			d := time.Duration(rng.IntN(500)) * time.Millisecond
			time.Sleep(d) // the kill point, drawn at random
			how = fmt.Sprintf("%v after its first delivery", d)
		}
		kill9(t, run)
		ends = append(ends, kill9SettledEnds(t, e))
		t.Logf("run %d: killed %s; topic at %d messages", i, how, kill9Sum(ends[i]))
	}
	valid, bad := w.stop()

	// The last run catches up and stops gracefully.
	run := start(kills)
	testenv.Eventually(t, 90*time.Second, func() bool { return statusLag(t, e.cfgPath) == 0 }, "both sinks caught up after %d kills", kills)
	stop(t, run)
	ends = append(ends, kill9SettledEnds(t, e))

	// Kafka: attribute each message to its run by offset.
	ctx := testenv.Context(t, time.Minute)
	msgs, err := e.kb.ReadTopic(ctx, e.topic)
	if err != nil {
		t.Fatalf("read topic %s: %v", e.topic, err)
	}
	if len(msgs) != kill9Sum(ends[kills]) {
		t.Fatalf("read %d messages of topic %s; its end offsets say %d", len(msgs), e.topic, kill9Sum(ends[kills]))
	}
	runOf := func(p int32, off int64) int {
		for i, end := range ends {
			if off < end[p] {
				return i
			}
		}
		t.Fatalf("partition %d offset %d beyond the last end offsets %v", p, off, ends[kills])
		return -1
	}
	byRun := make([][]string, kills+1) // record ids per run, in partition order
	for _, m := range msgs {
		id := header(m, "ingest.record_id")
		if id == "" {
			t.Fatalf("partition %d offset %d has no ingest.record_id header", m.TopicPartition.Partition, m.TopicPartition.Offset)
		}
		i := runOf(m.TopicPartition.Partition, int64(m.TopicPartition.Offset))
		byRun[i] = append(byRun[i], id)
	}
	seen := map[string]bool{} // produced by an earlier run
	var counts []string
	worst, sum := 0, 0
	for i, ids := range byRun {
		mine := map[string]bool{}
		repeats := 0
		for _, id := range ids {
			if mine[id] {
				t.Errorf("run %d produced record %s twice itself (one producer must not repeat)", i, id)
			}
			mine[id] = true
			if seen[id] {
				repeats++
			}
		}
		for id := range mine {
			seen[id] = true
		}
		if i == 0 {
			continue
		}
		counts = append(counts, strconv.Itoa(repeats))
		worst, sum = max(worst, repeats), sum+repeats
		if repeats > bound {
			t.Errorf("restart %d: %d records produced again, beyond the documented bound of %d (%d batches in flight × batch.max_records %d)",
				i, repeats, bound, kill9KafkaInFlight, cfg.Batch.MaxRecords)
		}
	}
	t.Logf("records produced again per restart: [%s] (worst %d; documented bound %d = %d in flight × batch.max_records %d); %d messages for %d valid lines",
		strings.Join(counts, " "), worst, bound, kill9KafkaInFlight, cfg.Batch.MaxRecords, len(msgs), len(valid))
	// Every message beyond the first of its record id was counted against
	// one restart: the attribution by offset missed none.
	if extra := len(msgs) - len(seen); sum != extra {
		t.Errorf("repeats counted per restart: %d; messages beyond the first of their record id: %d", sum, extra)
	}
	for id := range seen {
		if !valid[id] {
			t.Errorf("kafka holds record %s, which is no valid line written", id)
		}
	}
	missing := 0
	for id := range valid {
		if !seen[id] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("kafka lacks %d of the %d valid lines", missing, len(valid))
	}

	// PostgreSQL: every valid line once.
	inDB := map[string]int{}
	for _, id := range pgStrings(t, e.pg.URL(), `SELECT uuid::text FROM raw_item`) {
		inDB[id]++
	}
	for id, n := range inDB {
		switch {
		case !valid[id]:
			t.Errorf("postgres holds row %s, which is no valid line written", id)
		case n != 1:
			t.Errorf("postgres holds row %s %d times, want once", id, n)
		}
	}
	if len(inDB) != len(valid) {
		t.Errorf("postgres holds %d distinct rows, want the %d valid lines", len(inDB), len(valid))
	}

	// Dead letters: every malformed line once, at a position of its own.
	dls, err := loader.ReadDeadLetters(e.stateDir(), "api")
	if err != nil {
		t.Fatalf("dead letters unreadable after the kills (an entry glued onto one a kill left half written?): %v", err)
	}
	at := map[loader.Position]bool{}
	got := map[string]int{}
	for _, d := range dls {
		pos := loader.Position{File: d.File, Offset: d.Offset}
		if at[pos] {
			t.Errorf("dead letter at %s written twice", pos)
		}
		at[pos] = true
		if d.Line == nil || d.Sink != "" {
			t.Errorf("dead letter at %s: sink %q, line %v; want a line no sink could take", pos, d.Sink, d.Line)
			continue
		}
		if !bad[*d.Line] {
			t.Errorf("dead letter at %s (%s) is no malformed line written: %q", pos, d.Reason, *d.Line)
		}
		got[*d.Line]++
	}
	for l := range bad {
		if got[l] != 1 {
			t.Errorf("malformed line %q is in the dead letters %d times, want once", l, got[l])
		}
	}
	t.Logf("%d kill -9 and a graceful stop: postgres %d rows once each; %d dead letters for %d malformed lines (%d restarts cut a half-written one)",
		kills, len(inDB), len(dls), len(bad), strings.Count(log.String(), "dead letters: dropped the torn last entry"))
}

// kill9Writer appends lines to stream "api" through rotatefile as an API
// would: gen's lines, every 40th a malformed one (unique, so each dead
// letter names its line), and every 2,000th line a burst of 200 malformed
// ones: more than the 64 KiB the loader buffers before it syncs its dead
// letters, so kills also land while an entry is half written.
type kill9Writer struct {
	t     *testing.T
	done  chan struct{}
	ended chan error
	mu    sync.Mutex
	valid map[string]bool // record ids (uuid) of the valid lines
	bad   map[string]bool // the malformed lines
}

func startKill9Writer(t *testing.T, spool string, seed uint64, backlog int, rate int) *kill9Writer {
	t.Helper()
	// Small files, so the runs cross file boundaries.
	rw, err := rotatefile.Open(rotatefile.Options{Dir: spool, Stream: "api", MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	w := &kill9Writer{t: t, done: make(chan struct{}), ended: make(chan error, 1), valid: map[string]bool{}, bad: map[string]bool{}}
	g := gen.New("raw_item", 50, 300, seed)
	n := 0
	var line []byte
	appendOne := func() error {
		n++
		if n%2000 < 200 {
			l := fmt.Sprintf(`{"table":"raw_item","row":{"project_id":%d,"body":"%s"`, n, strings.Repeat("b", 300)) // truncated JSON
			w.mu.Lock()
			w.bad[l] = true
			w.mu.Unlock()
			return rw.Append([]byte(l))
		}
		if n%40 == 0 {
			var l string
			switch n / 40 % 4 {
			case 0:
				l = fmt.Sprintf(`{"table":"raw_item","row":{"project_id":%d,`, n) // truncated JSON
			case 1:
				l = fmt.Sprintf(`{"table":"raw_item","row":{"project_id":%d,"timestamp":1,"uuid":"not-a-uuid-%d"}}`, n%50+1, n)
			case 2:
				l = fmt.Sprintf(`{"table":"raw_item","row":{"timestamp":%d}}`, n) // no account key
			default:
				l = fmt.Sprintf(`[%d]`, n)
			}
			w.mu.Lock()
			w.bad[l] = true
			w.mu.Unlock()
			return rw.Append([]byte(l))
		}
		line = g.Line(line[:0], time.Now())
		var v struct {
			Row struct {
				UUID string `json:"uuid"`
			} `json:"row"`
		}
		if err := json.Unmarshal(line, &v); err != nil || v.Row.UUID == "" {
			return fmt.Errorf("gen line %q: %v", line, err)
		}
		w.mu.Lock()
		w.valid[v.Row.UUID] = true
		w.mu.Unlock()
		return rw.Append(line)
	}
	for range backlog {
		if err := appendOne(); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		tick := time.NewTicker(10 * time.Millisecond) // the pace: rate/100 lines a tick
		defer tick.Stop()
		for {
			select {
			case <-w.done:
				w.ended <- rw.Close()
				return
			case <-tick.C:
			}
			for range max(rate/100, 1) {
				if err := appendOne(); err != nil {
					rw.Close()
					w.ended <- err
					return
				}
			}
		}
	}()
	t.Cleanup(w.close)
	return w
}

func (w *kill9Writer) close() {
	select {
	case <-w.done:
	default:
		close(w.done)
		<-w.ended
	}
}

// stop ends the writing and returns what was written: valid record ids
// and malformed lines.
func (w *kill9Writer) stop() (valid, bad map[string]bool) {
	w.t.Helper()
	close(w.done)
	if err := <-w.ended; err != nil {
		w.t.Fatalf("writer: %v", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.valid, w.bad
}

func kill9EndOffsets(t *testing.T, e *e2eEnv) []int64 {
	t.Helper()
	ends, err := e.kb.EndOffsets(testenv.Context(t, 30*time.Second), e.topic)
	if err != nil {
		t.Fatal(err)
	}
	return ends
}

// kill9SettledEnds reads the topic's end offsets until two reads 100 ms
// apart agree: a produce request the killed process sent just before it
// died may still be appended, and it belongs to that run.
func kill9SettledEnds(t *testing.T, e *e2eEnv) []int64 {
	t.Helper()
	prev := kill9EndOffsets(t, e)
	deadline := time.Now().Add(10 * time.Second)
	for {
		time.Sleep(100 * time.Millisecond) // the interval two reads must agree over
		cur := kill9EndOffsets(t, e)
		if fmt.Sprint(cur) == fmt.Sprint(prev) {
			return cur
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s still growing 10 s after its producer died: %v -> %v", e.topic, prev, cur)
		}
		prev = cur
	}
}

func kill9Sum(ends []int64) int {
	n := int64(0)
	for _, e := range ends {
		n += e
	}
	return int(n)
}
