package kafkasink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/dualwrite/ingest/loader"
)

// Timing of [Start]'s background start and of [Lazy.Ready]. Variables so
// tests can shorten them.
var (
	// startAttemptTimeout bounds one attempt to build the sink: its topic
	// check is a metadata call librdkafka cannot cancel, so this is also
	// how long Close may wait for an attempt under way.
	startAttemptTimeout = 5 * time.Second
	// startRetryEvery spaces the attempts, and the TCP probes of the
	// bootstrap brokers while none accepts a connection.
	startRetryEvery = 2 * time.Second
	// startMaxGap caps the doubling gap between attempts that fail while
	// a broker accepts TCP connections (up, but not answering metadata).
	startMaxGap = time.Minute
	// startLogEvery spaces the "still unreachable" log lines.
	startLogEvery = time.Minute
	// startDialTimeout bounds the TCP probe of one bootstrap broker.
	startDialTimeout = 2 * time.Second
	// stallAfter is how long batches may wait without any delivery
	// report before /readyz says the sink does not answer. A leader
	// failover stalls acks for ~13 s on a real cluster: that is not
	// answering, and the orchestrator may as well know.
	stallAfter = 10 * time.Second
	// probeEvery spaces the metadata requests /readyz makes: a
	// result this recent is reused, so frequent probes cost the brokers
	// one request a second at most.
	probeEvery = time.Second
)

// Start starts building the sink in the background and returns at once, so
// that a caller with other sinks loads them from the first second: [New]
// checks the topics, and with the brokers unreachable that check waits for
// a metadata timeout. One sink's outage must never stop the other, and that
// includes an outage that began before the process did. Batches submitted
// before the sink is built wait in the returned [Lazy]'s queue ([Lazy.Submit]
// returns at once, so the loader's lag stays visible); the attempts repeat
// every startRetryEvery until one succeeds; after a failed attempt the next
// one waits until a bootstrap broker accepts a TCP connection (and, while
// attempts still fail, for a doubling gap up to startMaxGap), because
// every attempt builds and tears down a librdkafka producer, and during a
// long outage those cost memory (measured: RSS grew ~1 MB a minute at one
// attempt every 7 s) and two log lines each (to cfg.Logger). A config
// error or a missing topic ends the attempts and is reported on
// [Lazy.Fatal]: waiting would not fix them, and the caller should stop
// with it. ctx ending, or [Lazy.Close], stops the attempts.
func Start(ctx context.Context, cfg Config) *Lazy {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The caller's ctx ending stops the attempts too: batches waiting for
	// the sink must not hold up its shutdown.
	life, cancel := context.WithCancel(ctx)
	k := &Lazy{
		cfg: cfg, log: log, cancel: cancel,
		built: make(chan struct{}), tried: make(chan struct{}), done: make(chan struct{}),
		fatal: make(chan error, 1),
	}
	go func() {
		defer close(k.done)
		k.own(life)
	}()
	return k
}

// Lazy is the sink [Start] returns: a [loader.Sink] that is the [Sink], or
// the promise of one until the background start succeeds. Its owner
// goroutine is the only one that builds it.
type Lazy struct {
	cfg    Config
	log    *slog.Logger
	cancel context.CancelFunc
	built  chan struct{} // closed once sink is set
	tried  chan struct{} // closed once the first attempt ended
	done   chan struct{} // closed when the owner goroutine returned
	fatal  chan error    // a config error or missing topic, at most one

	mu       sync.Mutex
	sink     *Sink
	lastErr  error
	fatalErr error // what was sent on fatal

	watch deliveryWatch // batches submitted and not yet acked

	qmu        sync.Mutex
	queue      []queued // batches taken before the sink was built, in Submit order
	forwarding bool     // forward runs: new batches join the queue
	forwarder  sync.WaitGroup

	probeMu  sync.Mutex // held during a metadata probe
	probeAt  time.Time  // when the last probe ended
	probeErr error      // and what it found
}

// own makes attempts until the sink is built, a fatal error, or ctx ends.
func (k *Lazy) own(ctx context.Context) {
	start := time.Now()
	var lastLog time.Time
	gap := startRetryEvery // between attempts; doubles while brokers accept TCP but attempts fail
	for attempt := 1; ; attempt++ {
		if attempt > 1 && !k.waitReachable(ctx, gap, start, &lastLog) {
			return
		}
		actx, cancel := context.WithTimeout(ctx, startAttemptTimeout)
		s, err := New(actx, k.cfg)
		cancel()
		var cerr *ConfigError
		var terr *MissingTopicError
		fatal := errors.As(err, &cerr) || errors.As(err, &terr)
		k.mu.Lock()
		k.sink, k.lastErr = s, err
		if fatal && ctx.Err() == nil {
			k.fatalErr = err // before tried closes: StartErr reads it then
		}
		k.mu.Unlock()
		if attempt == 1 {
			close(k.tried)
		}
		if err == nil {
			close(k.built)
			if attempt > 1 {
				k.log.Info("kafka reachable again: sink started", "attempts", attempt, "after", time.Since(start).Round(time.Millisecond).String())
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		if fatal {
			k.fatal <- err
			return
		}
		if attempt > 1 {
			gap = min(2*gap, startMaxGap)
		}
		switch {
		case attempt == 1:
			k.log.Error("kafka is unreachable; loading the other sinks and retrying Kafka in the background", "err", err)
			lastLog = time.Now()
		case time.Since(lastLog) >= startLogEvery:
			k.log.Error("kafka still unreachable; retrying", "attempts", attempt, "for", time.Since(start).Round(time.Second).String(), "err", err)
			lastLog = time.Now()
		}
	}
}

// waitReachable waits gap, then probes the bootstrap brokers every
// startRetryEvery until one accepts a TCP connection; false when ctx ended.
func (k *Lazy) waitReachable(ctx context.Context, gap time.Duration, start time.Time, lastLog *time.Time) bool {
	for wait := gap; ; wait = startRetryEvery {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		err := dialAny(ctx, k.cfg.Brokers)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if time.Since(*lastLog) >= startLogEvery {
			k.log.Error("kafka still unreachable; retrying", "for", time.Since(start).Round(time.Second).String(), "err", err)
			*lastLog = time.Now()
		}
	}
}

// dialAny returns nil as soon as one of the comma-separated bootstrap
// brokers accepts a TCP connection (closed at once), else the last error.
// A "scheme://" prefix is dropped; a missing port is Kafka's 9092.
func dialAny(ctx context.Context, brokers string) error {
	var d net.Dialer
	err := errors.New("no bootstrap broker")
	for _, b := range strings.Split(brokers, ",") {
		b = strings.TrimSpace(b)
		if i := strings.Index(b, "://"); i >= 0 {
			b = b[i+3:]
		}
		if b == "" {
			continue
		}
		if _, _, perr := net.SplitHostPort(b); perr != nil {
			b = net.JoinHostPort(strings.Trim(b, "[]"), "9092")
		}
		dctx, cancel := context.WithTimeout(ctx, startDialTimeout)
		var c net.Conn
		c, err = d.DialContext(dctx, "tcp", b)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
	}
	return err
}

// StartErr returns the config error or missing topic that the first
// attempt found, waiting for that attempt when a bootstrap broker accepts
// a TCP connection (with the brokers up it takes milliseconds; at most
// startAttemptTimeout when they accept but do not answer). With none
// reachable it returns nil at once: the other sinks must not wait for
// Kafka, and the check then happens beside loading ([Lazy.Fatal]). A caller
// that must not load a line before a missing topic is known calls it
// before loading.
func (k *Lazy) StartErr(ctx context.Context) error {
	if dialAny(ctx, k.cfg.Brokers) != nil {
		return nil
	}
	if !waitClosed(ctx, k.tried) {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.fatalErr
}

// Fatal delivers the error that ended the attempts for good: a config
// error or a missing topic. At most one error is sent.
func (k *Lazy) Fatal() <-chan error { return k.fatal }

// Name implements loader.Sink: [Config].Name.
func (k *Lazy) Name() string { return k.cfg.Name }

// wait returns the sink once built. It gives up when ctx ends or when the
// attempts stopped without a sink (Close, Start's ctx ending, a fatal error).
func (k *Lazy) wait(ctx context.Context) (*Sink, error) {
	select {
	case <-k.built:
	case <-k.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("kafka sink not started: %w", ctx.Err())
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.sink == nil {
		return nil, fmt.Errorf("kafka sink not started: %w", k.stoppedErr())
	}
	return k.sink, nil
}

// stoppedErr is why there is no sink; k.mu must be held.
func (k *Lazy) stoppedErr() error {
	if k.lastErr != nil {
		return k.lastErr
	}
	return errors.New("stopped before the first attempt ended")
}

// Submit implements loader.Sink. Until the sink is built it queues the
// batch and returns at once: the pipeline then holds its batches (at most
// its MaxInFlight) while the brokers are unreachable, instead of failing
// and re-reading them, and goes on refreshing ingest_lag_seconds, which a
// pipeline blocked inside Submit could not. The queue goes to the sink in
// Submit order once it is built, or fails batch by batch (ack with the
// error) when the attempts stopped or the batch's ctx ended. Once the
// queue is empty, later batches go straight to the sink.
func (k *Lazy) Submit(ctx context.Context, b *loader.Batch, ack func(error)) error {
	k.qmu.Lock()
	// With no batch still queued (not forwarding), a built sink takes b
	// straight away: it is set before built is closed, and nothing queued
	// can then be overtaken.
	if s := k.started(); s != nil && !k.forwarding {
		k.qmu.Unlock()
		return k.submit(ctx, s, b, ack)
	}
	k.queue = append(k.queue, queued{ctx: ctx, b: b, ack: ack})
	if !k.forwarding {
		k.forwarding = true
		k.forwarder.Add(1)
		go k.forward()
	}
	k.qmu.Unlock()
	return nil
}

// queued is a batch Submit took before the sink was built.
type queued struct {
	ctx context.Context
	b   *loader.Batch
	ack func(error)
}

// started returns the sink once built, nil before.
func (k *Lazy) started() *Sink {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.sink
}

// forward is the goroutine, started by Submit and waited for by Close,
// that hands the queued batches to the sink once it is built, in order.
// It returns when the queue is empty.
func (k *Lazy) forward() {
	defer k.forwarder.Done()
	for {
		k.qmu.Lock()
		if len(k.queue) == 0 {
			k.forwarding = false
			k.qmu.Unlock()
			return
		}
		q := k.queue[0]
		k.queue[0] = queued{}
		k.queue = k.queue[1:]
		k.qmu.Unlock()
		s, err := k.wait(q.ctx)
		if err == nil {
			err = k.submit(q.ctx, s, q.b, q.ack)
		}
		if err != nil {
			// Submit returned nil for it: its failure comes as an ack.
			q.ack(err)
		}
	}
}

// submit hands b to the built sink, watching its delivery for /readyz.
func (k *Lazy) submit(ctx context.Context, s *Sink, b *loader.Batch, ack func(error)) error {
	k.watch.submitted(time.Now())
	err := s.Submit(ctx, b, func(err error) {
		k.watch.acked(time.Now())
		ack(err)
	})
	if err != nil {
		k.watch.acked(time.Now()) // no ack follows a Submit error
	}
	return err
}

// Ready reports, for a readiness check such as /readyz, whether the sink
// answers: it has started
// (while the first attempt is under way it waits for it, bounded by ctx:
// with the brokers up that takes milliseconds), a broker answers a
// metadata request through its producer, and batches in flight get
// delivery reports. The producer itself never says: it retries through
// any outage without failing a batch, so the loader sees nothing either.
func (k *Lazy) Ready(ctx context.Context) error {
	select {
	case <-k.built:
	case <-k.tried:
	case <-ctx.Done():
		return errors.New("sink not started: first attempt under way")
	}
	k.mu.Lock()
	s := k.sink
	var err error
	if s == nil {
		err = fmt.Errorf("sink not started: %w", k.stoppedErr())
	}
	k.mu.Unlock()
	if err != nil {
		return err
	}
	if err := k.probe(ctx, s); err != nil {
		return err
	}
	return k.watch.stalled(time.Now(), stallAfter)
}

// probe asks a broker for metadata through the sink's producer, reusing
// a result younger than probeEvery.
func (k *Lazy) probe(ctx context.Context, s *Sink) error {
	k.probeMu.Lock()
	defer k.probeMu.Unlock()
	if !k.probeAt.IsZero() && time.Since(k.probeAt) < probeEvery {
		return k.probeErr
	}
	start := time.Now()
	err := s.Ping(ctx)
	if err != nil {
		err = fmt.Errorf("%w (after %v)", err, time.Since(start).Round(time.Millisecond))
	}
	k.probeAt, k.probeErr = time.Now(), err
	return err
}

// deliveryWatch tells a sink that takes batches but acknowledges none
// (brokers that answer metadata but cannot replicate, e.g. fewer in-sync
// replicas than min.insync.replicas) from one that is merely busy: it
// counts the batches in flight and when the last progress was made.
type deliveryWatch struct {
	mu       sync.Mutex
	inflight int
	progress time.Time // the last ack, or when inflight left 0
}

func (w *deliveryWatch) submitted(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.inflight == 0 {
		w.progress = now
	}
	w.inflight++
}

func (w *deliveryWatch) acked(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inflight--
	w.progress = now
}

// stalled returns an error when batches have waited longer than after
// without any of them being acknowledged.
func (w *deliveryWatch) stalled(now time.Time, after time.Duration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.inflight > 0 {
		if d := now.Sub(w.progress); d > after {
			return fmt.Errorf("%d batches waiting for delivery reports, none for %v: the brokers do not acknowledge (too few in-sync replicas, no leader?)", w.inflight, d.Round(time.Second))
		}
	}
	return nil
}

// Close stops the attempts, waits for the one under way (bounded by ctx),
// closes the sink if it was built, and waits for the batches still queued
// to fail (without a sink they fail at once; a closed sink refuses them).
func (k *Lazy) Close(ctx context.Context) error {
	k.cancel()
	if !waitClosed(ctx, k.done) {
		return fmt.Errorf("kafka sink: an attempt to start is still under way: %w", ctx.Err())
	}
	var err error
	if s := k.started(); s != nil {
		err = s.Close(ctx)
	}
	if !waitFor(ctx, k.forwarder.Wait) {
		return errors.Join(err, fmt.Errorf("kafka sink: batches queued before it started still being handed over: %w", ctx.Err()))
	}
	return err
}
