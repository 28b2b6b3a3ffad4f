package kafkasink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// generation is one librdkafka producer and the batches in flight on it.
// The sink has one live generation at a time; a fatal error kills it (its
// batches fail) and the supervisor replaces it with a fresh one. Keeping
// per-producer state together means a late delivery report from a dead
// producer can only touch batches that already failed, which ignore it.
type generation struct {
	s   *Sink
	id  uint64
	p   *kafka.Producer
	log *slog.Logger

	// use is held for reading by every Submit producing on p, and for
	// writing by retire before it closes p: librdkafka must not be
	// destroyed while another goroutine is inside Produce.
	use sync.RWMutex

	mu       sync.Mutex
	inflight map[*tracker]struct{}
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

// newGeneration creates a producer and starts its drain goroutine, which
// the generation owns: it ends when retire closes the producer.
func (s *Sink) newGeneration() (*generation, error) {
	// NewProducer copies the map, but a copy per generation keeps the
	// sink's own configuration read-only.
	conf := make(kafka.ConfigMap, len(s.cfg.conf))
	for k, v := range s.cfg.conf {
		conf[k] = v
	}
	p, err := kafka.NewProducer(&conf)
	if err != nil {
		// librdkafka names the offending property in its message.
		return nil, fmt.Errorf("kafkasink: create producer: %w", err)
	}
	id := s.genSeq.Add(1)
	g := &generation{
		s:        s,
		id:       id,
		p:        p,
		log:      s.log.With("producer", id),
		inflight: make(map[*tracker]struct{}),
		deadc:    make(chan struct{}),
		space:    make(chan struct{}),
		drained:  make(chan struct{}),
	}
	go g.drain()
	return g, nil
}

// drain serves the producer's events and log channels until Close closes
// both. It must never block on anything but those channels: librdkafka's
// poller goroutine waits for it, and a full events channel makes Flush and
// Close hang. So it only does bookkeeping; acks run on the completer.
func (g *generation) drain() {
	defer close(g.drained)
	events, logs := g.p.Events(), g.p.Logs()
	for events != nil || logs != nil {
		select {
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			g.handle(ev)
		case le, ok := <-logs:
			if !ok {
				logs = nil
				continue
			}
			g.log.Log(context.Background(), logLevel(le.Level), "librdkafka", "tag", le.Tag, "msg", le.Message)
		}
	}
}

func (g *generation) handle(ev kafka.Event) {
	switch ev := ev.(type) {
	case *kafka.Message:
		ref, ok := ev.Opaque.(*msgRef)
		if !ok {
			return
		}
		switch err := ev.TopicPartition.Error; {
		case err == nil:
			g.s.delivered.Add(1)
			ref.t.release()
		case code(err) == kafka.ErrMsgSizeTooLarge:
			// The broker's limit for the topic (max.message.bytes) is
			// below the producer's: retrying can never succeed.
			ref.t.rejectLater(ref.i)
		default:
			// With message.timeout.ms=0 and idempotence, librdkafka retries
			// everything retriable by itself; what reaches us is permanent
			// (authorization, topic deleted, purged on shutdown, or a
			// timeout the user configured). The loader replays the batch.
			topic := ""
			if ev.TopicPartition.Topic != nil {
				topic = *ev.TopicPartition.Topic
			}
			ref.t.finish(&deliveryError{topic: topic, partition: ev.TopicPartition.Partition, record: ref.i, err: err}, false)
		}
		if g.waiters.Load() > 0 {
			g.wake()
		}
	case kafka.Error:
		if ev.IsFatal() {
			g.log.Error("kafkasink: fatal producer error: failing the batches in flight and rebuilding the producer", "err", ev)
			g.kill(fmt.Errorf("%w: %w", ErrFatal, ev))
			g.s.requestRebuild()
			return
		}
		// Transport errors, all brokers down, and the like: librdkafka
		// keeps retrying, and undelivered messages wait (no timeout).
		g.logTransient(ev)
	}
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

// add registers t on g. It fails when g is dead, and the caller moves on to
// the next generation.
func (g *generation) add(t *tracker) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.dead != nil {
		return false
	}
	g.inflight[t] = struct{}{}
	t.mu.Lock()
	t.gen = g
	t.mu.Unlock()
	return true
}

func (g *generation) remove(t *tracker) {
	g.mu.Lock()
	delete(g.inflight, t)
	if len(g.inflight) == 0 && g.idlec != nil {
		close(g.idlec)
		g.idlec = nil
	}
	g.mu.Unlock()
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
	for t := range g.inflight {
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
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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
// messages instead of trying to send them, so Close does not wait on
// unreachable brokers.
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
		g.p.Close() // closes Events and Logs, which ends drain
		<-g.drained
		g.log.Debug("kafkasink: producer closed")
	}()
}
