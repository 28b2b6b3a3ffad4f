package loader

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/rotatefile"
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
	const lines, perBatch, inFlight = 2000, 10, 4
	writeStreamFile(t, spool, "api", firstFile, evLines(0, lines, 1, "bound"))
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
	const lines, perBatch = 2000, 10
	writeStreamFile(t, spool, "api", firstFile, evLines(0, lines, 1, "live"))
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

// slowStore is a file store whose saves take 300 ms, like fsyncs on a disk
// busy with a database's writes.
type slowStore struct {
	FileStore
	saves atomic.Int64
}

func (s *slowStore) Save(ctx context.Context, sink, stream string, pos Position) error {
	time.Sleep(300 * time.Millisecond)
	s.saves.Add(1)
	return s.FileStore.Save(ctx, sink, stream, pos)
}

// Checkpoint saves run beside the pipeline, coalesced: while one save
// runs the pipeline goes on with up to MaxInFlight+1 batches (the repeat
// bound, TestAckedPastDurableCheckpointIsBounded), so 60 batches through a store that takes
// 300 ms per save need far fewer than 60 saves, and the checkpoint on disk
// is the last acked position once Run returns.
func TestSlowCheckpointSavesDoNotHoldThePipeline(t *testing.T) {
	spool, w := openWriter(t, rotatefile.Options{})
	const n = 600
	appendEv(t, w, 0, n, 5, strings.Repeat("s", 50))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	store := &slowStore{FileStore: FileStore{Dir: t.TempDir()}}
	sink := newMemSink(t, "slowcp", false)
	spec := sink.spec()
	spec.Store = store
	start := time.Now()
	l, stop := runLoader(t, Config{Dir: spool, Schema: testSchema(t), Batch: BatchConfig{MaxRecords: 10, Linger: time.Millisecond}}, spec)
	testenv.Eventually(t, 60*time.Second, func() bool { return sink.count() >= n }, "all %d lines at the sink", n)
	took := time.Since(start)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	saves := int(store.saves.Load())
	t.Logf("%d lines in %d batches took %v with %d saves", n, sink.batches.Load(), took, saves)
	if batches := int(sink.batches.Load()); saves > batches/2 {
		t.Fatalf("%d saves for %d batches: saves did not coalesce, the pipeline waited for each", saves, batches)
	}
	checkExactlyOnceInOrder(t, sink.name, sink.records(), n)
	pos, ok, err := store.Load(context.Background(), "slowcp", "api")
	if err != nil || !ok {
		t.Fatalf("checkpoint after Run: %v, %v, %v", pos, ok, err)
	}
	if want := l.Positions()["api"]["slowcp"]; pos != want || pos.Offset == 0 {
		t.Fatalf("saved checkpoint %v, want the last acked position %v", pos, want)
	}
}
