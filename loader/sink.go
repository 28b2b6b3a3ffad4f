package loader

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/dualwrite/ingest/schema"
)

// Position is a place in a stream: a file, named by its sealed name (without
// ".open", so the name survives the writer's rename), and the byte offset of
// the first line not yet covered. Lexical order of files is creation order.
type Position struct {
	File   string `json:"file"`
	Offset int64  `json:"offset"`
}

// Before reports whether p comes before q in the stream.
func (p Position) Before(q Position) bool {
	if p.File != q.File {
		return p.File < q.File
	}
	return p.Offset < q.Offset
}

func (p Position) String() string { return fmt.Sprintf("%s:%d", p.File, p.Offset) }

// Record is one valid line routed to a sink.
type Record struct {
	schema.Record
	// RecordID is the stable id consumers deduplicate on: the table's id
	// field when configured, otherwise "<stream>/<file>/<offset>".
	RecordID string
	// Pos is where the line starts.
	Pos Position
	// Line is the whole line as read (without the newline), for dead
	// letters. Row aliases it.
	Line []byte
}

// Batch is a run of consecutive lines of one stream, delivered to one sink.
// Records holds the lines routed to that sink; lines that were dead-lettered
// or routed elsewhere are covered by [Start, End) but absent, so a batch may
// have no records and still move the checkpoint.
type Batch struct {
	Stream  string
	Start   Position // first line covered
	End     Position // the checkpoint once the batch is durable
	Records []Record
	// Seq numbers the batches of one (stream, sink) pipeline from 1 in
	// submit order. It starts again at 1 when the pipeline starts and when
	// it rewinds to its checkpoint after a failure (nothing is in flight
	// then), so a sink can tell a replay from a continuation.
	Seq uint64

	reject   func(ctx context.Context, r *Record, reason, detail string) error
	rejected atomic.Int64 // records dead-lettered by the sink: not counted as acked
	epoch    *Epoch
}

// Reject dead-letters record i, which the sink found it cannot store (e.g.
// a value PostgreSQL refuses, or a message larger than the broker allows).
// It returns once the dead letter is written, and durable where the sink
// keeps its own checkpoint ([CheckpointOwner]); otherwise the loader makes
// it durable before its checkpoint passes the record. The sink must then
// leave the record out and may acknowledge the rest of the batch. reason
// is a short snake_case word used as a metric label.
func (b *Batch) Reject(ctx context.Context, i int, reason, detail string) error {
	if b.reject == nil {
		return fmt.Errorf("loader: batch %d of %s has no dead-letter queue", b.Seq, b.Stream)
	}
	if err := b.reject(ctx, &b.Records[i], reason, detail); err != nil {
		return err
	}
	b.rejected.Add(1)
	return nil
}

// NewBatch builds a batch outside the loader, for sink tests and tools:
// batch 1 of an epoch of its own (see [Batch.InEpoch]). reject may be nil
// when the caller never rejects.
func NewBatch(stream string, start, end Position, records []Record, reject func(ctx context.Context, r *Record, reason, detail string) error) *Batch {
	return &Batch{Stream: stream, Start: start, End: end, Records: records, Seq: 1, reject: reject, epoch: NewEpoch()}
}

// Sink is a destination, defined here by its consumer, the loader. The loader
// calls Submit for one stream from one goroutine, in stream order, possibly
// before earlier batches were acknowledged (up to [SinkOptions.MaxInFlight]).
//
// Submit hands b over and returns; it may block to apply backpressure. Later,
// exactly once, the sink calls ack: with nil when every record is durable
// (or rejected through [Batch.Reject]), or with an error when the batch was
// not delivered and will not be. After a failed ack the loader waits for the
// batches still in flight, then replays the stream from its checkpoint, so a
// sink must retry errors it can retry itself (a broker or database outage)
// and fail only when it needs a fresh start. A failed ack voids the
// batches submitted after it: [Batch.Err] says so, and the sink fails
// those instead of tracking failures between batches itself ([Epoch]). Records and their bytes belong
// to the sink until ack, and only until then: once ack has been called and
// Submit has returned, the loader reuses their memory for later batches,
// so a sink must copy what it keeps (a message queued in a client library
// included).
//
// A Submit error means the same as a failed ack; ack is not called then.
// A batch may have no records: the sink acknowledges it, after recording its
// End if it keeps its own checkpoints.
type Sink interface {
	Name() string
	Submit(ctx context.Context, b *Batch, ack func(error)) error
}

// CheckpointStore keeps, per sink and stream, the position of the first line
// that sink has not durably accepted. Load returns ok=false when there is
// none yet (start at the beginning). Save is called after the batch ending at
// pos was acknowledged.
type CheckpointStore interface {
	Load(ctx context.Context, sink, stream string) (pos Position, ok bool, err error)
	Save(ctx context.Context, sink, stream string, pos Position) error
}

// CheckpointOwner is implemented by a sink that stores its checkpoint itself,
// atomically with its data (the Postgres sink writes Batch.End in the
// transaction that inserts the rows). The loader then reads the position
// from the sink and never writes it. Such a sink must make the batches of a
// stream durable in Submit order, so its checkpoint never moves back.
type CheckpointOwner interface {
	Checkpoint(ctx context.Context, stream string) (pos Position, ok bool, err error)
}
