package kafkasink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
)

// Header keys every message carries. Consumers drop repeats (see the
// at-least-once window in the package documentation) by HeaderRecordID.
const (
	HeaderTable    = "ingest.table"     // the table name (schema.Table.Name)
	HeaderRecordID = "ingest.record_id" // loader.Record.RecordID: the id field, or <stream>/<file>/<offset>
	HeaderSource   = "ingest.source"    // where the line was read: <stream>/<file>/<offset>
)

// Sink produces batches to Kafka with one librdkafka producer shared by
// every stream. It implements [loader.Sink]; create it with [New] and stop
// it with [Sink.Close]. All methods are safe for concurrent use.
type Sink struct {
	cfg *validated
	log *slog.Logger

	// ctx is for work the sink does on its own after Submit returned
	// (dead letters of records the broker refused); Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	gen     *generation
	genc    chan struct{} // closed and replaced when gen is replaced
	closed  bool
	closing chan struct{} // closed when Close starts
	genSeq  atomic.Uint64

	rebuildc chan struct{} // buffered 1: a generation died
	supDone  chan struct{} // closed when the supervisor returned
	retiring sync.WaitGroup

	topicsMu sync.Mutex
	known    map[string]bool        // topics seen to exist
	limits   map[string]int         // topics' max.message.bytes, where known
	configs  map[string]TopicConfig // topics' configs, where read
	batchCap int                    // batch.size bound learnt from refused batches

	noController atomic.Bool // the brokers name no controller: topic limits are not read

	streamsMu     sync.Mutex
	queuesClosed  bool // Close failed the queued batches: refuse more
	streams       map[string]*stream
	dirty         []*stream // streams with finished batches to ack
	readyc        chan struct{}
	stopCompleter chan struct{}
	completerDone chan struct{}
	work          chan job      // Submit to produceLoop
	producerDone  chan struct{} // closed when produceLoop returned

	closeOnce sync.Once
	closeDone chan struct{}
	closeErr  error

	delivered, rejected, rebuilds atomic.Int64
}

var _ loader.Sink = (*Sink)(nil)

// New validates cfg, creates the producer and checks that every topic in
// cfg.Topics exists ([Sink.CheckTopics]); with cfg.CreateTopics it creates
// the missing ones instead. ctx bounds the topic check (librdkafka's
// metadata call cannot be cancelled, so it gets ctx's deadline, or 10s).
//
// Errors: *[ConfigError]s (joined) for bad fields, *[MissingTopicError] for
// missing topics, otherwise librdkafka's error (e.g. no broker reachable).
func New(ctx context.Context, cfg Config) (*Sink, error) {
	v, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	for _, w := range v.warnings {
		v.Logger.Warn("kafkasink: property weakens delivery guarantees", "name", v.Name, "warning", w)
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Sink{
		cfg:           v,
		log:           v.Logger.With("sink", v.Name),
		ctx:           sctx,
		cancel:        cancel,
		genc:          make(chan struct{}),
		closing:       make(chan struct{}),
		rebuildc:      make(chan struct{}, 1),
		supDone:       make(chan struct{}),
		known:         make(map[string]bool),
		limits:        make(map[string]int),
		configs:       make(map[string]TopicConfig),
		batchCap:      v.batchSize,
		streams:       make(map[string]*stream),
		readyc:        make(chan struct{}, 1),
		stopCompleter: make(chan struct{}),
		completerDone: make(chan struct{}),
		work:          make(chan job, 64),
		producerDone:  make(chan struct{}),
		closeDone:     make(chan struct{}),
	}
	g, err := s.newGeneration()
	if err != nil {
		cancel()
		return nil, err
	}
	s.gen = g
	go s.supervise()
	go s.complete()
	go s.produceLoop()
	fail := func(err error) (*Sink, error) {
		// Close is quick here: nothing was produced.
		cctx, ccancel := context.WithTimeout(context.Background(), v.ShutdownTimeout)
		defer ccancel()
		if cerr := s.Close(cctx); cerr != nil {
			s.log.Warn("kafkasink: close after failed start", "err", cerr)
		}
		return nil, err
	}
	if err := s.checkTopics(ctx, v.Topics); err != nil {
		return fail(err)
	}
	// The topic check learnt the topics' limits: a producer made for
	// larger batches is replaced before anything is produced on it.
	if want := s.wantBatchSize(); want < g.batchSize {
		ng, err := s.newGeneration()
		if err != nil {
			return fail(err)
		}
		s.mu.Lock()
		s.gen = ng
		s.mu.Unlock()
		s.retire(g)
	}
	s.log.Info("kafkasink: producer started", "brokers", v.Brokers, "topics", v.Topics, "batch_size", s.wantBatchSize())
	return s, nil
}

// Name is the sink's name (Config.Name), used for checkpoints and metrics.
func (s *Sink) Name() string { return s.cfg.Name }

// Stats are counters since New, for metrics.
type Stats struct {
	Delivered int64 // messages with a successful delivery report
	Rejected  int64 // records dead-lettered: too large, or an event time the topic deletes soon or refuses (never counted as delivered)
	Rebuilds  int64 // producers replaced after a fatal error or a batch refused as too large
}

// Stats returns the sink's counters.
func (s *Sink) Stats() Stats {
	return Stats{Delivered: s.delivered.Load(), Rejected: s.rejected.Load(), Rebuilds: s.rebuilds.Load()}
}

// Submit produces every record of b and returns without waiting for
// delivery. ack is called exactly once, from a goroutine of the sink, with
// nil when every message of the batch has a successful delivery report
// (acks=all) or was dead-lettered, or with an error when the
// batch will not be delivered and must be replayed from the checkpoint. The
// acks of one stream come in Submit order, and once a batch's epoch is
// failed by an earlier batch's failed ack ([loader.Batch.Err]) the batch
// fails too: the loader can save b.End on each nil ack.
//
// Message: topic Table.Topic, key Record.Key, value Record.Row, timestamp
// Record.Time (when set), headers [HeaderTable], [HeaderRecordID],
// [HeaderSource].
//
// Submit queues the batch for the sink's producer goroutine and returns. It
// blocks only when 64 batches are already queued (backpressure for callers
// that do not bound their batches in flight, as the loader does) and, the
// first time a topic is met, to check that it exists. The producer
// goroutine waits while librdkafka's queue is full; if ctx ends meanwhile,
// the batch fails with ctx's error. A record larger than the producer's
// message.max.bytes is dead-lettered through b.Reject with reason
// "too_large" and left out, and so is a record whose event time its
// topic's retention would delete within Config.RetentionMargin (reason
// "retention") or the topic refuses (reason "timestamp_refused"; see
// [TopicConfig.CheckTime]). An error return means the same as a failed
// ack, and ack is then never called: ctx ended, the sink is closed, a
// topic is missing, or an earlier batch of the epoch failed
// ([ErrEarlierBatchFailed]). ack may run before Submit returns.
func (s *Sink) Submit(ctx context.Context, b *loader.Batch, ack func(error)) error {
	if b == nil || ack == nil {
		return errors.New("kafkasink: Submit needs a batch and an ack function")
	}
	select {
	case <-s.closing:
		return ErrClosed
	default:
	}
	st, err := s.admit(b)
	if err != nil {
		return err
	}
	if err := s.ensureTopics(ctx, b); err != nil {
		return err
	}

	t := &tracker{s: s, b: b, ack: ack, stream: st, donec: make(chan struct{})}
	t.pending.Store(1) // the producer's hold, released when all is produced
	if !s.enqueue(t) {
		return ErrClosed
	}
	select {
	case s.work <- job{ctx: ctx, t: t}:
		return nil
	case <-s.closing:
		// Queued for its stream: Close fails it, and ack reports that.
		return nil
	case <-ctx.Done():
		return t.abort(fmt.Errorf("kafkasink: stream %s batch %d: %w", b.Stream, b.Seq, ctx.Err()))
	}
}

// job is a submitted batch waiting for the producer goroutine.
type job struct {
	ctx context.Context
	t   *tracker
}

// produceLoop is the goroutine, owned by the Sink and stopped by Close,
// that hands submitted batches to the Producer in Submit order. Producing
// costs a cgo call, copies and a few allocations per message; doing
// it here rather than in Submit lets the loader decode the next batch
// meanwhile, on another core.
func (s *Sink) produceLoop() {
	defer close(s.producerDone)
	for {
		select {
		case j := <-s.work:
			if !j.t.startSending() {
				continue // failed before it was sent: nothing to do
			}
			err := j.t.b.Err() // an earlier batch failed while this one was queued
			if err == nil {
				err = s.send(j.ctx, j.t)
			}
			j.t.stopSending()
			if err != nil {
				j.t.finish(err, false)
			}
		case <-s.closing:
			return
		}
	}
}

// send produces every record of t's batch on the live generation. An
// error means t failed (it may have failed already, e.g. killed with its
// generation); the caller finishes it.
func (s *Sink) send(ctx context.Context, t *tracker) error {
	b := t.b
	var (
		g   *generation
		err error
	)
	for {
		g, err = s.current(ctx)
		if err != nil {
			return err
		}
		g.use.RLock()
		if g.add(t) {
			break
		}
		g.use.RUnlock() // died meanwhile: wait for its successor
	}
	defer g.use.RUnlock()

	// One Message, reused: Produce copies key, value and headers into
	// librdkafka and keeps only the Opaque, which points into refs.
	var (
		table  *schema.Table
		topic  string
		tc     *TopicConfig // table's topic config, nil when not read
		stream = b.Stream
		dead   sendRejects
		refs   = make([]msgRef, len(b.Records))
		hdrs   [3]kafka.Header
		src    []byte
		now    time.Time
		msg    = kafka.Message{Headers: hdrs[:]}
	)
	hdrs[0].Key, hdrs[1].Key, hdrs[2].Key = HeaderTable, HeaderRecordID, HeaderSource
	defer dead.warn(s.log, b)
	for i := range b.Records {
		if i%produceChunk == 0 {
			if i > 0 && t.finished() {
				// Failed meanwhile (a delivery failure, fatal error or
				// Close): ack reports it; producing the rest would only
				// add messages the replay writes again.
				return nil
			}
			if err := b.Err(); err != nil {
				return err // void: an earlier batch failed, the replay sends it
			}
			// Per chunk: send can wait for queue space through an outage.
			now = time.Now()
		}
		r := &b.Records[i]
		if table != r.Table {
			table = r.Table
			topic = table.Topic
			msg.TopicPartition = kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny}
			hdrs[0].Value = bytesOf(table.Name)
			tc = s.topicConfig(table.Topic)
		}
		msg.Timestamp = time.Time{}
		if r.Time.UnixMilli() > 0 {
			msg.Timestamp = r.Time
			// Produced, the record would be deleted soon after it
			// arrives, or refused (which would fail the batch for
			// good and stall the stream): it goes to the dead
			// letters instead, like a record too large.
			if lim := tc.CheckTime(r.Time, now, s.cfg.RetentionMargin); lim != nil {
				reason, d := lim.reason(), lim.detail(table.Topic, r.Time, s.cfg.Brokers)
				if rerr := b.Reject(ctx, i, reason, d); rerr != nil {
					return fmt.Errorf("kafkasink: stream %s batch %d: dead-letter record at %s: %w", b.Stream, b.Seq, r.Pos, rerr)
				}
				s.rejected.Add(1)
				dead.add(reason, d)
				continue
			}
		}
		refs[i] = msgRef{t: t, i: i}
		msg.Opaque = &refs[i]
		msg.Key = bytesOf(r.Key)
		msg.Value = r.Row
		if msg.Value == nil {
			msg.Value = []byte{} // an empty row, not a tombstone
		}
		hdrs[1].Value = bytesOf(r.RecordID)
		src = append(append(append(append(src[:0], stream...), '/'), r.Pos.File...), '/')
		hdrs[2].Value = strconv.AppendInt(src, r.Pos.Offset, 10)
		// Counted before producing: a delivery report may come back
		// before Produce returns.
		t.pending.Add(1)
		err := s.produce(ctx, g, t, &msg)
		if err == nil {
			continue
		}
		t.pending.Add(-1) // record i is not in librdkafka
		switch code(err) {
		case kafka.ErrMsgSizeTooLarge:
			d := fmt.Sprintf("message of %d bytes (key %d, value %d, plus headers) exceeds the producer's message.max.bytes=%d",
				len(r.Key)+len(r.Row), len(r.Key), len(r.Row), s.cfg.messageMaxBytes)
			if rerr := b.Reject(ctx, i, reasonTooLarge, d); rerr != nil {
				return fmt.Errorf("kafkasink: stream %s batch %d: dead-letter record at %s: %w", b.Stream, b.Seq, r.Pos, rerr)
			}
			s.rejected.Add(1)
			dead.add(reasonTooLarge, d)
		case kafka.ErrFatal:
			// The fatal event also reaches drain; whoever is first
			// kills the generation, which fails t (and ack reports it).
			ferr := fmt.Errorf("%w: %w", ErrFatal, err)
			g.kill(ferr)
			s.requestRebuild()
			return ferr
		default:
			return fmt.Errorf("kafkasink: stream %s batch %d: produce record at %s: %w", b.Stream, b.Seq, r.Pos, err)
		}
	}
	if t.finished() {
		return nil
	}
	t.release()
	return nil
}

// bytesOf is s's memory as a byte slice, for Produce, which copies it into
// librdkafka and writes nothing. An empty string gives an empty, non-nil
// slice: an empty key or header, not a missing one.
func bytesOf(s string) []byte {
	if s == "" {
		return []byte{}
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// sendRejects counts the records one send dead-lettered, per reason: the
// batch logs one WARN per reason with the count and the first detail.
type sendRejects struct {
	reasons []string // in the order first met
	count   map[string]int
	first   map[string]string
}

func (d *sendRejects) add(reason, detail string) {
	if d.count == nil {
		d.count, d.first = map[string]int{}, map[string]string{}
	}
	if d.count[reason] == 0 {
		d.reasons = append(d.reasons, reason)
		d.first[reason] = detail
	}
	d.count[reason]++
}

// rejectMessages are the WARN messages per dead-letter reason of send.
var rejectMessages = map[string]string{
	reasonTooLarge:  "kafkasink: records dead-lettered: larger than the producer's message.max.bytes",
	reasonRetention: "kafkasink: records dead-lettered: the topic's retention would delete them (event time older than retention.ms less the margin)",
	reasonTimestamp: "kafkasink: records dead-lettered: the topic refuses their timestamp (message.timestamp.before.max.ms or after.max.ms)",
}

func (d *sendRejects) warn(log *slog.Logger, b *loader.Batch) {
	for _, r := range d.reasons {
		log.Warn(rejectMessages[r], "stream", b.Stream, "batch", b.Seq, "count", d.count[r], "reason", r, "detail", d.first[r])
	}
}

// produceChunk is how many messages send produces between looks at
// whether the batch failed meanwhile and at the clock (the retention
// check's now).
const produceChunk = 256

// produce hands msg to librdkafka, waiting for room while its queue is full
// (queue.buffering.max.messages/kbytes: the memory bound during an
// outage). An error says why it did not go in.
func (s *Sink) produce(ctx context.Context, g *generation, t *tracker, msg *kafka.Message) error {
	err := g.p.Produce(msg, g.dr)
	for code(err) == kafka.ErrQueueFull {
		// Register as a waiter before retrying, so that a delivery report
		// landing between the retry and the wait still wakes us.
		space, done := g.spaceChan()
		if err = g.p.Produce(msg, g.dr); code(err) == kafka.ErrQueueFull {
			select {
			case <-space: // a delivery report freed room: retry
			case <-g.deadc:
				err = errors.New("kafkasink: waiting for queue space: producer stopped")
			case <-t.donec:
				// Failed meanwhile; its ack waits for this send to stop.
				err = errors.New("kafkasink: waiting for queue space: batch failed")
			case <-s.closing:
				err = fmt.Errorf("kafkasink: waiting for queue space: %w", ErrClosed)
			case <-ctx.Done():
				err = fmt.Errorf("kafkasink: waiting for queue space: %w", ctx.Err())
			}
		}
		done()
	}
	return err
}

// current returns the live generation, waiting while a dead one is being
// replaced.
func (s *Sink) current(ctx context.Context) (*generation, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		g, ch := s.gen, s.genc
		s.mu.Unlock()
		if !g.isDead() {
			return g, nil
		}
		select {
		case <-ch:
		case <-s.closing:
		case <-ctx.Done():
			return nil, fmt.Errorf("kafkasink: waiting for the producer to be rebuilt: %w", ctx.Err())
		}
	}
}

// requestRebuild wakes the supervisor; a pending request covers this one,
// because the supervisor rebuilds whenever the current generation is dead.
func (s *Sink) requestRebuild() {
	select {
	case s.rebuildc <- struct{}{}:
	default:
	}
}

// supervise is the goroutine, owned by the Sink and stopped by Close, that
// re-reads the topics' configs every configRefreshEvery and replaces a
// producer after a fatal error. By then kill has failed every
// batch in flight on it, so the loader replays them from its checkpoint on
// the new producer.
func (s *Sink) supervise() {
	defer close(s.supDone)
	backoff := 100 * time.Millisecond
	refresh := time.NewTicker(configRefreshEvery)
	defer refresh.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-refresh.C:
			s.refreshConfigs()
			continue
		case <-s.rebuildc:
		}
		for {
			s.mu.Lock()
			old := s.gen
			s.mu.Unlock()
			if !old.isDead() {
				break
			}
			if errors.Is(old.deathCause(), errBatchRefused) {
				// A refusal forgot its topic's limit: read it again, but
				// not past the start of Close, which waits for us.
				ctx, cancel := context.WithCancel(s.ctx)
				stop := afterClose(s.closing, cancel)
				s.learnLimits(ctx, s.knownTopics(), false)
				stop()
				cancel()
			}
			g, err := s.newGeneration()
			if err != nil {
				// Same configuration as the first producer, so this is a
				// resource problem (memory, threads): retry with backoff.
				s.log.Error("kafkasink: rebuild producer", "err", err, "retry_in", backoff)
				select {
				case <-s.closing:
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 10*time.Second)
				continue
			}
			backoff = 100 * time.Millisecond
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				s.retire(g)
				return
			}
			s.gen = g
			close(s.genc)
			s.genc = make(chan struct{})
			s.mu.Unlock()
			s.rebuilds.Add(1)
			s.log.Warn("kafkasink: producer rebuilt", "old", old.id, "new", g.id, "batch_size", g.batchSize, "why", old.deathCause())
			s.retire(old)
		}
	}
}

// Close stops the sink within a bounded time: min(Config.ShutdownTimeout,
// ctx's deadline), and at once if ctx is cancelled.
//
// librdkafka's Close does not flush, so Close first waits (for most of that
// time) for the batches in flight to be delivered and acked; the loader
// normally waits for its acks before calling Close, and this covers the
// rest. Batches still undelivered then fail with [ErrClosed] (their
// checkpoint stays where it is; the messages may still have reached the
// broker, which is the at-least-once window). Then it purges and closes the
// producer and stops the sink's goroutines. Every ack has been called when
// Close returns nil. An error means something (librdkafka's shutdown, or an
// ack callback) did not finish in time and was left running.
//
// Submit after Close returns ErrClosed. Close is idempotent.
func (s *Sink) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.closeErr = s.close(ctx)
		close(s.closeDone)
	})
	if !waitClosed(ctx, s.closeDone) {
		return fmt.Errorf("kafkasink: close: %w", ctx.Err())
	}
	return s.closeErr
}

func (s *Sink) close(ctx context.Context) error {
	start := time.Now()
	deadline := start.Add(s.cfg.ShutdownTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	hard, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	// Delivery gets the time up to the deadline less a reserve for the
	// teardown, so that failing the rest and closing librdkafka still fit.
	reserve := min(time.Second, time.Until(deadline)/4)
	flush, cancelFlush := context.WithDeadline(hard, deadline.Add(-reserve))
	defer cancelFlush()

	s.mu.Lock()
	s.closed = true
	close(s.closing)
	s.mu.Unlock()

	// The supervisor returns promptly once closing is closed (a rebuild in
	// progress retires the producer it made), so s.gen is final after it.
	if !waitClosed(hard, s.supDone) {
		return fmt.Errorf("kafkasink: close: supervisor did not stop: %w", hard.Err())
	}
	// The producer goroutine returns once closing is closed, leaving the
	// batches it had not taken to failQueued.
	if !waitClosed(hard, s.producerDone) {
		return fmt.Errorf("kafkasink: close: producer goroutine did not stop: %w", hard.Err())
	}
	s.mu.Lock()
	g := s.gen
	s.mu.Unlock()

	if err := g.waitIdle(flush); err != nil {
		s.log.Warn("kafkasink: batches not delivered before shutdown; their checkpoint stays", "wait", time.Since(start))
	}
	notDelivered := fmt.Errorf("kafkasink: not delivered before shutdown: %w", ErrClosed)
	g.kill(notDelivered)
	s.failQueued(notDelivered)
	s.retire(g)

	var errs []error
	if !waitFor(hard, s.retiring.Wait) {
		errs = append(errs, errors.New("librdkafka did not shut down in time; left running"))
	}
	// Every batch has finished (kill), so the completer's last pass acks
	// all that are left. Dead letters it writes get what is left of the
	// deadline.
	stop := context.AfterFunc(hard, s.cancel)
	defer stop()
	close(s.stopCompleter)
	if !waitClosed(hard, s.completerDone) {
		errs = append(errs, errors.New("acks still running (a slow ack callback or dead letter)"))
	}
	s.cancel()
	if len(errs) > 0 {
		return fmt.Errorf("kafkasink: close gave up after %s: %w: %w", time.Since(start).Round(time.Millisecond), errors.Join(errs...), hard.Err())
	}
	s.log.Info("kafkasink: closed", "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// afterClose calls f when closing is closed, unless stop was called first.
func afterClose(closing <-chan struct{}, f func()) (stop func()) {
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case <-closing:
			f()
		case <-done:
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}

// waitFor runs wait (a WaitGroup's Wait) and reports whether it returned
// before ctx ended. If not, the helper goroutine stays until wait returns:
// librdkafka's destroy cannot be interrupted, and Close must not hang.
func waitFor(ctx context.Context, wait func()) bool {
	done := make(chan struct{})
	go func() {
		wait()
		close(done)
	}()
	return waitClosed(ctx, done)
}

// waitClosed waits until done is closed and reports whether that came
// before ctx ended: Close and the waits bounded by a caller's ctx give up
// on a goroutine at the deadline instead of hanging with it.
func waitClosed(ctx context.Context, done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}
