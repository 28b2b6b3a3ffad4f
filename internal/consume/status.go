package consume

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/dualwrite/ingest/dbsink"
	"github.com/dualwrite/ingest/internal/config"
)

// PartitionStatus is where a group stands on one partition.
type PartitionStatus struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Checkpoint is the next offset to load, from PostgreSQL: the
	// group's true position. -1 when the group never committed there.
	Checkpoint int64 `json:"checkpoint"`
	// KafkaCommitted is the group's committed offset in Kafka, which
	// follows Checkpoint for lag tools; -1 when none.
	KafkaCommitted int64 `json:"kafka_committed"`
	// End is the partition's high watermark.
	End int64 `json:"end"`
	// Lag is End minus Checkpoint (minus the partition's beginning when
	// there is no checkpoint).
	Lag int64 `json:"lag"`
}

// Status reports, per partition of the consumed topics, the group's
// checkpoint in PostgreSQL, its committed offset in Kafka and the lag,
// for `ingest consume --status`. It joins no group.
func Status(ctx context.Context, cfg *config.Config, o Options) ([]PartitionStatus, error) {
	if !cfg.DBEnabled() || !cfg.KafkaEnabled() {
		return nil, argErrorf("consume status needs db.url and kafka.brokers")
	}
	sch, err := cfg.Schema()
	if err != nil {
		return nil, &ArgError{err}
	}
	tt, err := selectTables(sch, o.Tables)
	if err != nil {
		return nil, err
	}
	if o.Group == "" {
		if o.Group, err = DefaultGroup(cfg.DB.URL); err != nil {
			return nil, &ArgError{err}
		}
	}
	db, err := dbsink.New(ctx, dbsink.Config{URL: cfg.DB.URL, Schema: sch, Name: SinkName(o.Group), PoolSize: 1})
	if err != nil {
		return nil, &ArgError{fmt.Errorf("db.url: %w", err)}
	}
	defer db.Close()
	// group.id is the group's, to read its committed offsets; a consumer
	// that never subscribes does not join it.
	c, err := kafka.NewConsumer(ptr(kafkaConfig(cfg, map[string]string{"group.id": o.Group, "enable.auto.commit": "false"})))
	if err != nil {
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	defer c.Close()
	var out []PartitionStatus
	for _, topic := range tt.topics() {
		md, err := c.GetMetadata(&topic, false, timeoutMs(ctx, 30*time.Second))
		if err != nil {
			return nil, fmt.Errorf("metadata of topic %s: %w", topic, err)
		}
		tm := md.Topics[topic]
		if tm.Error.Code() != kafka.ErrNoError || len(tm.Partitions) == 0 {
			return nil, fmt.Errorf("topic %s: %v", topic, tm.Error)
		}
		tps := make([]kafka.TopicPartition, len(tm.Partitions))
		for i, p := range tm.Partitions {
			tps[i] = kafka.TopicPartition{Topic: &topic, Partition: p.ID}
		}
		committed, err := c.Committed(tps, timeoutMs(ctx, 30*time.Second))
		if err != nil {
			return nil, fmt.Errorf("committed offsets of topic %s: %w", topic, err)
		}
		for i, tp := range tps {
			st := PartitionStatus{Topic: topic, Partition: tp.Partition, Checkpoint: -1, KafkaCommitted: -1}
			cp, ok, err := db.Checkpoint(ctx, Stream(topic, tp.Partition))
			if err != nil {
				return nil, err
			}
			if ok {
				st.Checkpoint = cp.Offset
			}
			if i < len(committed) && committed[i].Offset >= 0 {
				st.KafkaCommitted = int64(committed[i].Offset)
			}
			lo, hi, err := c.QueryWatermarkOffsets(topic, tp.Partition, timeoutMs(ctx, 30*time.Second))
			if err != nil {
				return nil, fmt.Errorf("watermarks of topic %s partition %d: %w", topic, tp.Partition, err)
			}
			st.End = hi
			from := st.Checkpoint
			if from < 0 {
				from = lo
			}
			st.Lag = max(hi-from, 0)
			out = append(out, st)
		}
	}
	return out, nil
}

// WriteStatus prints sts as a table.
func WriteStatus(w io.Writer, group string, sts []PartitionStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "group %s (checkpoints: sink %s in PostgreSQL)\n", group, SinkName(group))
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tCHECKPOINT\tKAFKA COMMITTED\tEND\tLAG")
	var total int64
	for _, s := range sts {
		cp, kc := "-", "-"
		if s.Checkpoint >= 0 {
			cp = fmt.Sprint(s.Checkpoint)
		}
		if s.KafkaCommitted >= 0 {
			kc = fmt.Sprint(s.KafkaCommitted)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%d\n", s.Topic, s.Partition, cp, kc, s.End, s.Lag)
		total += s.Lag
	}
	fmt.Fprintf(tw, "total lag\t\t\t\t\t%d\n", total)
	return tw.Flush()
}
