package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sort"
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
)

// kafkaReader reads a topic's messages of one table between fixed offsets:
// from the first offset whose timestamp is at or after the window's start
// (OffsetsForTimes; the sink sets the timestamp from the time field) to the
// high watermark seen at the start, so both passes read the same messages
// and live producing does not extend the read.
type kafkaReader struct {
	c         *kafka.Consumer
	table     *schema.Table
	schema    *schema.Schema
	window    loader.Window
	log       *slog.Logger
	ranges    []prange
	startMode string
	prefix    []byte // `{"table":"<name>","row":`

	keyType, idType schema.Type
}

type prange struct {
	partition  int32
	start, end kafka.Offset
}

type scanStats struct {
	messages, otherTables, undecodable int64
}

var groupSeq atomic.Int64

// consumerProperties are the prefixes of kafka.properties that a consumer
// takes too (connection, security, client identity); the rest are the
// producer's tuning and would only draw librdkafka warnings.
var consumerProperties = []string{
	"security.", "sasl.", "ssl.", "ssl_", "enable.ssl", "socket.", "broker.", "api.version", "client.",
	"metadata.", "topic.metadata", "reconnect.", "retry.backoff", "connections.max.idle.ms", "debug", "log_level",
}

func openKafka(ctx context.Context, cfg *config.Config, t *schema.Table, w loader.Window, log *slog.Logger) (*kafkaReader, error) {
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
	c, err := kafka.NewConsumer(&cm)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer (kafka.brokers, kafka.properties): %w", err)
	}
	prefix, _ := json.Marshal(t.Name)
	r := &kafkaReader{
		c: c, table: t, schema: sch, window: w, log: log,
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
	lows := make([]int64, len(parts))
	for i, p := range parts {
		lo, hi, err := r.c.QueryWatermarkOffsets(topic, p, timeoutMs(ctx))
		if err != nil {
			return fmt.Errorf("kafka: watermarks of %s[%d]: %w", topic, p, err)
		}
		lows[i] = lo
		r.ranges = append(r.ranges, prange{partition: p, start: kafka.Offset(lo), end: kafka.Offset(hi)})
	}
	r.startMode = StartEarliest
	if r.window.Since.IsZero() {
		return nil
	}
	at := func(ms int64) ([]kafka.TopicPartition, error) {
		tps := make([]kafka.TopicPartition, len(parts))
		for i, p := range parts {
			tps[i] = kafka.TopicPartition{Topic: &topic, Partition: p, Offset: kafka.Offset(ms)}
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
	// answers "end" to every lookup; then read from the earliest offset
	// (slower, still exact: every message is filtered by its row's time).
	probe, err := at(0)
	if err != nil {
		return err
	}
	for i, rg := range r.ranges {
		if rg.start < rg.end && probe[i].Offset == kafka.OffsetEnd {
			r.startMode = StartNoTimeLookups
			r.log.Warn("the broker does not look up offsets by timestamp: reading each partition from its earliest offset", "topic", topic)
			return nil
		}
	}
	found, err := at(r.window.Since.UnixMilli())
	if err != nil {
		return err
	}
	r.startMode = StartByTimestamp
	for i := range r.ranges {
		switch off := found[i].Offset; {
		case off == kafka.OffsetEnd || off < 0:
			// No message at or after Since: nothing of the window here.
			r.ranges[i].start = r.ranges[i].end
		default:
			r.ranges[i].start = max(off, kafka.Offset(lows[i]))
		}
	}
	return nil
}

// scan reads every partition's range once and calls visit for each
// message of the table whose row time is in the window.
func (r *kafkaReader) scan(ctx context.Context, visit func(account, id string)) (scanStats, error) {
	var st scanStats
	topic := r.table.Topic
	var assign []kafka.TopicPartition
	pending := map[int32]kafka.Offset{} // partition -> end
	for _, rg := range r.ranges {
		if rg.start >= rg.end {
			continue
		}
		assign = append(assign, kafka.TopicPartition{Topic: &topic, Partition: rg.partition, Offset: rg.start})
		pending[rg.partition] = rg.end
	}
	if len(assign) == 0 {
		return st, nil
	}
	if err := r.c.Assign(assign); err != nil {
		return st, fmt.Errorf("kafka: assign %s: %w", topic, err)
	}
	defer func() { _ = r.c.Unassign() }()
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
			if !ok || off >= end {
				continue // past the range (a message produced since the start)
			}
			if off >= end-1 {
				delete(pending, p)
			}
			st.messages++
			r.message(ev, &st, visit)
		case kafka.PartitionEOF:
			if end, ok := pending[ev.Partition]; ok && ev.Offset >= end {
				delete(pending, ev.Partition)
			}
		case kafka.Error:
			if ev.IsFatal() {
				return st, fmt.Errorf("kafka: read %s: %w", topic, ev)
			}
			r.log.Debug("kafka consumer", "err", ev)
		}
	}
	return st, nil
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
