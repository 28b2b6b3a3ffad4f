package kafkasink

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/dualwrite/ingest/loader"
)

// tracker follows one submitted batch from Submit to its ack.
//
// pending counts the batch's messages still without a delivery report, plus
// one held by Submit while it is still producing, so that reports arriving
// before Submit has produced the last message cannot complete the batch
// early. The batch completes when pending reaches zero (every message
// delivered or rejected as too large), or earlier on the first failure.
type tracker struct {
	s      *Sink
	b      *loader.Batch
	ack    func(error)
	stream *stream

	pending atomic.Int64

	mu    sync.Mutex
	gen   *generation // set once produced on one
	id    uint32      // its id on gen: the high half of its messages' opaques
	done  bool
	donec chan struct{} // closed when done is set
	err   error
	// sending is set while the producer goroutine reads the batch's
	// records. The loader reuses their memory once ack has been called,
	// and a batch can fail (its producer killed, a delivery failure)
	// while they are still being read, so the completer waits for
	// sending to clear (sent) before it calls ack.
	sending  bool
	sent     chan struct{}
	silent   bool      // Submit returned err itself: never call ack
	tooLarge []refusal // records the broker refused as too large, dead-lettered before ack
}

// release drops one pending count; the last one completes the batch.
func (t *tracker) release() {
	if t.pending.Add(-1) == 0 {
		t.finish(nil, false)
	}
}

// refusal is a record the broker refused as too large on its own.
type refusal struct {
	record int             // index in the batch
	code   kafka.ErrorCode // the broker's error
	msg    string          // the broker's error message (or librdkafka's)
}

// rejectLater notes that the broker refused a record as too large; it is
// dead-lettered when the batch completes.
func (t *tracker) rejectLater(r refusal) {
	t.mu.Lock()
	t.tooLarge = append(t.tooLarge, r)
	t.mu.Unlock()
	t.release()
}

// startSending marks the batch as being read by the producer goroutine;
// false means it has finished already and must not be sent.
func (t *tracker) startSending() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return false
	}
	t.sending = true
	return true
}

// stopSending says the producer goroutine no longer reads the batch.
func (t *tracker) stopSending() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sending = false
	if t.sent != nil {
		close(t.sent)
		t.sent = nil
	}
}

// waitSent waits until the producer goroutine no longer reads the batch.
// It is prompt: a finished batch makes send stop at its next chunk, or at
// once when it waits for queue space.
func (t *tracker) waitSent() {
	t.mu.Lock()
	if !t.sending {
		t.mu.Unlock()
		return
	}
	if t.sent == nil {
		t.sent = make(chan struct{})
	}
	ch := t.sent
	t.mu.Unlock()
	<-ch
}

// finished reports whether the batch has completed or failed.
func (t *tracker) finished() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.done
}

// finish completes the batch once: it leaves its generation and goes to
// the completer, which acks it in stream order. silent marks a failure that
// Submit reports itself. It returns false when the batch had already
// finished (a delivery failure, a fatal error or Close got there first).
func (t *tracker) finish(err error, silent bool) bool {
	t.mu.Lock()
	if t.done {
		t.mu.Unlock()
		return false
	}
	t.done, t.err, t.silent = true, err, silent
	close(t.donec)
	g := t.gen
	t.mu.Unlock()
	if g != nil {
		g.remove(t)
	}
	t.s.finished(t)
	return true
}

// abort fails the batch from inside Submit and returns what Submit must
// return: err when the batch was still open (ack will not be called), nil
// when someone else already failed or completed it (ack will be called).
func (t *tracker) abort(err error) error {
	if t.finish(err, true) {
		return err
	}
	return nil
}

// stream is the sink's view of one loader stream: its batches not yet
// acked, in Submit order, so that acks go out in that order. Whether a
// batch is still wanted after an earlier one failed is the batch's
// epoch's to say ([loader.Batch.Err]), not the stream's.
type stream struct {
	name  string
	queue []*tracker
	dirty bool // queued in Sink.dirty
}

// admit starts a batch for its stream, and refuses it when an earlier
// batch of its epoch failed.
func (s *Sink) admit(b *loader.Batch) (*stream, error) {
	if err := b.Err(); err != nil {
		return nil, fmt.Errorf("kafkasink: stream %s batch %d: %w", b.Stream, b.Seq, err)
	}
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	st := s.streams[b.Stream]
	if st == nil {
		st = &stream{name: b.Stream}
		s.streams[b.Stream] = st
	}
	return st, nil
}

// enqueue appends t to its stream's queue.
// It refuses once Close has failed the queued batches (failQueued).
func (s *Sink) enqueue(t *tracker) bool {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	if s.queuesClosed {
		return false
	}
	t.stream.queue = append(t.stream.queue, t)
	return true
}

// failQueued fails every batch not finished yet, for Close: those the
// producer goroutine never took, and any still waiting for reports. After
// it no batch is queued any more.
func (s *Sink) failQueued(err error) {
	s.streamsMu.Lock()
	s.queuesClosed = true
	var open []*tracker
	for _, st := range s.streams {
		open = append(open, st.queue...)
	}
	s.streamsMu.Unlock()
	for _, t := range open {
		t.finish(err, false)
	}
}

// finished hands a finished batch to the completer.
func (s *Sink) finished(t *tracker) {
	s.streamsMu.Lock()
	if !t.stream.dirty {
		t.stream.dirty = true
		s.dirty = append(s.dirty, t.stream)
	}
	s.streamsMu.Unlock()
	select {
	case s.readyc <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// complete is the completer goroutine, owned by the Sink and stopped by
// Close after every batch has finished. It calls the loader's ack (and
// writes dead letters) off the delivery-report goroutine, so a slow or
// blocking ack can never stall delivery reports, and acks each stream's
// batches in Submit order.
func (s *Sink) complete() {
	defer close(s.completerDone)
	for {
		select {
		case <-s.readyc:
			s.deliverReady()
		case <-s.stopCompleter:
			s.deliverReady()
			return
		}
	}
}

// deliverReady acks, per stream, the finished batches at the head of the
// queue.
func (s *Sink) deliverReady() {
	s.streamsMu.Lock()
	var out []*tracker
	for _, st := range s.dirty {
		st.dirty = false
		n := 0
		for n < len(st.queue) && st.queue[n].finished() {
			n++
		}
		out = append(out, st.queue[:n]...)
		st.queue = append(st.queue[:0:0], st.queue[n:]...)
	}
	s.dirty = s.dirty[:0]
	s.streamsMu.Unlock()

	for _, t := range out {
		t.waitSent()
		// A failed ack fails its epoch before it returns (the loader's
		// ack does), so the later batches of the stream, acked after it
		// here, read as void in result.
		err := s.result(t)
		t.mu.Lock()
		silent := t.silent
		t.mu.Unlock()
		if !silent {
			t.ack(err)
		}
	}
}

// result is the batch's final outcome. For a delivered batch it first
// dead-letters the records the broker refused as too large.
func (s *Sink) result(t *tracker) error {
	t.mu.Lock()
	err, silent, tooLarge := t.err, t.silent, t.tooLarge
	t.mu.Unlock()
	if silent {
		return err
	}
	if err != nil {
		return fmt.Errorf("stream %s batch %d (%s..%s): %w", t.b.Stream, t.b.Seq, t.b.Start, t.b.End, err)
	}
	if err := t.b.Err(); err != nil {
		// Delivered, but the loader replays it after the rewind: only an
		// error ack keeps the stream's nil acks a prefix of its batches.
		return fmt.Errorf("stream %s batch %d (%s..%s): %w", t.b.Stream, t.b.Seq, t.b.Start, t.b.End, err)
	}
	var first string
	for n, rf := range tooLarge {
		r := &t.b.Records[rf.record]
		limit := "unknown"
		if l := s.topicLimit(r.Table.Topic); l > 0 {
			limit = strconv.Itoa(l)
		}
		detail := fmt.Sprintf("broker refused the record for topic %s: %s; record %d bytes (key %d, value %d, headers %d), topic max.message.bytes=%s",
			r.Table.Topic, brokerError(rf.code, rf.msg), recordBytes(t.b, r), len(r.Key), len(r.Row), headerBytes(t.b, r), limit)
		if n == 0 {
			first = detail
		}
		if err := t.b.Reject(s.ctx, rf.record, reasonTooLarge, detail); err != nil {
			return fmt.Errorf("stream %s batch %d: dead-letter record at %s: %w", t.b.Stream, t.b.Seq, r.Pos, err)
		}
		s.rejected.Add(1)
	}
	if len(tooLarge) > 0 {
		s.log.Warn("kafkasink: records dead-lettered: the broker refused them as too large",
			"stream", t.b.Stream, "batch", t.b.Seq, "count", len(tooLarge), "reason", reasonTooLarge, "detail", first)
	}
	return nil
}

// reasonTooLarge is the dead-letter reason for a record larger than the
// producer's or the broker's message size limit.
const reasonTooLarge = "too_large"
