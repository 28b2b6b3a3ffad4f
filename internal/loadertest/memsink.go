package loadertest

import (
	"context"
	"slices"
	"sync"

	"github.com/dualwrite/ingest/loader"
)

// MemSink is an in-memory sink: it keeps every record it is given and
// acknowledges each batch at once. It does not own its checkpoint, so the
// loader keeps that in its file store. Tests use it as the loader's other
// sink when the one under test is real.
type MemSink struct {
	name string

	mu   sync.Mutex
	recs []Received
}

// Received is a record as a MemSink got it.
type Received struct {
	Stream string
	Pos    loader.Position
	Key    string
	Row    []byte // a copy: the loader may reuse a batch's memory after the ack
}

// NewMemSink returns an empty sink called name.
func NewMemSink(name string) *MemSink { return &MemSink{name: name} }

// Name implements loader.Sink.
func (s *MemSink) Name() string { return s.name }

// Submit implements loader.Sink: it stores the batch's records, then acks.
func (s *MemSink) Submit(_ context.Context, b *loader.Batch, ack func(error)) error {
	s.mu.Lock()
	for _, r := range b.Records {
		s.recs = append(s.recs, Received{Stream: b.Stream, Pos: r.Pos, Key: r.Key, Row: slices.Clone(r.Row)})
	}
	s.mu.Unlock()
	ack(nil)
	return nil
}

// Count is the number of records received so far.
func (s *MemSink) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.recs)
}

// At returns the i-th record received; ok is false when fewer arrived.
func (s *MemSink) At(i int) (r Received, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i < 0 || i >= len(s.recs) {
		return r, false
	}
	return s.recs[i], true
}

// Records returns every record received so far, in order.
func (s *MemSink) Records() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.recs)
}

// Rejects records what a batch dead-letters: pass its Reject to
// loader.NewBatch in tests that submit batches to a sink directly.
type Rejects struct {
	mu   sync.Mutex
	list []Rejected
}

// Rejected is one record a sink dead-lettered through Batch.Reject.
type Rejected struct {
	Pos            loader.Position
	Reason, Detail string
}

// Reject is a loader.Batch reject function that records the call.
func (d *Rejects) Reject(_ context.Context, r *loader.Record, reason, detail string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.list = append(d.list, Rejected{r.Pos, reason, detail})
	return nil
}

// All returns the rejections so far, in the order they came.
func (d *Rejects) All() []Rejected {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.list)
}

// ByOffset returns the rejections by their record's offset, for batches
// from one file (a later rejection of an offset replaces an earlier one).
func (d *Rejects) ByOffset() map[int64]Rejected {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := make(map[int64]Rejected, len(d.list))
	for _, r := range d.list {
		m[r.Pos.Offset] = r
	}
	return m
}
