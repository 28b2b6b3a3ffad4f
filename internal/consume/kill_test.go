package consume_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/internal/testenv"
)

// backgroundBackfill writes items 1..n and events 1..n (interleaved) as
// sealed spool files and runs `ingest backfill --sink kafka --rate` over
// them in the background, so that the messages come from the file path's
// own producer, paced to span the kills; wait returns its error.
func backgroundBackfill(t *testing.T, e *env, n int64, rate int) (wait func() error) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "api")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	const perFile = 2000
	var b strings.Builder
	seq := uint64(1)
	flush := func() {
		loadertest.WriteSealed(t, dir, seq, now.Add(time.Duration(seq)*time.Millisecond), b.String())
		b.Reset()
		seq++
	}
	for i := int64(1); i <= n; i++ {
		fmt.Fprintf(&b, `{"table":"items","row":{"account":%d,"id":%d,"ts":%d,"body":"item %d"}}`+"\n", i%101, i, now.UnixMilli(), i)
		fmt.Fprintf(&b, `{"table":"events","row":{"account":%d,"seq":%d,"body":"event %d"}}`+"\n", i%101, i, i)
		if i%perFile == 0 || i == n {
			flush()
		}
	}
	// The consumer's config routes nothing to Kafka; the backfill's
	// routes every table there.
	text, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(filepath.Dir(dir), "backfill.yaml")
	routed := regexp.MustCompile(`(?m)^(    columns: .*)$`).ReplaceAllString(string(text), "$1\n    kafka: all")
	if err := os.WriteFile(cfg, []byte(routed), 0o640); err != nil {
		t.Fatal(err)
	}
	p := testenv.StartProcess(t, binary, "backfill", "--config", cfg, "--sink", "kafka", "--rate", strconv.Itoa(rate), "--progress", "off", dir)
	return func() error {
		if err := p.Wait(); err != nil {
			return fmt.Errorf("ingest backfill: %w\n%s", err, testenv.Tail(p.Log.String(), 30))
		}
		if !strings.Contains(p.Log.String(), "backfill complete:") {
			return fmt.Errorf("ingest backfill exited 0 without its summary:\n%s", testenv.Tail(p.Log.String(), 30))
		}
		return nil
	}
}

// backgroundProducer produces items 1..n and events 1..n in chunks while
// the test runs, as a backfill would; wait returns its error.
func backgroundProducer(t *testing.T, e *env, n int64) (wait func() error) {
	pr := newProducer(t, e.kb.Bootstrap())
	var wg sync.WaitGroup
	var err error
	stop := make(chan struct{})
	now := time.Now()
	wg.Go(func() {
		const chunk = 50
		for from := int64(1); from <= n; from += chunk {
			var ms []msg
			for i := from; i < from+chunk && i <= n; i++ {
				ms = append(ms, item(e.items, i%101, i, now), event(e.events, i%101, i))
			}
			if _, err = pr.trySend(ms...); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond): // pace: 400 messages/s, so that production spans most kills
			}
		}
	})
	t.Cleanup(func() { close(stop); wg.Wait() })
	return func() error { wg.Wait(); return err }
}

// The first check: `ingest consume` killed with SIGKILL at random
// points while `ingest backfill` produces; in the end every message's row
// is in PostgreSQL exactly once, in the table with an id column and in the
// one without (where only the offsets committed with the rows prevent
// duplicates).
func TestKillNineExactlyOnce(t *testing.T) {
	kills := loadertest.EnvInt(t, "INGEST_CONSUME_KILLS", 20)
	e := newEnv(t, 4, 40)
	// 400 lines/s: production spans most of the kills (a kill takes some
	// 7 s, most of it the group noticing the killed member).
	n := int64(max(8000, 800*kills))
	wait := backgroundBackfill(t, e, n, 400)

	var loadedAtKill []int64
	for i := range kills {
		c := startConsume(t, e, "--group", "kill")
		// Kill once it loads: after at least one more row than at the
		// last kill (a kill before assignment proves nothing), then at a
		// random point within the next 1.5 s.
		before := int64(0)
		if len(loadedAtKill) > 0 {
			before = loadedAtKill[len(loadedAtKill)-1]
		}
		testenv.Eventually(t, 60*time.Second, func() bool {
			a, err1 := tryInt(e.pg, "SELECT count(*) FROM items")
			b, err2 := tryInt(e.pg, "SELECT count(*) FROM events")
			// (Or everything is loaded already: the consumer caught up
			// with the producer, and the kill hits it idle.)
			return err1 == nil && err2 == nil && (a+b > before || a+b == 2*n) && strings.Contains(c.Log.String(), "partition assigned")
		}, "kill %d: the consumer loads", i+1)
		time.Sleep(time.Duration(rand.IntN(1500)) * time.Millisecond) // a random kill point, not synchronisation
		c.Kill()
		a, _ := tryInt(e.pg, "SELECT count(*) FROM items")
		b, _ := tryInt(e.pg, "SELECT count(*) FROM events")
		loadedAtKill = append(loadedAtKill, a+b)
	}
	if err := wait(); err != nil {
		t.Fatalf("producer: %v", err)
	}
	t.Logf("rows loaded at each of %d kills: %v", kills, loadedAtKill)

	c := startConsume(t, e, "--group", "kill")
	// Also joined: the kills may have left every row loaded, and a
	// SIGTERM before the process handles signals ends it with the signal
	// instead of a clean stop (seen once in CI).
	testenv.Eventually(t, 3*time.Minute, func() bool {
		a, err1 := tryInt(e.pg, "SELECT count(*) FROM items")
		b, err2 := tryInt(e.pg, "SELECT count(*) FROM events")
		return err1 == nil && err2 == nil && a >= n && b >= n && strings.Contains(c.Log.String(), "partition assigned")
	}, "every message loaded after the last restart")
	c.stop(t)
	checkExactlyOnce(t, e.pg, n, n)
	out, err := exec.Command(binary, "consume", "--config", e.cfgPath, "--group", "kill", "--status").CombinedOutput()
	if err != nil || !regexp.MustCompile(`(?m)^total lag\s+0$`).Match(out) {
		t.Errorf("consume --status: %v, want total lag 0:\n%s", err, out)
	}
	for _, topic := range []string{e.items, e.events} {
		for p := range 4 {
			if cp := checkpoint(t, e, "kill", topic, p); cp <= 0 {
				t.Errorf("topic %s partition %d: checkpoint %d, want past the partition's messages", topic, p, cp)
			}
		}
	}
}

// Two consumers in one group share the partitions; a third joins and one
// of the first two is killed, while messages are produced: nothing is lost
// or loaded twice, and each consumer loaded partitions at some point.
func TestGroupRebalancesWhileLoading(t *testing.T) {
	e := newEnv(t, 4, 40)
	const n = 6000
	wait := backgroundProducer(t, e, n)
	loaded := func() int64 {
		a, err1 := tryInt(e.pg, "SELECT count(*) FROM items")
		b, err2 := tryInt(e.pg, "SELECT count(*) FROM events")
		if err1 != nil || err2 != nil {
			return -1
		}
		return a + b
	}
	assigned := func(c *child) bool { return strings.Contains(c.Log.String(), "partition assigned") }

	a := startConsume(t, e, "--group", "shared")
	b := startConsume(t, e, "--group", "shared")
	testenv.Eventually(t, 60*time.Second, func() bool { return assigned(a) && assigned(b) && loaded() > 0 },
		"both consumers own partitions and load")
	c := startConsume(t, e, "--group", "shared")
	testenv.Eventually(t, 60*time.Second, func() bool { return assigned(c) }, "the third consumer gets partitions")
	mark := loaded()
	testenv.Eventually(t, 60*time.Second, func() bool { return loaded() > mark }, "loading goes on after the join")
	a.Kill()
	mark = loaded()
	testenv.Eventually(t, 60*time.Second, func() bool { return loaded() > mark }, "loading goes on after the kill")
	if err := wait(); err != nil {
		t.Fatalf("producer: %v", err)
	}
	testenv.Eventually(t, 3*time.Minute, func() bool { return loaded() == 2*n }, "every message loaded")
	// The partitions of the killed member moved to the others.
	if !strings.Contains(b.Log.String()+c.Log.String(), "partition assigned") {
		t.Errorf("no reassignment logged")
	}
	b.stop(t)
	c.stop(t)
	checkExactlyOnce(t, e.pg, n, n)
}
