package loader

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/rotatefile"
)

// slowStore is a file store whose saves take 300 ms, like fsyncs on a disk
// busy with a database's writes.
type slowStore struct {
	FileStore
	mu    sync.Mutex
	saves int
}

func (s *slowStore) Save(ctx context.Context, sink, stream string, pos Position) error {
	time.Sleep(300 * time.Millisecond)
	s.mu.Lock()
	s.saves++
	s.mu.Unlock()
	return s.FileStore.Save(ctx, sink, stream, pos)
}

// Checkpoint saves run beside the pipeline, coalesced: while one save
// runs the pipeline goes on with up to MaxInFlight+1 batches (the repeat
// bound, repeatbound_test.go), so 60 batches through a store that takes
// 300 ms per save need far fewer than 60 saves, and the checkpoint on disk
// is the last acked position once Run returns.
func TestSlowCheckpointSavesDoNotHoldThePipeline(t *testing.T) {
	spool := t.TempDir()
	w, err := rotatefile.Open(rotatefile.Options{Dir: spool, Stream: "api"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 600
	for i := range n {
		if err := w.Append([]byte(evLine(i%5, i, strings.Repeat("s", 50)))); err != nil {
			t.Fatal(err)
		}
	}
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
	store.mu.Lock()
	saves := store.saves
	store.mu.Unlock()
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
