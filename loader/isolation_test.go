package loader

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/rotatefile"
)

// A failing sink must not slow the healthy one, must catch up afterwards
// from its own checkpoint, and files must stay until both passed them.
func TestFailingSinkDoesNotStallHealthyOne(t *testing.T) {
	spool, w := openWriter(t, rotatefile.Options{MaxBytes: 16 << 10})
	healthy := newMemSink(t, "healthy", true)
	failing := newMemSink(t, "failing", false)
	failing.async = true
	failing.failing.Store(true)
	_, stop := runLoader(t, Config{Dir: spool, Schema: testSchema(t), Batch: BatchConfig{Linger: 2 * time.Millisecond}}, healthy.spec(), failing.spec())

	const n = 5000
	appendEv(t, w, 0, n, 7, "p")
	testenv.Eventually(t, 30*time.Second, func() bool { return healthy.count() == n }, "healthy sink gets every line while the other fails (has %d)", healthy.count())
	if failing.count() != 0 {
		t.Fatalf("failing sink stored %d records while down", failing.count())
	}
	// The failing sink has passed nothing, so the first file is still there.
	stream := filepath.Join(spool, "api")
	if files := spoolFiles(t, stream); len(files) < 5 {
		t.Fatalf("files deleted before the failing sink passed them: %v", files)
	}

	failing.failing.Store(false)
	testenv.Eventually(t, 60*time.Second, func() bool { return failing.count() >= n }, "failing sink catches up after recovery (has %d)", failing.count())
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return len(spoolFiles(t, stream)) <= 1 }, "files retired once both sinks passed them: %v", spoolFiles(t, stream))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnceInOrder(t, "healthy", healthy.records(), n)
	// The failing sink's checkpoint is the loader's file store and its acks
	// failed, so replays may repeat records; none may be missing and each
	// batch it stored was stored in order.
	seen := map[int]bool{}
	for _, r := range failing.records() {
		seen[r.Seq] = true
	}
	for i := range n {
		if !seen[i] {
			t.Fatalf("failing sink never got seq %d", i)
		}
	}
}

// A sink ten times slower than the other delays only itself.
func TestSlowSinkDoesNotSlowTheOther(t *testing.T) {
	spool, w := openWriter(t, rotatefile.Options{MaxBytes: 64 << 10})
	fast := newMemSink(t, "fast", true)
	fast.delay = 2 * time.Millisecond
	slow := newMemSink(t, "slow", true)
	slow.delay = 20 * time.Millisecond
	cfg := Config{Dir: spool, Schema: testSchema(t), Batch: BatchConfig{MaxRecords: 100, Linger: time.Millisecond}}
	const n = 5000 // 50 batches: fast needs ~0.1 s of sink time, slow ~1 s
	appendEv(t, w, 0, n, 7, "p")
	w.Close()
	start := time.Now()
	_, stop := runLoader(t, cfg, fast.spec(), slow.spec())
	testenv.Eventually(t, 30*time.Second, func() bool { return fast.count() == n }, "fast sink done")
	fastDone := time.Since(start)
	// Had the slow sink held the fast one back, they would finish together.
	// Counting, not timing, keeps this stable on a loaded machine: the slow
	// sink's delay is sleep, so it cannot be far along when the fast one ends.
	slowAtFastDone := slow.count()
	if slowAtFastDone > n*6/10 {
		t.Fatalf("the slow sink had %d of %d records when the fast one finished (%v): the fast one was held back", slowAtFastDone, n, fastDone)
	}
	testenv.Eventually(t, 60*time.Second, func() bool { return slow.count() == n }, "slow sink done")
	stop()
	t.Logf("fast sink done after %v, the slow one then had %d of %d and finished after %v", fastDone, slowAtFastDone, n, time.Since(start))
	checkExactlyOnceInOrder(t, "fast", fast.records(), n)
	checkExactlyOnceInOrder(t, "slow", slow.records(), n)
}

// A sink whose Submit returns an error (rather than acking one) is retried
// from its checkpoint the same way, and catches up once it accepts again.
func TestSubmitErrorIsRetriedFromCheckpoint(t *testing.T) {
	spool, w := openWriter(t, rotatefile.Options{MaxBytes: 16 << 10})
	healthy := newMemSink(t, "healthy", true)
	refusing := newMemSink(t, "refusing", false)
	refusing.refuse.Store(true)
	_, stop := runLoader(t, Config{Dir: spool, Schema: testSchema(t), Batch: BatchConfig{Linger: 2 * time.Millisecond}}, healthy.spec(), refusing.spec())
	const n = 2000
	appendEv(t, w, 0, n, 7, "r")
	testenv.Eventually(t, 30*time.Second, func() bool { return healthy.count() == n }, "healthy sink loads while the other refuses")
	refusing.refuse.Store(false)
	testenv.Eventually(t, 30*time.Second, func() bool { return refusing.count() >= n }, "refusing sink catches up once it accepts (has %d)", refusing.count())
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnceInOrder(t, "refusing", refusing.records(), n)
}
