package consume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/dualwrite/ingest/dbsink"
	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/health"
	"github.com/dualwrite/ingest/kafkasink"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
)

// Causes of a partition's context ending: its batches in flight fail with
// them, and the failure is then expected, not fatal.
var (
	errRevoked  = errors.New("partition revoked")
	errStopping = errors.New("consumer stopping")
)

// consumer is one Run: the Kafka consumer, its partitions and their
// batches. Every field but the completion queue (mu, done, wake) belongs
// to the goroutine of run, which polls Kafka; the rebalance callback runs
// on it too, inside Poll.
type consumer struct {
	cfg    *config.Config
	o      Options
	log    *slog.Logger
	db     *dbsink.Sink
	dl     deadLetters
	tables topicTables
	m      *metrics

	k      *kafka.Consumer
	runCtx context.Context // Run's: ends polling
	base   context.Context // batches': outlives runCtx by StopTimeout
	parts  map[tpKey]*partition
	fatal  error
	joined atomic.Bool
	// highs asks the broker for the paused partitions' watermarks (run
	// owns its goroutine).
	highs *highs

	// Acknowledgements from the sink's goroutines, handed to run's.
	mu   sync.Mutex
	done []completion
	wake chan struct{}
}

type tpKey struct {
	topic     string
	partition int32
}

// partition is an assigned partition.
type partition struct {
	key    tpKey
	stream string
	ctx    context.Context
	cancel context.CancelCauseFunc
	reject func(ctx context.Context, r *loader.Record, reason, detail string) error

	cur      *building
	flights  []*flight // handed to the sink, in offset order
	seq      uint64
	paused   bool
	revoked  bool
	start    int64 // offset assigned at, -1 when logical (the beginning)
	next     int64 // the offset after the last committed batch, -1 before one
	nextTime time.Time
	// The high watermark of the last fetch, for flushLingering.
	fetchHi   int64
	fetchHiAt time.Time
	// The partition's batches: a failed one voids those after it, which
	// the sink then fails instead of committing them past its offsets.
	epoch *loader.Epoch
}

// building is the batch being filled.
type building struct {
	start, end int64 // [start, end): the offsets covered, dead letters included
	recs       []loader.Record
	bytes      int
	created    time.Time
	added      time.Time // when the last message was added
	firstTS    time.Time // timestamp of the first message
	lastTS     time.Time
}

// flight is a batch handed to the sink.
type flight struct {
	p          *partition
	start, end int64
	tables     map[string]int // rows per table
	firstTS    time.Time
	lastTS     time.Time
	submitted  time.Time
}

type completion struct {
	f   *flight
	err error
}

// subscribe creates the Kafka consumer and subscribes it to the topics:
// librdkafka joins the group in its own threads from here on, while Run
// prepares the rest, and the first Poll of run gets the assignment. The
// rebalance callback runs only inside Poll, so nothing is assigned before
// run; until run, the caller closes c.k on failure.
func (c *consumer) subscribe() error {
	cm := kafkaConfig(c.cfg, nil)
	cm["group.id"] = c.o.Group
	// PostgreSQL holds the positions (seeked to on assignment); Kafka's
	// committed offsets follow them, stored after each transaction and
	// committed in the background, only for lag tools.
	cm["enable.auto.commit"] = true
	cm["enable.auto.offset.store"] = false
	cm["auto.offset.reset"] = "earliest"
	// A member joining or leaving moves only the partitions that must
	// move; the others keep loading through the rebalance.
	cm["partition.assignment.strategy"] = "cooperative-sticky"
	cm["queued.max.messages.kbytes"] = 16384
	// When the prefetched messages exceed that bound (or
	// queued.min.messages), librdkafka postpones the partition's next
	// fetch by fetch.queue.backoff.ms, 1 s by default: a catching-up
	// consumer drains the queue in milliseconds and then waited out the
	// second, which were the 0.5-0.9 s gaps between a partition's full
	// batches in the bench row (docs/consume.md, throughput).
	cm["fetch.queue.backoff.ms"] = 20
	for k, v := range c.o.Properties {
		cm[k] = v
	}
	k, err := kafka.NewConsumer(&cm)
	if err != nil {
		return &ArgError{fmt.Errorf("kafka consumer (kafka.brokers, kafka.properties): %w", err)}
	}
	topics := c.tables.topics()
	if err := k.SubscribeTopics(topics, c.rebalance); err != nil {
		k.Close()
		return fmt.Errorf("kafka: subscribe to %v: %w", topics, err)
	}
	c.k = k
	return nil
}

// run polls the subscribed consumer until ctx ends or a fatal error, then
// stops it (closing c.k).
func (c *consumer) run(ctx context.Context) (err error) {
	k := c.k
	topics := c.tables.topics()
	c.runCtx = ctx
	base, cancelBase := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelBase(nil)
	c.base = base
	c.parts = map[tpKey]*partition{}
	c.wake = make(chan struct{}, 1)

	addr, stopHTTP, err := health.Serve(c.cfg.Metrics.Listen, c.o.Registry, []health.Check{
		{Name: "db", Check: c.db.Ping},
		{Name: "kafka", Check: func(context.Context) error {
			if !c.joined.Load() {
				return errors.New("not yet a member of group " + c.o.Group)
			}
			return nil
		}},
	}, c.log)
	if err != nil {
		k.Close()
		return &ArgError{err}
	}
	defer stopHTTP()
	c.log.Info("consuming", "topics", topics, "sink", SinkName(c.o.Group), "metrics", addr)
	if c.o.Started != nil {
		c.o.Started(addr)
	}

	// The paused partitions' watermarks, asked beside the loop; stopped
	// before c.stop closes the consumer it asks through.
	c.highs = newHighs(k, c.log)
	hctx, stopHighs := context.WithCancel(ctx)
	var hwg sync.WaitGroup
	hwg.Go(func() { c.highs.run(hctx) })
	err = c.loop(ctx)
	stopHighs()
	hwg.Wait()
	if serr := c.stop(cancelBase); err == nil {
		err = serr
	}
	return err
}

func (c *consumer) loop(ctx context.Context) error {
	lastLag := time.Time{}
	for ctx.Err() == nil && c.fatal == nil {
		ev := c.k.Poll(c.pollTimeout())
		switch e := ev.(type) {
		case *kafka.Message:
			if e.TopicPartition.Error != nil {
				c.log.Warn("kafka: fetch error", "topic", *e.TopicPartition.Topic, "partition", e.TopicPartition.Partition, "err", e.TopicPartition.Error)
				break
			}
			if err := c.message(ctx, e); err != nil && ctx.Err() == nil {
				// (A dead letter interrupted by a stop is no failure: the
				// message's offset did not move, it is read again.)
				c.setFatal(err)
			}
		case kafka.Error:
			if e.IsFatal() {
				c.setFatal(fmt.Errorf("kafka consumer: %w", e))
			} else {
				c.log.Debug("kafka consumer", "err", e)
			}
		}
		c.completions()
		c.flushLingering()
		if now := time.Now(); now.Sub(lastLag) >= time.Second {
			lastLag = now
			c.updateLag(now)
		}
	}
	return c.fatal
}

func (c *consumer) setFatal(err error) {
	if c.fatal == nil {
		c.fatal = err
	}
}

// pollTimeout is the longest Poll may block: until the oldest batch being
// filled lingers out, 5 ms while a batch commits, at most 100 ms.
func (c *consumer) pollTimeout() int {
	d := 100 * time.Millisecond
	linger := c.cfg.Batch.Linger
	for _, p := range c.parts {
		if p.cur != nil && len(p.flights) == 0 {
			d = min(d, time.Until(p.cur.created.Add(linger)))
		}
		if len(p.flights) > 0 {
			// An acknowledgement does not wake Poll: look again soon, so
			// that the batch filling behind a commit follows it promptly.
			d = min(d, 5*time.Millisecond)
		}
	}
	return int(max(d, time.Millisecond) / time.Millisecond)
}

// stop ends the run: the batches in flight get StopTimeout to commit and
// are abandoned after it (their partitions reload from the checkpoint in
// PostgreSQL), then the consumer leaves the group.
func (c *consumer) stop(cancelBase context.CancelCauseFunc) error {
	var all []*partition
	for _, p := range c.parts {
		p.cur = nil
		all = append(all, p)
	}
	if !c.waitIdle(all, time.Now().Add(c.o.StopTimeout)) {
		c.log.Warn("stopping: abandoning batches still in flight", "timeout", c.o.StopTimeout)
		cancelBase(errStopping)
		c.waitIdle(all, time.Time{})
	}
	// Close leaves the group; the rebalance callback releases the
	// partitions, which are idle by now.
	err := c.k.Close()
	if err != nil {
		err = fmt.Errorf("kafka: close consumer: %w", err)
	}
	return err
}

// rebalance is the consumer's rebalance callback, run inside Poll.
func (c *consumer) rebalance(k *kafka.Consumer, ev kafka.Event) error {
	// Known only once the group has a generation: cooperative-sticky
	// gives COOPERATIVE, a range or roundrobin strategy EAGER.
	cooperative := k.GetRebalanceProtocol() == "COOPERATIVE"
	switch e := ev.(type) {
	case kafka.AssignedPartitions:
		c.m.rebalances.WithLabelValues("assigned").Inc()
		c.joined.Store(true)
		if c.runCtx.Err() != nil {
			// Stopping (a signal arrived during this Poll, or Close is
			// leaving the group): take the partitions without loading
			// them; leaving the group hands them on.
			c.log.Info("partitions assigned while stopping: not loading them", "partitions", len(e.Partitions))
			var err error
			if cooperative {
				err = k.IncrementalAssign(e.Partitions)
			} else {
				err = k.Assign(e.Partitions)
			}
			if err != nil {
				c.log.Warn("kafka: assign while stopping", "err", err)
			}
			return nil
		}
		starts, err := c.startOffsets(e.Partitions)
		load := err == nil
		if err != nil {
			// Take the partitions without state, so that no message of
			// them is loaded; the loop stops at the fatal error (unless a
			// stop interrupted the checkpoint read: no error then).
			if c.runCtx.Err() == nil {
				c.setFatal(err)
			}
			starts = e.Partitions
		}
		for _, tp := range starts {
			if load {
				c.addPartition(tp)
			}
		}
		if cooperative {
			err = k.IncrementalAssign(starts)
		} else {
			err = k.Assign(starts)
		}
		if err != nil {
			c.setFatal(fmt.Errorf("kafka: assign %v: %w", starts, err))
		}
		c.m.assigned.Set(float64(len(c.parts)))
	case kafka.RevokedPartitions:
		event := "revoked"
		if k.AssignmentLost() {
			event = "lost"
		}
		c.m.rebalances.WithLabelValues(event).Inc()
		c.release(e.Partitions, event)
		var err error
		if cooperative {
			err = k.IncrementalUnassign(e.Partitions)
		} else {
			err = k.Unassign()
		}
		if err != nil {
			c.log.Warn("kafka: unassign", "err", err)
		}
		c.m.assigned.Set(float64(len(c.parts)))
	}
	return nil
}

// startOffsets says where each newly assigned partition starts: at the
// checkpoint PostgreSQL holds for it, which names the first offset not
// committed there, and never at Kafka's committed offset, which may lag
// behind it (committed after the transaction) or be missing. A partition
// without a checkpoint starts at Options.Since, or at its beginning.
func (c *consumer) startOffsets(tps []kafka.TopicPartition) ([]kafka.TopicPartition, error) {
	out := make([]kafka.TopicPartition, 0, len(tps))
	var fresh []kafka.TopicPartition
	for _, tp := range tps {
		cp, ok, err := c.db.Checkpoint(c.runCtx, Stream(*tp.Topic, tp.Partition))
		if err != nil {
			return nil, fmt.Errorf("topic %s partition %d: %w", *tp.Topic, tp.Partition, err)
		}
		if ok {
			tp.Offset = kafka.Offset(cp.Offset)
			out = append(out, tp)
			c.log.Info("partition assigned", "topic", *tp.Topic, "partition", tp.Partition, "offset", cp.Offset, "from", "checkpoint")
			if !c.o.Since.IsZero() && !c.o.Reset {
				c.log.Warn("--since ignored: the partition has a checkpoint; --reset rewrites the group's checkpoints to --since",
					"topic", *tp.Topic, "partition", tp.Partition, "checkpoint", cp.Offset, "since", c.o.Since)
			}
			continue
		}
		if c.o.Since.IsZero() {
			tp.Offset = kafka.OffsetBeginning
			out = append(out, tp)
			c.log.Info("partition assigned", "topic", *tp.Topic, "partition", tp.Partition, "offset", "beginning", "from", "no checkpoint")
			continue
		}
		fresh = append(fresh, tp)
	}
	if len(fresh) > 0 {
		res, err := startOffsets(c.runCtx, c.k, fresh, c.o.Since)
		if err != nil {
			return nil, err
		}
		for _, tp := range res {
			c.log.Info("partition assigned", "topic", *tp.Topic, "partition", tp.Partition, "offset", int64(tp.Offset), "from", "since "+c.o.Since.Format(time.RFC3339Nano))
		}
		out = append(out, res...)
	}
	return out, nil
}

func (c *consumer) addPartition(tp kafka.TopicPartition) {
	key := tpKey{*tp.Topic, tp.Partition}
	p := &partition{key: key, stream: Stream(key.topic, key.partition), start: int64(tp.Offset), next: -1, epoch: loader.NewEpoch()}
	if p.start < 0 {
		p.start = -1
	}
	p.ctx, p.cancel = context.WithCancelCause(c.base)
	p.reject = func(ctx context.Context, r *loader.Record, reason, detail string) error {
		// PostgreSQL refused the row (or it did not convert): called from
		// the sink's goroutine, before the transaction that moves the
		// offset past it commits.
		return c.deadLetter(ctx, letter{
			topic: key.topic, partition: key.partition, offset: r.Pos.Offset,
			key: []byte(r.Key), value: r.Line, reason: reason, detail: detail,
			headers: []kafka.Header{{Key: kafkasink.HeaderTable, Value: []byte(r.Table.Name)}, {Key: kafkasink.HeaderRecordID, Value: []byte(r.RecordID)}},
		})
	}
	c.parts[key] = p
}

// release gives revoked partitions up: the batch being filled is dropped
// (the next owner reads it again), the batches in flight get
// RevokeTimeout to commit and are then abandoned, and only once the sink
// holds nothing of them does the callback return and Kafka hand them on.
// A lost assignment (this member was thrown out of the group) abandons
// at once: another member may own the partitions already. Either way the
// checkpoint row lock in PostgreSQL serialises the old owner's last
// transaction with the new owner's first, and each skips what the other
// committed, so nothing is loaded twice.
func (c *consumer) release(tps []kafka.TopicPartition, event string) {
	var ps []*partition
	for _, tp := range tps {
		if p := c.parts[tpKey{*tp.Topic, tp.Partition}]; p != nil {
			p.cur = nil
			p.revoked = true
			ps = append(ps, p)
		}
	}
	deadline := time.Now().Add(c.o.RevokeTimeout)
	if event == "lost" {
		deadline = time.Now()
	}
	if !c.waitIdle(ps, deadline) {
		for _, p := range ps {
			p.cancel(errRevoked)
		}
		c.waitIdle(ps, time.Time{})
	}
	for _, p := range ps {
		p.cancel(errRevoked)
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := c.db.Drain(dctx, p.stream); err != nil {
			c.log.Warn("revoked partition: sink still busy", "topic", p.key.topic, "partition", p.key.partition, "err", err)
		}
		cancel()
		delete(c.parts, p.key)
		c.m.forget(p.key.topic, p.key.partition)
		c.log.Info("partition "+event, "topic", p.key.topic, "partition", p.key.partition, "committed", p.next)
	}
}

// waitIdle handles acknowledgements until none of ps has a batch in
// flight, or the deadline passes (false). A zero deadline waits as long
// as it takes: only after the partitions' contexts were cancelled, which
// the sink honours promptly.
func (c *consumer) waitIdle(ps []*partition, deadline time.Time) bool {
	var timer <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timer = t.C
	}
	for {
		c.completions()
		idle := true
		for _, p := range ps {
			if len(p.flights) > 0 {
				idle = false
			}
		}
		if idle {
			return true
		}
		select {
		case <-c.wake:
		case <-timer:
			c.completions()
			for _, p := range ps {
				if len(p.flights) > 0 {
					return false
				}
			}
			return true
		}
	}
}

// message adds one message to its partition's batch, or dead-letters it.
func (c *consumer) message(ctx context.Context, msg *kafka.Message) error {
	key := tpKey{*msg.TopicPartition.Topic, msg.TopicPartition.Partition}
	p := c.parts[key]
	if p == nil || p.revoked {
		return nil // fetched before a revocation: the next owner loads it
	}
	off := int64(msg.TopicPartition.Offset)
	if p.cur == nil {
		p.cur = &building{start: off, created: time.Now(), firstTS: msg.Timestamp}
	}
	b := p.cur
	b.added = time.Now()
	// Offsets may skip (transaction markers, compaction): the batch
	// covers the gap, and its end is the offset after this message.
	b.end = off + 1
	b.lastTS = msg.Timestamp
	rec, reason, detail := c.decode(msg, key, off)
	if reason != "" {
		// Durable before the batch that covers the offset is submitted,
		// so the checkpoint never passes a message that is nowhere.
		if err := c.deadLetter(ctx, letter{
			topic: key.topic, partition: key.partition, offset: off,
			key: msg.Key, value: msg.Value, headers: msg.Headers, reason: reason, detail: detail,
		}); err != nil {
			return err
		}
	} else {
		b.recs = append(b.recs, rec)
		b.bytes += len(rec.Row)
		c.m.consumed.WithLabelValues(rec.Table.Name).Inc()
	}
	if len(b.recs) >= c.cfg.Batch.MaxRecords || b.bytes >= int(c.cfg.Batch.MaxBytes) {
		return c.flush(p)
	}
	return nil
}

func (c *consumer) deadLetter(ctx context.Context, l letter) error {
	c.log.Warn("message dead-lettered", "topic", l.topic, "partition", l.partition, "offset", l.offset, "reason", l.reason, "detail", l.detail)
	if err := c.dl.write(ctx, l); err != nil {
		return fmt.Errorf("topic %s partition %d offset %d: dead letter (%s): %w", l.topic, l.partition, l.offset, l.reason, err)
	}
	c.m.deadLetters.WithLabelValues(l.reason).Inc()
	return nil
}

// decode turns a message into a record with the file path's decoder: the
// value is the row JSON the file loader produced, decoded as the line
// {"table":<its table>,"row":<value>}. reason is non-empty when it must
// be dead-lettered instead.
func (c *consumer) decode(msg *kafka.Message, key tpKey, off int64) (rec loader.Record, reason, detail string) {
	table, recordID := kafkasink.RecordHeaders(msg.Headers)
	candidates := c.tables[key.topic]
	var t *schema.Table
	switch {
	case table != "":
		for _, x := range candidates {
			if x.Name == table {
				t = x
			}
		}
		if t == nil {
			return rec, string(schema.ReasonUnknownTable), fmt.Sprintf("header %s names table %q, which is not consumed from topic %s", kafkasink.HeaderTable, table, key.topic)
		}
	case len(candidates) == 1:
		t = candidates[0]
	default:
		return rec, string(schema.ReasonUnknownTable), fmt.Sprintf("no %s header, and topic %s carries %d tables", kafkasink.HeaderTable, key.topic, len(candidates))
	}
	v := msg.Value
	// The value is the row itself: decoded as one, with the file path's
	// rules, it must be one JSON object and nothing after it (a value
	// like `{},"table":"x"` fails), and no line is built around it. The
	// decoder validates the JSON as it goes; json.Valid, which on every
	// message cost more client CPU than the decoding, runs only on the
	// failure paths, to name the reason (docs/consume.md, throughput).
	i := 0
	for i < len(v) && isSpace(v[i]) {
		i++
	}
	switch {
	case i == len(v):
		return rec, string(schema.ReasonEmptyLine), "message value is empty"
	case v[i] != '{':
		if !json.Valid(v) {
			return rec, string(schema.ReasonMalformedJSON), "message value is not one well-formed JSON value"
		}
		return rec, string(schema.ReasonRowNotObject), "message value is not a JSON object"
	}
	sr, err := t.DecodeRow(v)
	if err != nil {
		if !json.Valid(v) {
			return rec, string(schema.ReasonMalformedJSON), "message value is not one well-formed JSON value"
		}
		var se *schema.Error
		if errors.As(err, &se) {
			d := se.Detail
			if se.Field != "" {
				d = se.Field + ": " + d
			}
			return rec, string(se.Reason), d
		}
		return rec, string(schema.ReasonMalformedJSON), err.Error()
	}
	if recordID == "" {
		recordID = key.topic + "/" + strconv.Itoa(int(key.partition)) + "/" + strconv.FormatInt(off, 10)
	}
	return loader.Record{Record: sr, RecordID: recordID, Pos: loader.Position{Offset: off}, Line: msg.Value}, "", ""
}

// isSpace reports JSON whitespace.
func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

// flushLingering submits batches older than batch.linger, but only when
// their partition has no batch in flight: while one commits, the next
// keeps filling (up to batch.max_records), so that a consumer catching up
// commits full batches instead of one small transaction per linger, and
// a partition that is not behind still commits within a commit's time
// plus the linger.
//
// Nor while the partition is behind by enough messages to fill the batch
// and the batch still grows (a message within the last linger): then the
// rest of the batch is already in Kafka and arrives at fetch speed, and
// submitting what came in during the last commit made the transactions
// of a catching-up consumer 300-1,000 rows instead of batch.max_records,
// on a loaded machine (docs/consume.md, throughput). A batch that stops
// growing (fetch stalled, a stale watermark, the end of the partition)
// is submitted a linger after its last message, as before.
func (c *consumer) flushLingering() {
	now := time.Now()
	linger := c.cfg.Batch.Linger
	for _, p := range c.parts {
		b := p.cur
		if b == nil || len(p.flights) > 0 || now.Sub(b.created) < linger {
			continue
		}
		if now.Sub(b.added) < linger && c.behind(p, b, now) {
			continue
		}
		if err := c.flush(p); err != nil {
			c.setFatal(err)
		}
	}
}

// behind reports whether the partition's high watermark, as librdkafka
// last learnt it from a fetch (no request to the broker), lies at least
// the rest of batch b past b's end. It asks librdkafka at most once per
// millisecond per partition: flushLingering runs after every message.
func (c *consumer) behind(p *partition, b *building, now time.Time) bool {
	if now.Sub(p.fetchHiAt) >= time.Millisecond {
		p.fetchHiAt = now
		if _, hi, err := c.k.GetWatermarkOffsets(p.key.topic, p.key.partition); err == nil {
			p.fetchHi = hi
		}
	}
	return p.fetchHi-b.end >= int64(c.cfg.Batch.MaxRecords-len(b.recs))
}

// flush hands the partition's batch to the sink, which commits its rows
// and moves the partition's checkpoint to the batch's end in one
// transaction. At MaxInFlight batches the partition is paused.
func (c *consumer) flush(p *partition) error {
	b := p.cur
	p.cur = nil
	p.seq++
	batch := loader.NewBatch(p.stream, loader.Position{Offset: b.start}, loader.Position{Offset: b.end}, b.recs, p.reject).InEpoch(p.epoch, p.seq)
	f := &flight{p: p, start: b.start, end: b.end, tables: map[string]int{}, firstTS: b.firstTS, lastTS: b.lastTS, submitted: time.Now()}
	for i := range b.recs {
		f.tables[b.recs[i].Table.Name]++
	}
	p.flights = append(p.flights, f)
	err := c.db.Submit(p.ctx, batch, func(err error) {
		if err != nil {
			// Before the sink takes the next batch: it must not commit it.
			p.epoch.Fail(batch.Seq, p.stream, err)
		}
		c.mu.Lock()
		c.done = append(c.done, completion{f, err})
		c.mu.Unlock()
		select {
		case c.wake <- struct{}{}:
		default:
		}
	})
	if err != nil {
		p.flights = p.flights[:len(p.flights)-1]
		return fmt.Errorf("topic %s partition %d offsets [%d, %d): %w", p.key.topic, p.key.partition, b.start, b.end, err)
	}
	if len(p.flights) >= c.o.MaxInFlight && !p.paused {
		if err := c.k.Pause([]kafka.TopicPartition{{Topic: &p.key.topic, Partition: p.key.partition}}); err != nil {
			return fmt.Errorf("kafka: pause topic %s partition %d: %w", p.key.topic, p.key.partition, err)
		}
		p.paused = true
	}
	return nil
}

// completions handles the acknowledgements that arrived.
func (c *consumer) completions() {
	c.mu.Lock()
	done := c.done
	c.done = nil
	c.mu.Unlock()
	for _, d := range done {
		f, p := d.f, d.f.p
		if len(p.flights) > 0 && p.flights[0] == f {
			p.flights = p.flights[1:]
		}
		if d.err != nil {
			if cause := context.Cause(p.ctx); cause != nil {
				// Abandoned: the partition's next owner starts at the
				// checkpoint, which this batch did or did not move.
				c.log.Info("batch abandoned", "topic", p.key.topic, "partition", p.key.partition, "start", f.start, "end", f.end, "cause", cause)
				continue
			}
			// The sink retries what retrying can fix (an outage) without
			// limit; what reaches here needs an operator (an undefined
			// table, a permission), and a restart resumes at the
			// checkpoint.
			c.setFatal(fmt.Errorf("topic %s partition %d offsets [%d, %d): %w", p.key.topic, p.key.partition, f.start, f.end, d.err))
			continue
		}
		c.m.batch.Observe(time.Since(f.submitted).Seconds())
		for t, n := range f.tables {
			c.m.committed.WithLabelValues(t).Add(float64(n))
		}
		p.next, p.nextTime = f.end, f.lastTS
		if p.revoked {
			continue
		}
		// For lag tools only: committed to Kafka in the background.
		if _, err := c.k.StoreOffsets([]kafka.TopicPartition{{Topic: &p.key.topic, Partition: p.key.partition, Offset: kafka.Offset(f.end)}}); err != nil {
			c.log.Debug("kafka: store offset", "topic", p.key.topic, "partition", p.key.partition, "offset", f.end, "err", err)
		}
		if p.paused && len(p.flights) < c.o.MaxInFlight {
			if err := c.k.Resume([]kafka.TopicPartition{{Topic: &p.key.topic, Partition: p.key.partition}}); err != nil {
				c.setFatal(fmt.Errorf("kafka: resume topic %s partition %d: %w", p.key.topic, p.key.partition, err))
				continue
			}
			p.paused = false
		}
	}
}

// updateLag sets the lag gauges from the watermarks librdkafka learnt
// with its last fetch (no request to the broker).
func (c *consumer) updateLag(now time.Time) {
	var paused []tpKey
	for _, p := range c.parts {
		_, hi, err := c.k.GetWatermarkOffsets(p.key.topic, p.key.partition)
		if err != nil {
			hi = -1
		}
		if p.paused {
			// Not fetched: what the broker last said (c.highs) is newer
			// than librdkafka's cached watermark.
			paused = append(paused, p.key)
		}
		hi = max(hi, c.highs.high(p.key))
		if hi < 0 {
			continue
		}
		pos := p.next
		if pos < 0 {
			pos = p.start
		}
		if pos < 0 {
			continue
		}
		lag := max(hi-pos, 0)
		label := strconv.Itoa(int(p.key.partition))
		c.m.lag.WithLabelValues(p.key.topic, label).Set(float64(lag))
		var age time.Duration
		switch {
		case lag == 0:
		case len(p.flights) > 0:
			age = now.Sub(p.flights[0].firstTS)
		case p.cur != nil:
			age = now.Sub(p.cur.firstTS)
		case !p.nextTime.IsZero():
			age = now.Sub(p.nextTime)
		}
		c.m.lagSeconds.WithLabelValues(p.key.topic, label).Set(max(age, 0).Seconds())
	}
	c.highs.ask(paused)
}
