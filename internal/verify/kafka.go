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

	// rx is librdkafka's cumulative rxmsgs per partition at the end of
	// the last scan.
	rx map[int32]int64

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
	// received those the consumer got from the broker (librdkafka's
	// rxmsgs), prefetched ones past the range included; nil when its
	// statistics did not come.
	delivered, received map[int32]int64
}

var groupSeq atomic.Int64

// statsInterval is how often librdkafka reports its statistics; a scan
// ends by waiting for two reports (see received).
const statsInterval = 200 * time.Millisecond

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
		// librdkafka prefetches ahead of what it hands over, up to 64 MiB
		// by default, and what lies past a window's end is fetched in vain
		// until the partition is released. 16 MiB keeps reads streaming.
		// It is a loose bound: on the window test (2 KB rows) it fetched
		// 700-900 messages per partition past the end whatever these
		// limits; the report counts them (PartitionRead.Fetched).
		"queued.max.messages.kbytes": 16 << 10,
		// rxmsgs per partition, for the report's count of what was fetched.
		"statistics.interval.ms": int(statsInterval.Milliseconds()),
	}
	for k, v := range cfg.Kafka.Properties {
		for _, p := range consumerProperties {
			if strings.HasPrefix(k, p) {
				cm[k] = v
				break
			}
		}
	}
	c, err := kafka.NewConsumer(&cm)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer (kafka.brokers, kafka.properties): %w", err)
	}
	prefix, _ := json.Marshal(t.Name)
	r := &kafkaReader{
		c: c, table: t, schema: sch, window: o.Window, log: log, toEnd: o.ReadToEnd, rx: map[int32]int64{},
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

// scan reads each range once and calls visit for each message of the
// table whose row time is in the window. A partition is released as soon
// as its range is read, so the consumer stops fetching it.
func (r *kafkaReader) scan(ctx context.Context, ranges []prange, visit func(account, id string)) (scanStats, error) {
	st := scanStats{delivered: map[int32]int64{}}
	topic := r.table.Topic
	var assign []kafka.TopicPartition
	pending := map[int32]kafka.Offset{} // partition -> end
	for _, rg := range ranges {
		if rg.start >= rg.end {
			continue
		}
		assign = append(assign, kafka.TopicPartition{Topic: &topic, Partition: rg.partition, Offset: rg.start})
		pending[rg.partition] = rg.end
	}
	if len(assign) == 0 {
		return st, nil
	}
	if err := r.c.IncrementalAssign(assign); err != nil {
		return st, fmt.Errorf("kafka: assign %s: %w", topic, err)
	}
	defer func() { // on an early return: stop fetching what is left
		var left []kafka.TopicPartition
		for p := range pending {
			left = append(left, kafka.TopicPartition{Topic: &topic, Partition: p})
		}
		if len(left) > 0 {
			_ = r.c.IncrementalUnassign(left)
		}
	}()
	release := func(p int32) error {
		delete(pending, p)
		if err := r.c.IncrementalUnassign([]kafka.TopicPartition{{Topic: &topic, Partition: p}}); err != nil {
			return fmt.Errorf("kafka: release %s[%d]: %w", topic, p, err)
		}
		return nil
	}
	for len(pending) > 0 {
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("kafka: read %s: %d partition(s) unfinished: %w", topic, len(pending), err)
		}
		switch ev := r.c.Poll(100).(type) {
		case *kafka.Message:
			if ev.TopicPartition.Error != nil {
				return st, fmt.Errorf("kafka: read %s[%d]: %w", topic, ev.TopicPartition.Partition, ev.TopicPartition.Error)
			}
			p, off := ev.TopicPartition.Partition, ev.TopicPartition.Offset
			end, ok := pending[p]
			if !ok {
				continue // queued before the partition was released
			}
			if off >= end-1 {
				if err := release(p); err != nil {
					return st, err
				}
			}
			if off >= end {
				continue // past the range (offsets skipped: compaction, transaction markers)
			}
			st.delivered[p]++
			st.messages++
			r.message(ev, &st, visit)
		case kafka.PartitionEOF:
			if end, ok := pending[ev.Partition]; ok && ev.Offset >= end {
				if err := release(ev.Partition); err != nil {
					return st, err
				}
			}
		case kafka.Error:
			if ev.IsFatal() {
				return st, fmt.Errorf("kafka: read %s: %w", topic, ev)
			}
			r.log.Debug("kafka consumer", "err", ev)
		}
	}
	st.received = r.received(ctx)
	return st, nil
}

// received returns what librdkafka got from the broker per partition since
// the last call (its rxmsgs), from the second statistics report after the
// partitions were released: the first may predate the release, and the
// second also counts a fetch that was in flight then.
func (r *kafkaReader) received(ctx context.Context) map[int32]int64 {
	var last *kafka.Stats
	deadline := time.Now().Add(5 * statsInterval)
	for n := 0; n < 2 && ctx.Err() == nil && time.Now().Before(deadline); {
		if ev, ok := r.c.Poll(int(statsInterval.Milliseconds())).(*kafka.Stats); ok {
			last, n = ev, n+1
		}
	}
	if last == nil {
		r.log.Debug("kafka: no consumer statistics; fetched counts unknown")
		return nil
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
		return nil
	}
	out := map[int32]int64{}
	for id, p := range js.Topics[r.table.Topic].Partitions {
		n, err := strconv.ParseInt(id, 10, 32)
		if err != nil || n < 0 { // "-1" is librdkafka's unassigned-partition placeholder
			continue
		}
		out[int32(n)] = p.RxMsgs - r.rx[int32(n)]
		r.rx[int32(n)] = p.RxMsgs
	}
	return out
}

// message finds the account, id and time of a message the way the loader
// found them in the line: the value is the row, decoded with the table's
// schema. When the value does not decode (the schema changed since, or a
// foreign producer), the message key, the record-id header and the
// message timestamp stand in.
func (r *kafkaReader) message(m *kafka.Message, st *scanStats, visit func(account, id string)) {
	var table, recordID string
	for _, h := range m.Headers {
		switch h.Key {
		case kafkasink.HeaderTable:
			table = string(h.Value)
		case kafkasink.HeaderRecordID:
			recordID = string(h.Value)
		}
	}
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
