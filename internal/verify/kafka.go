package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/kafkasink"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
)

// Start-offset modes of [Report.StartOffsets].
const (
	StartByTimestamp   = "by-timestamp"
	StartEarliest      = "earliest"
	StartNoTimeLookups = "earliest (the broker has no timestamp lookup)"
	StartAppendTime    = "earliest (the topic stamps messages with their append time, not the row's)"
)

// End-offset modes of [Report.EndOffsets].
const (
	EndByTimestamp   = "by-timestamp"
	EndHighWatermark = "high watermark"
)

// kafkaReader reads a topic's messages of one table between fixed offsets:
// per partition from the first offset whose timestamp is at or after the
// window's start to the first offset whose timestamp is at or after its
// end (OffsetsForTimes; the sink sets the timestamp from the time field),
// or the high watermark seen at the start when that comes first. Both
// passes read the same messages, and live producing does not extend the
// read.
type kafkaReader struct {
	c         *kafka.Consumer
	table     *schema.Table
	schema    *schema.Schema
	window    loader.Window
	log       *slog.Logger
	ranges    []prange
	startMode string
	endMode   string
	prefix    []byte // `{"table":"<name>","row":`
	toEnd     bool

	// cm is the consumer configuration without the fetch settings: each
	// partition read opens its own consumer from it (see scan).
	cm kafka.ConfigMap

	keyType, idType schema.Type
}

// prange is one partition's read: [start, end), and the high watermark
// at the start (end <= hwm).
type prange struct {
	partition       int32
	start, end, hwm kafka.Offset
}

type scanStats struct {
	messages, otherTables, undecodable int64
	// delivered counts, per partition, the messages of the range read;
	// received those the consumers got from the broker (librdkafka's
	// rxmsgs), the fetch past the range's end included; -1 for a
	// partition whose statistics did not come.
	delivered, received map[int32]int64
}

var groupSeq atomic.Int64

// statsInterval is how often a partition's consumer reports librdkafka's
// statistics; its read ends by waiting for two reports (see received).
const statsInterval = 50 * time.Millisecond

// scanWorkers is how many partitions are read at once, each by its own
// consumer: one fetch per round trip and partition is slow for a topic
// of small batches unless partitions overlap their round trips.
const scanWorkers = 4

// consumerProperties are the prefixes of kafka.properties that a consumer
// takes too (connection, security, client identity); the rest are the
// producer's tuning and would only draw librdkafka warnings.
var consumerProperties = []string{
	"security.", "sasl.", "ssl.", "ssl_", "enable.ssl", "socket.", "broker.", "api.version", "client.",
	"metadata.", "topic.metadata", "reconnect.", "retry.backoff", "connections.max.idle.ms", "debug", "log_level",
}

func openKafka(ctx context.Context, cfg *config.Config, t *schema.Table, o Options, log *slog.Logger) (*kafkaReader, error) {
	sch, err := cfg.Schema()
	if err != nil {
		return nil, err
	}
	cm := kafka.ConfigMap{
		"bootstrap.servers":    cfg.Kafka.Brokers,
		"group.id":             fmt.Sprintf("ingest-verify-%d-%d", os.Getpid(), groupSeq.Add(1)),
		"enable.auto.commit":   false,
		"enable.partition.eof": true,
		"auto.offset.reset":    "earliest",
	}
	for k, v := range cfg.Kafka.Properties {
		for _, p := range consumerProperties {
			if strings.HasPrefix(k, p) {
				cm[k] = v
				break
			}
		}
	}
	c, err := kafka.NewConsumer(cloneConfig(cm))
	if err != nil {
		return nil, fmt.Errorf("kafka consumer (kafka.brokers, kafka.properties): %w", err)
	}
	prefix, _ := json.Marshal(t.Name)
	r := &kafkaReader{
		c: c, table: t, schema: sch, window: o.Window, log: log, toEnd: o.ReadToEnd, cm: cm,
		prefix:  append(append([]byte(`{"table":`), prefix...), `,"row":`...),
		keyType: columnType(t, t.Key), idType: columnType(t, t.ID),
	}
	if err := r.findRanges(ctx); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *kafkaReader) close() { _ = r.c.Close() }

func timeoutMs(ctx context.Context) int {
	d := 30 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl))
	}
	return max(int(d.Milliseconds()), 1)
}

// findRanges fixes each partition's offsets. Listing all topics, rather
// than asking for the one, keeps a broker with auto.create.topics.enable
// from creating it.
func (r *kafkaReader) findRanges(ctx context.Context) error {
	topic := r.table.Topic
	md, err := r.c.GetMetadata(nil, true, timeoutMs(ctx))
	if err != nil {
		return fmt.Errorf("kafka: metadata: %w", err)
	}
	tm, ok := md.Topics[topic]
	if !ok || tm.Error.Code() == kafka.ErrUnknownTopicOrPart {
		return fmt.Errorf("kafka: topic %s (tables.%s.topic): %w", topic, r.table.Name, errNoTopic)
	}
	var parts []int32
	for _, p := range tm.Partitions {
		parts = append(parts, p.ID)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
	for _, p := range parts {
		lo, hi, err := r.c.QueryWatermarkOffsets(topic, p, timeoutMs(ctx))
		if err != nil {
			return fmt.Errorf("kafka: watermarks of %s[%d]: %w", topic, p, err)
		}
		r.ranges = append(r.ranges, prange{partition: p, start: kafka.Offset(lo), end: kafka.Offset(hi), hwm: kafka.Offset(hi)})
	}
	r.startMode, r.endMode = StartEarliest, EndHighWatermark
	since, until := r.window.Since, r.window.Until
	if r.toEnd {
		until = time.Time{}
	}
	if since.IsZero() && until.IsZero() {
		return nil
	}
	at := func(t time.Time) ([]kafka.TopicPartition, error) {
		tps := make([]kafka.TopicPartition, len(parts))
		for i, p := range parts {
			tps[i] = kafka.TopicPartition{Topic: &topic, Partition: p, Offset: kafka.Offset(t.UnixMilli())}
		}
		res, err := r.c.OffsetsForTimes(tps, timeoutMs(ctx))
		if err != nil {
			return nil, fmt.Errorf("kafka: offsets for times on %s: %w", topic, err)
		}
		sort.Slice(res, func(i, j int) bool { return res[i].Partition < res[j].Partition })
		return res, nil
	}
	// A broker that implements the lookup finds the first message of a
	// non-empty partition for timestamp 0. librdkafka's mock cluster
	// answers "end" to every lookup; then read whole partitions (slower,
	// still exact: every message is filtered by its row's time).
	probe, err := at(time.UnixMilli(0))
	if err != nil {
		return err
	}
	for i, rg := range r.ranges {
		if rg.start < rg.end && probe[i].Offset == kafka.OffsetEnd {
			r.startMode = StartNoTimeLookups
			r.log.Warn("the broker does not look up offsets by timestamp: reading each partition from its earliest offset to its end", "topic", topic)
			return nil
		}
	}
	if r.appendTime(ctx) {
		r.startMode = StartAppendTime
		r.log.Warn("the topic sets message.timestamp.type=LogAppendTime: timestamps are not the rows' times, reading each partition from its earliest offset to its end", "topic", topic)
		return nil
	}
	if !since.IsZero() {
		found, err := at(since)
		if err != nil {
			return err
		}
		r.startMode = StartByTimestamp
		for i := range r.ranges {
			// "end" (or no answer): no message at or after since here.
			if off := found[i].Offset; off >= 0 {
				r.ranges[i].start = max(off, r.ranges[i].start)
			} else {
				r.ranges[i].start = r.ranges[i].hwm
			}
		}
	}
	if !until.IsZero() {
		found, err := at(until)
		if err != nil {
			return err
		}
		r.endMode = EndByTimestamp
		for i := range r.ranges {
			if off := found[i].Offset; off >= 0 {
				r.ranges[i].end = min(off, r.ranges[i].hwm)
			}
		}
	}
	for i := range r.ranges {
		// Out-of-order timestamps can put until's offset before since's;
		// nothing before since's offset is in the window.
		r.ranges[i].start = min(r.ranges[i].start, r.ranges[i].hwm)
		r.ranges[i].end = max(r.ranges[i].end, r.ranges[i].start)
	}
	return nil
}

// appendTime reports whether the topic stamps messages with the broker's
// append time, which makes timestamp lookups say nothing about row times.
// A broker that does not describe the topic (no permission) is taken to
// keep the producer's time, Kafka's default.
func (r *kafkaReader) appendTime(ctx context.Context) bool {
	ac, err := kafka.NewAdminClientFromConsumer(r.c)
	if err != nil {
		r.log.Debug("kafka: admin client", "err", err)
		return false
	}
	defer ac.Close()
	dctx, cancel := context.WithTimeout(ctx, time.Duration(timeoutMs(ctx))*time.Millisecond)
	defer cancel()
	res, err := ac.DescribeConfigs(dctx, []kafka.ConfigResource{{Type: kafka.ResourceTopic, Name: r.table.Topic}})
	if err != nil || len(res) != 1 || res[0].Error.Code() != kafka.ErrNoError {
		r.log.Warn("kafka: cannot read the topic's message.timestamp.type; assuming CreateTime (the rows' times)", "topic", r.table.Topic, "err", err)
		return false
	}
	return res[0].Config["message.timestamp.type"].Value == "LogAppendTime"
}

// readsPastEnd is, per partition cut before its high watermark, the rest
// of it: where records produced out of time order (history backfilled
// after newer rows) sit.
func (r *kafkaReader) readsPastEnd() []prange {
	var out []prange
	for _, rg := range r.ranges {
		if rg.end < rg.hwm {
			out = append(out, prange{partition: rg.partition, start: rg.end, end: rg.hwm, hwm: rg.hwm})
		}
	}
	return out
}

// fetchBytes is what a partition's consumer asks for per fetch
// (max.partition.fetch.bytes). It bounds what a read receives past a
// range's end to one fetch: the next record batch whole, whatever its
// size, or the small batches that fit in fetchBytes. One byte (one batch
// per fetch) read a topic of 1-record batches, which the sink writes for
// a partition getting under a record per linger.ms, at ~1,000 messages/s:
// a round trip per record. 64 KiB brings ~60 such batches of 1 KB rows
// per round trip while the sink's batches at volume (up to 1 MB) still
// come one per fetch (docs/benchmarks.md has the figures).
const fetchBytes = 64 << 10

// fetchConfig makes a consumer receive at most fetchBytes of record
// batches per fetch and fetch only when everything it received was
// handed over, so that what it receives past a range's end is bounded by
// one fetch, not by librdkafka's prefetch (see the package doc, "What a
// read fetches"):
//   - max.partition.fetch.bytes=fetchBytes: the broker answers a fetch
//     with the record batches at the offset asked for up to that many
//     bytes, the first one whole whatever its size (KIP-74); librdkafka
//     drops a batch the limit cut. That holds for the first partition of
//     a fetch only, hence one consumer per partition; librdkafka would
//     also double the size for a partition answered with a cut batch.
//   - queued.min.messages=1: librdkafka fetches again only when its queue
//     is empty, so when the range's last offset is handed over either
//     the rest of its fetch is still queued (and dropped at the pause) or
//     the queue is empty and the fetch that may leave then is the one
//     fetch past the range that the bound allows; never both.
//   - fetch.queue.backoff.ms=1: how soon it checks again whether the queue
//     emptied (the default, 1 s, would idle between fetches).
//   - fetch.wait.max.ms: a fetch at the high watermark waits for new
//     records this long; a range never reads up to it, but a topic
//     written while verify reads must not hold a read that is done.
func fetchConfig(base kafka.ConfigMap) *kafka.ConfigMap {
	cm := cloneConfig(base)
	for k, v := range map[string]kafka.ConfigValue{
		"max.partition.fetch.bytes": fetchBytes,
		"queued.min.messages":       1,
		"fetch.queue.backoff.ms":    1,
		"fetch.wait.max.ms":         100,
		// rxmsgs, for the report's count of what was fetched.
		"statistics.interval.ms": int(statsInterval.Milliseconds()),
	} {
		(*cm)[k] = v
	}
	return cm
}

func cloneConfig(cm kafka.ConfigMap) *kafka.ConfigMap {
	out := kafka.ConfigMap{}
	for k, v := range cm {
		out[k] = v
	}
	return &out
}

// scan reads each range once and calls visit for each message of the
// table whose row time is in the window. Each partition is read by its
// own consumer (fetchConfig), up to scanWorkers at once; visit is never
// called concurrently.
func (r *kafkaReader) scan(ctx context.Context, ranges []prange, visit func(account, id string)) (scanStats, error) {
	st := scanStats{delivered: map[int32]int64{}, received: map[int32]int64{}}
	todo := make(chan prange, len(ranges))
	for _, rg := range ranges {
		if rg.start < rg.end {
			todo <- rg
		}
	}
	close(todo)
	if len(todo) == 0 {
		return st, nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var mu sync.Mutex // guards visit, st and the first error
	locked := func(account, id string) {
		mu.Lock()
		defer mu.Unlock()
		visit(account, id)
	}
	var wg sync.WaitGroup
	for range min(scanWorkers, len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rg := range todo {
				ps, rx, err := r.scanPartition(ctx, rg, locked)
				if err != nil {
					cancel(err)
					return
				}
				mu.Lock()
				st.messages += ps.messages
				st.otherTables += ps.otherTables
				st.undecodable += ps.undecodable
				st.delivered[rg.partition] = ps.messages
				st.received[rg.partition] = rx
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return st, err
	}
	return st, nil
}

// scanPartition reads one range with a consumer of its own and returns
// what it delivered and what librdkafka received from the broker for the
// partition (its rxmsgs; -1 when the statistics did not come).
func (r *kafkaReader) scanPartition(ctx context.Context, rg prange, visit func(account, id string)) (scanStats, int64, error) {
	st := scanStats{}
	topic := r.table.Topic
	c, err := kafka.NewConsumer(fetchConfig(r.cm))
	if err != nil {
		return st, -1, fmt.Errorf("kafka consumer (kafka.brokers, kafka.properties): %w", err)
	}
	defer func() { _ = c.Close() }()
	if err := c.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: rg.partition, Offset: rg.start}}); err != nil {
		return st, -1, fmt.Errorf("kafka: assign %s[%d] at offset %d: %w", topic, rg.partition, rg.start, err)
	}
	for done := false; !done; {
		if err := ctx.Err(); err != nil {
			return st, -1, fmt.Errorf("kafka: read of %s[%d] offsets %d..%d unfinished after %d messages: %w", topic, rg.partition, rg.start, rg.end, st.messages, context.Cause(ctx))
		}
		switch ev := c.Poll(100).(type) {
		case *kafka.Message:
			if ev.TopicPartition.Error != nil {
				return st, -1, fmt.Errorf("kafka: read %s[%d]: %w", topic, ev.TopicPartition.Partition, ev.TopicPartition.Error)
			}
			off := ev.TopicPartition.Offset
			// Offsets past the end: the rest of the batch holding the
			// last one, or the range ended on offsets that hold no record
			// (compaction, transaction markers).
			done = off >= rg.end-1
			if off >= rg.end {
				continue
			}
			st.messages++
			r.message(ev, &st, visit)
		case kafka.PartitionEOF:
			done = ev.Offset >= rg.end
		case kafka.Error:
			if ev.IsFatal() {
				return st, -1, fmt.Errorf("kafka: read %s[%d]: %w", topic, rg.partition, ev)
			}
			r.log.Debug("kafka consumer", "partition", rg.partition, "err", ev)
		}
	}
	// Stop fetching before the queue is polled again: a fetch that left
	// when it emptied is the one fetch past the range the bound allows,
	// but each poll that empties it again could send another. Pause marks
	// what is queued stale at once and reaches the thread that fetches
	// directly; the release goes through the consumer's main thread.
	tp := []kafka.TopicPartition{{Topic: &topic, Partition: rg.partition}}
	if err := c.Pause(tp); err != nil {
		return st, -1, fmt.Errorf("kafka: pause %s[%d]: %w", topic, rg.partition, err)
	}
	if err := c.Unassign(); err != nil {
		return st, -1, fmt.Errorf("kafka: release %s[%d]: %w", topic, rg.partition, err)
	}
	return st, r.received(ctx, c, rg.partition), nil
}

// received returns librdkafka's rxmsgs for the partition from the second
// statistics report after it was released: the first may predate the
// release, and the second also counts a fetch that was in flight then.
func (r *kafkaReader) received(ctx context.Context, c *kafka.Consumer, partition int32) int64 {
	var last *kafka.Stats
	// A generous deadline: a count from a report that predates the
	// release would be short, and is reported unknown instead.
	deadline := time.Now().Add(40 * statsInterval)
	n := 0
	for n < 2 && ctx.Err() == nil && time.Now().Before(deadline) {
		if ev, ok := c.Poll(int(statsInterval.Milliseconds())).(*kafka.Stats); ok {
			last, n = ev, n+1
		}
	}
	if n < 2 {
		r.log.Warn("kafka: librdkafka's statistics did not come after the partition was released; its fetched count is unknown", "topic", r.table.Topic, "partition", partition, "reports", n)
		return -1
	}
	var js struct {
		Topics map[string]struct {
			Partitions map[string]struct {
				RxMsgs int64 `json:"rxmsgs"`
			} `json:"partitions"`
		} `json:"topics"`
	}
	if err := json.Unmarshal([]byte(last.String()), &js); err != nil {
		r.log.Debug("kafka: consumer statistics", "err", err)
		return -1
	}
	p, ok := js.Topics[r.table.Topic].Partitions[strconv.Itoa(int(partition))]
	if !ok {
		return -1
	}
	return p.RxMsgs
}

// message finds the account, id and time of a message the way the loader
// found them in the line: the value is the row, decoded with the table's
// schema. When the value does not decode (the schema changed since, or a
// foreign producer), the message key, the record-id header and the
// message timestamp stand in.
func (r *kafkaReader) message(m *kafka.Message, st *scanStats, visit func(account, id string)) {
	table, recordID := kafkasink.RecordHeaders(m.Headers)
	if table != "" && table != r.table.Name {
		st.otherTables++
		return
	}
	line := make([]byte, 0, len(r.prefix)+len(m.Value)+1)
	line = append(append(append(line, r.prefix...), m.Value...), '}')
	account, id, t := string(m.Key), recordID, m.Timestamp
	if rec, err := r.schema.Decode(line, ""); err == nil {
		account, id, t = rec.Key, rec.ID, rec.Time
	} else {
		st.undecodable++
	}
	if !r.window.Contains(t) {
		return
	}
	visit(canonical(r.keyType, account), canonical(r.idType, id))
}
