package kafkasink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// generation is one confluent-kafka-go producer and the batches in flight on it.
// The sink has one live generation at a time; a fatal error kills it (its
// batches fail) and the supervisor replaces it with a fresh one. Keeping
// per-producer state together means a late delivery report from a dead
// producer can only touch batches that already failed, which ignore it.
type generation struct {
	s         *Sink
	id        uint64
	p         *kafka.Producer
	log       *slog.Logger
	batchSize int // the producer's batch.size

	// dr is the delivery channel of every message produced on p: one
	// channel read by one goroutine (drain), so that reports never wait on
	// a batch's own reader.
	dr chan kafka.Event

	// use is held for reading by every Submit producing on p, and for
	// writing by retire before it closes p: librdkafka must not be
	// destroyed while another goroutine is inside Produce.
	use sync.RWMutex

	mu sync.Mutex
	// inflight holds the batches produced on p by tracker id, for kill
	// and waitIdle. Delivery reports do not look here: each message's
	// Opaque points at its batch and index (msgRef).
	inflight map[uint32]*tracker
	lastID   uint32
	dead     error         // why the generation stopped taking batches
	deadc    chan struct{} // closed when dead is set
	idlec    chan struct{} // closed when inflight empties, if someone waits

	// space wakes Submits waiting for room in librdkafka's queue: the drain
	// goroutine closes and replaces it after a delivery report, but only
	// when waiters says someone waits, so the common path costs one atomic
	// load per report.
	spaceMu sync.Mutex
	space   chan struct{}
	waiters atomic.Int32

	stop    chan struct{} // closed by retire: drain returns
	drained chan struct{} // closed when the drain goroutine has returned

	// errLog rate-limits transient producer errors, which librdkafka
	// repeats at every reconnect attempt for as long as an outage lasts.
	// Drain goroutine only.
	errLog map[kafka.ErrorCode]*errLogState
}

type errLogState struct {
	last       time.Time
	suppressed int
}

// errLogEvery is how often one kind of transient producer error is logged.
const errLogEvery = 10 * time.Second

// msgRef is a message's Opaque: its batch and its index there, so that a
// delivery report reaches its batch without a lookup. send allocates them
// per batch, not per message.
type msgRef struct {
	t *tracker
	i int
}

// drChanSize is the delivery channel's capacity: confluent-kafka-go's
// poller hands reports over one by one, and a buffer lets it run ahead of
// drain instead of switching goroutines per report.
const drChanSize = 4096

// goProps are confluent-kafka-go's own properties for the sink's producers.
// Delivery reports carry only what deliver reads (Opaque, TopicPartition
// and its Error): no copy of key, value or headers per report. Errors are
// the only events on the Events channel, hence its small size (the default
// holds a million). Logs come on their own channel, which drain reads.
var goProps = kafka.ConfigMap{
	"go.delivery.report.fields": "none",
	"go.events.channel.size":    1000,
	"go.produce.channel.size":   1, // the produce channel is not used
	"go.logs.channel.enable":    true,
}

// newGeneration creates a producer and starts its drain goroutine, which
// the generation owns: it ends when retire stops it.
func (s *Sink) newGeneration() (*generation, error) {
	batchSize := s.wantBatchSize()
	conf := maps.Clone(goProps)
	for k, v := range s.cfg.conf {
		conf[k] = v
	}
	conf["batch.size"] = strconv.Itoa(batchSize)
	p, err := kafka.NewProducer(&conf)
	if err != nil {
		// librdkafka names the offending property in its message.
		return nil, fmt.Errorf("kafkasink: create producer: %w", err)
	}
	id := s.genSeq.Add(1)
	g := &generation{
		s:         s,
		id:        id,
		p:         p,
		batchSize: batchSize,
		log:       s.log.With("producer", id),
		dr:        make(chan kafka.Event, drChanSize),
		inflight:  make(map[uint32]*tracker),
		deadc:     make(chan struct{}),
		space:     make(chan struct{}),
		stop:      make(chan struct{}),
		drained:   make(chan struct{}),
	}
	go g.drain()
	return g, nil
}

// drain serves the producer's delivery reports, errors and log lines until
// retire stops it. It only does bookkeeping, never blocks on anything but
// the producer's channels, and leaves acks to the completer, so a slow ack
// can never hold delivery reports back.
func (g *generation) drain() {
	defer close(g.drained)
	events, logs := g.p.Events(), g.p.Logs()
	for {
		select {
		case ev := <-g.dr:
			g.deliver(ev)
		case ev := <-events:
			g.handle(ev)
		case l := <-logs:
			g.log.Log(context.Background(), logLevel(l.Level), "librdkafka", "tag", l.Tag, "msg", l.Message)
		case <-g.stop:
			return
		}
	}
}

// deliverRun bounds how many reports deliver takes at once before it
// counts them and wakes Submits waiting for queue space.
const deliverRun = 256

// deliver applies a delivery report to its batch, and the reports already
// waiting behind it.
func (g *generation) deliver(ev kafka.Event) {
	delivered := int64(0)
	events := g.p.Events()
	for n := 0; ; n++ {
		// confluent-kafka-go's poller forwards librdkafka's queue in order,
		// errors to Events and reports to dr: an error that came before
		// this report is already waiting there, and is served first (a
		// fatal one fails the batches, so the purged reports after it
		// find them finished).
		for more := true; more; {
			select {
			case e := <-events:
				g.handle(e)
			default:
				more = false
			}
		}
		if m, ok := ev.(*kafka.Message); ok && g.report(m) {
			delivered++
		}
		if n == deliverRun {
			break
		}
		var more bool
		select {
		case ev, more = <-g.dr:
		default:
		}
		if !more {
			break
		}
	}
	g.s.delivered.Add(delivered)
	if g.waiters.Load() > 0 {
		g.wake()
	}
}

// report applies one delivery report and says whether it counts as
// delivered.
func (g *generation) report(m *kafka.Message) bool {
	ref, _ := m.Opaque.(*msgRef)
	if ref == nil {
		return false // not ours: send tags every message
	}
	t := ref.t
	select {
	case <-t.donec:
		return false // its batch already finished (failed): nothing to do
	default:
	}
	if m.TopicPartition.Error == nil {
		t.release()
		return true
	}
	var kerr kafka.Error
	if !errors.As(m.TopicPartition.Error, &kerr) {
		kerr = kafka.NewError(kafka.ErrUnknown, m.TopicPartition.Error.Error(), false)
	}
	switch kerr.Code() {
	case kafka.ErrMsgSizeTooLarge, kafka.ErrRecordListTooLarge:
		g.refused(t, ref.i, kerr)
	default:
		// With message.timeout.ms=0 and idempotence, librdkafka retries
		// everything retriable by itself; what reaches us is permanent
		// (authorization, topic deleted, purged on shutdown, or a
		// timeout the user configured). The loader replays the batch.
		if ferr := g.p.GetFatalError(); ferr != nil {
			// librdkafka purges the queue after raising a fatal error,
			// and those reports can reach drain before the fatal event
			// does (separate channels): the batch fails with the cause.
			g.kill(fmt.Errorf("%w: %w", ErrFatal, ferr))
			g.s.requestRebuild()
			return false
		}
		topic := ""
		if m.TopicPartition.Topic != nil {
			topic = *m.TopicPartition.Topic
		}
		t.finish(&deliveryError{topic: topic, partition: m.TopicPartition.Partition, record: ref.i, err: kerr}, false)
	}
	return false
}

// handle serves an event of the producer's Events channel: errors (the
// delivery reports go to g.dr, logs to the Logs channel).
func (g *generation) handle(ev kafka.Event) {
	kerr, ok := ev.(kafka.Error)
	if !ok {
		g.log.Debug("kafkasink: producer event ignored", "event", ev)
		return
	}
	if kerr.IsFatal() {
		g.log.Error("kafkasink: fatal producer error: failing the batches in flight and rebuilding the producer", "err", kerr)
		g.kill(fmt.Errorf("%w: %w", ErrFatal, kerr))
		g.s.requestRebuild()
		return
	}
	// Transport errors, all brokers down, and the like: librdkafka keeps
	// retrying, and undelivered messages wait (no timeout).
	g.logTransient(kerr)
}

// logTransient logs a transient producer error at most once per
// errLogEvery per error code, with how many were suppressed since.
func (g *generation) logTransient(ev kafka.Error) {
	if g.errLog == nil {
		g.errLog = map[kafka.ErrorCode]*errLogState{}
	}
	st := g.errLog[ev.Code()]
	if st == nil {
		st = &errLogState{}
		g.errLog[ev.Code()] = st
	}
	if now := time.Now(); now.Sub(st.last) >= errLogEvery {
		g.log.Warn("kafkasink: producer error (retrying)", "err", ev, "code", ev.Code(), "suppressed", st.suppressed)
		st.last, st.suppressed = now, 0
		return
	}
	st.suppressed++
}

// logLevel maps librdkafka's syslog levels to slog levels. Level 3 (err)
// lines are connection failures that also arrive as error events, which
// handle logs as warnings, so they are demoted to keep outages readable;
// notices and info (connects, disconnects) are debug detail.
func logLevel(syslog int) slog.Level {
	switch {
	case syslog <= 2:
		return slog.LevelError
	case syslog == 3:
		return slog.LevelInfo
	case syslog == 4:
		return slog.LevelWarn
	default:
		return slog.LevelDebug
	}
}

// add registers t on g under a fresh id. It fails when g is dead, and the
// caller moves on to the next generation.
func (g *generation) add(t *tracker) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.dead != nil {
		return false
	}
	// Ids wrap after 2^32 batches; one still in flight by then is
	// skipped.
	for {
		g.lastID++
		if _, busy := g.inflight[g.lastID]; g.lastID != 0 && !busy {
			break
		}
	}
	g.inflight[g.lastID] = t
	t.mu.Lock()
	t.gen, t.id = g, g.lastID
	t.mu.Unlock()
	return true
}

func (g *generation) remove(t *tracker) {
	g.mu.Lock()
	if g.inflight[t.id] == t {
		delete(g.inflight, t.id)
	}
	if len(g.inflight) == 0 && g.idlec != nil {
		close(g.idlec)
		g.idlec = nil
	}
	g.mu.Unlock()
}

// refused handles a record the broker refused as too large. The broker
// judges whole record batches, so this says that the record's batch was
// too large, not necessarily the record:
//
//   - a record larger than the producer's batch.size went in a batch by
//     itself, so the record alone is too large for the topic: it is
//     dead-lettered with the broker's error, and the rest of its batch
//     goes on (librdkafka's idempotent producer carries on after a
//     refused batch);
//   - otherwise other records were refused with it, records that may fit
//     the topic. Retrying them on this producer would build the same
//     batches, so the sink fails every batch in flight on it (the loader
//     replays them from its checkpoint, as after a fatal error) and builds
//     a producer with batch.size at most half this one's and within the
//     topic's limit, read again. That happens when a topic's limit is
//     lowered while the sink runs, or could not be read. It converges:
//     once batch.size is below the record, the record travels alone.
func (g *generation) refused(t *tracker, i int, kerr kafka.Error) {
	// The batch may have failed since its reports were looked up (an
	// earlier refusal in this run killed g): then the loader may own its
	// records again. Holding t.mu while reading keeps it from finishing.
	t.mu.Lock()
	if t.done {
		t.mu.Unlock()
		return
	}
	rec := &t.b.Records[i]
	alone := recordBytes(t.b, rec) > g.batchSize
	topic := rec.Table.Topic
	t.mu.Unlock()
	if alone || g.batchSize <= minBatchSize {
		t.rejectLater(refusal{record: i, code: kerr.Code(), msg: kerr.Error()})
		return
	}
	s := g.s
	s.topicsMu.Lock()
	s.batchCap = min(s.batchCap, max(g.batchSize/2, minBatchSize))
	delete(s.limits, topic) // read again before the next producer is built
	s.topicsMu.Unlock()
	err := fmt.Errorf("kafkasink: the broker refused a record batch of topic %s with batch.size %d: %s: %w",
		topic, g.batchSize, brokerError(kerr.Code(), kerr.Error()), errBatchRefused)
	g.log.Warn("kafkasink: batch refused as too large; rebuilding the producer with smaller batches and replaying",
		"topic", topic, "batch_size", g.batchSize, "err", brokerError(kerr.Code(), kerr.Error()))
	g.kill(err)
	s.requestRebuild()
}

// errBatchRefused fails the batches in flight on a producer whose record
// batches a broker refused as too large (generation.refused).
var errBatchRefused = errors.New("kafkasink: producer rebuilt with smaller batches")

// deathCause is why g stopped taking batches (nil while it is live).
func (g *generation) deathCause() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.dead
}

// isDead reports whether g stopped taking batches.
func (g *generation) isDead() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.dead != nil
}

// kill stops g taking batches and fails those in flight with err. Their
// messages may still be delivered (they are in librdkafka's queue or on
// the wire): that is the at-least-once window, and the loader's replay
// writes them again.
func (g *generation) kill(err error) {
	g.mu.Lock()
	if g.dead != nil {
		g.mu.Unlock()
		return
	}
	g.dead = err
	close(g.deadc)
	victims := make([]*tracker, 0, len(g.inflight))
	for _, t := range g.inflight {
		victims = append(victims, t)
	}
	g.mu.Unlock()
	// finish takes g.mu again (remove), so it runs outside the lock.
	for _, t := range victims {
		t.finish(err, false)
	}
}

// waitIdle waits until no batch is in flight on g, or ctx ends.
func (g *generation) waitIdle(ctx context.Context) error {
	g.mu.Lock()
	if len(g.inflight) == 0 {
		g.mu.Unlock()
		return nil
	}
	if g.idlec == nil {
		g.idlec = make(chan struct{})
	}
	ch := g.idlec
	g.mu.Unlock()
	if !waitClosed(ctx, ch) {
		return ctx.Err()
	}
	return nil
}

// spaceChan registers the caller as waiting for queue space and returns the
// channel the next delivery report closes. Call done() when finished.
func (g *generation) spaceChan() (ch <-chan struct{}, done func()) {
	g.waiters.Add(1)
	g.spaceMu.Lock()
	ch = g.space
	g.spaceMu.Unlock()
	return ch, func() { g.waiters.Add(-1) }
}

func (g *generation) wake() {
	g.spaceMu.Lock()
	close(g.space)
	g.space = make(chan struct{})
	g.spaceMu.Unlock()
}

// errRetired is the death of a generation replaced after a fatal error or
// closed with the sink; batches never see it (kill ran before).
var errRetired = errors.New("kafkasink: producer retired")

// retire closes g's producer in a goroutine owned by the Sink (Close waits
// for it, bounded). It first waits for Submits to leave Produce; they leave
// promptly because g is dead. Purging first makes librdkafka drop queued
// messages instead of trying to send them, so closing does not wait on
// unreachable brokers; then it stops drain, which must not poll a
// destroyed producer.
func (s *Sink) retire(g *generation) {
	g.kill(errRetired)
	s.retiring.Add(1)
	go func() {
		defer s.retiring.Done()
		g.use.Lock()
		defer g.use.Unlock()
		if err := g.p.Purge(kafka.PurgeQueue | kafka.PurgeInFlight | kafka.PurgeNonBlocking); err != nil {
			g.log.Warn("kafkasink: purge before close", "err", err)
		}
		// Close stops confluent-kafka-go's poller even while it waits to
		// hand drain a report, so drain can stop first.
		close(g.stop)
		<-g.drained
		g.p.Close()
		g.log.Debug("kafkasink: producer closed")
	}()
}
