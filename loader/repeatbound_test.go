package loader

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/testenv"
)

// gatedStore is a file store whose synced saves wait while the gate is
// closed: a disk that stalls on fsync. It has no live checkpoint, so the
// pipeline must bound what a crash would repeat by waiting.
type gatedStore struct {
	fs   FileStore
	gate chan struct{} // closed: saves go through
}

func (s gatedStore) Load(ctx context.Context, sink, stream string) (Position, bool, error) {
	return s.fs.Load(ctx, sink, stream)
}

func (s gatedStore) Save(ctx context.Context, sink, stream string, pos Position) error {
	select {
	case <-s.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.fs.Save(ctx, sink, stream, pos)
}

// gatedLiveStore is gatedStore with the file store's live checkpoint,
// which needs no fsync.
type gatedLiveStore struct{ gatedStore }

func (s gatedLiveStore) SaveLive(sink, stream string, pos Position) error {
	return s.fs.SaveLive(sink, stream, pos)
}

// While checkpoint saves stall, a sink that acknowledges at once receives
// at most MaxInFlight+1 batches past the durable checkpoint: what a crash
// at that moment would make it receive again (the documented repeat
// bound). Once saves go through, every line arrives. No Kafka: an
// in-memory sink whose checkpoint the loader keeps in a file store.
func TestAckedPastDurableCheckpointIsBounded(t *testing.T) {
	spool := t.TempDir()
	dir := filepath.Join(spool, "api")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	const lines, perBatch, inFlight = 2000, 10, 4
	var b strings.Builder
	for i := range lines {
		b.WriteString(evLine(1, i, "bound") + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "0000000000000001-20261206T000000.000Z.ndjson"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	store := gatedStore{fs: FileStore{Dir: filepath.Join(state, "checkpoints")}, gate: make(chan struct{})}
	sink := newMemSink(t, "mem", false)
	cfg := Config{Dir: spool, StateDir: state, Schema: testSchema(t), Batch: BatchConfig{MaxRecords: perBatch, Linger: time.Millisecond}}
	l, stop := runLoader(t, cfg, SinkSpec{Sink: sink, MaxInFlight: inFlight, Store: store})

	testenv.Eventually(t, 10*time.Second, func() bool { return sink.batches.Load() >= inFlight+1 }, "the sink gets %d batches", inFlight+1)
	// With saves stalled, once the pipeline has held on the bound it can
	// send nothing more (acks only move batches from in flight to acked
	// but not durable), so the count then is final: no watching a clock.
	// Two holds: it came back to the bound after waking and held again.
	testenv.Eventually(t, 10*time.Second, func() bool { return l.boundHolds.Load() >= 2 }, "the pipeline holds on the repeat bound (%d holds)", l.boundHolds.Load())
	if n := sink.batches.Load(); n > inFlight+1 {
		t.Fatalf("%d batches acknowledged past the durable checkpoint; the bound is MaxInFlight+1 = %d", n, inFlight+1)
	}
	close(store.gate)
	testenv.Eventually(t, 20*time.Second, func() bool { return sink.count() == lines }, "every line once saves go through (%d)", sink.count())
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnceInOrder(t, "mem", sink.records(), lines)
}

// With the file store's live checkpoint, stalled fsyncs do not hold the
// pipeline at all, and what a restart would resume from (Load) is the last
// acknowledged position: a kill -9 then repeats only the batches in flight.
// No Kafka: an in-memory sink.
func TestLiveCheckpointNeedsNoWaitForFsync(t *testing.T) {
	spool := t.TempDir()
	dir := filepath.Join(spool, "api")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	const lines, perBatch = 2000, 10
	var b strings.Builder
	for i := range lines {
		b.WriteString(evLine(1, i, "live") + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "0000000000000001-20261206T000000.000Z.ndjson"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	fs := FileStore{Dir: filepath.Join(state, "checkpoints")}
	store := gatedLiveStore{gatedStore{fs: fs, gate: make(chan struct{})}}
	sink := newMemSink(t, "mem", false)
	cfg := Config{Dir: spool, StateDir: state, Schema: testSchema(t), Batch: BatchConfig{MaxRecords: perBatch, Linger: time.Millisecond}}
	_, stop := runLoader(t, cfg, SinkSpec{Sink: sink, MaxInFlight: 4, Store: store})
	testenv.Eventually(t, 20*time.Second, func() bool { return sink.count() == lines }, "every line while synced saves stall (%d)", sink.count())
	sink.mu.Lock()
	acked := sink.cp["api"]
	sink.mu.Unlock()
	got, ok, err := fs.Load(context.Background(), "mem", "api")
	if err != nil || !ok || got != acked {
		t.Fatalf("a restart now would resume from %v (ok %v, err %v); the sink has everything up to %v", got, ok, err, acked)
	}
	close(store.gate)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnceInOrder(t, "mem", sink.records(), lines)

	// A torn live checkpoint (a power loss) is passed over for the synced one.
	if err := os.WriteFile(fs.livePath("mem", "api"), []byte("{\"fi"), 0o640); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := fs.Load(context.Background(), "mem", "api"); err != nil || !ok || got != acked {
		t.Fatalf("with a torn live checkpoint: %v, %v, %v; want the synced %v", got, ok, err, acked)
	}
}
