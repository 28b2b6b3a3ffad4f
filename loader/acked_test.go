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

// rejectOdd stores the even seqs and dead-letters the odd ones, as a sink
// does with records it cannot store (a value the database refuses, a
// message above the topic's limit).
type rejectOdd struct{ *memSink }

func (s rejectOdd) Submit(ctx context.Context, b *Batch, ack func(error)) error {
	keep := b.Records[:0:0]
	for i, r := range b.Records {
		if parseGot(r).Seq%2 == 1 {
			if err := b.Reject(ctx, i, "test_reject", "odd"); err != nil {
				ack(err)
				return nil
			}
			continue
		}
		keep = append(keep, r)
	}
	s.mu.Lock()
	for _, r := range keep {
		s.recs = append(s.recs, parseGot(r))
	}
	s.mu.Unlock()
	ack(nil)
	return nil
}

// Records a sink dead-letters count as dead-lettered, never as acked:
// ingest_records_acked_total equals what the sink stored. No Kafka or
// PostgreSQL: an in-memory sink that rejects every other record.
func TestRejectedRecordsAreNotCountedAsAcked(t *testing.T) {
	spool := t.TempDir()
	dir := filepath.Join(spool, "api")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := range 100 {
		b.WriteString(evLine(1, i, "rej") + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "0000000000000001-20261206T000000.000Z.ndjson"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	sink := rejectOdd{newMemSink(t, "mem", false)}
	l, stop := runLoader(t, Config{Dir: spool, Schema: testSchema(t), Batch: BatchConfig{MaxRecords: 7, Linger: time.Millisecond}},
		SinkSpec{Sink: sink, MaxInFlight: 2})
	testenv.Eventually(t, 10*time.Second, func() bool { return sink.count() == 50 }, "50 even records stored (%d)", sink.count())
	acked := l.metrics.recordsAcked.WithLabelValues("api", "mem")
	rejected := l.metrics.deadLetters.WithLabelValues("api", "mem", "test_reject")
	testenv.Eventually(t, 10*time.Second, func() bool { return counterValue(t, acked) == 50 && counterValue(t, rejected) == 50 },
		"acked %v (want 50, what the sink stored), dead-lettered %v (want 50)", counterValue(t, acked), counterValue(t, rejected))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
