package consume

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/loader"
)

// Headers of a dead-lettered message, beside the source message's own
// headers (kept, so the record id and source position survive).
const (
	HeaderReason    = "ingest.dlq.reason"    // why: a schema.Reason, "db_rejected", "bad_column", "unknown_table"
	HeaderDetail    = "ingest.dlq.detail"    // a human-readable explanation
	HeaderTopic     = "ingest.dlq.topic"     // the source topic
	HeaderPartition = "ingest.dlq.partition" // the source partition, decimal
	HeaderOffset    = "ingest.dlq.offset"    // the source offset, decimal
)

// letter is one bad message on its way to the dead letters.
type letter struct {
	topic     string
	partition int32
	offset    int64
	key       []byte
	value     []byte
	headers   []kafka.Header
	reason    string
	detail    string
}

// deadLetters makes letters durable: write returns only once the letter
// is acknowledged by the dead-letter topic's in-sync replicas (acks=all)
// or fsynced to the dead-letter file, because the caller then lets the
// partition's offset move past the message. It is safe for concurrent
// use: PostgreSQL's rejections come from the sink's goroutines.
type deadLetters interface {
	write(ctx context.Context, l letter) error
	close()
}

func newDeadLetters(ctx context.Context, cfg *config.Config, o Options) (deadLetters, error) {
	if o.DeadLetterFile != "" {
		f, err := os.OpenFile(o.DeadLetterFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, &ArgError{fmt.Errorf("dead-letter file: %w", err)}
		}
		return &fileLetters{f: f}, nil
	}
	cm := kafkaConfig(cfg, nil)
	// No loss and no expiry: a dead letter waits for the broker like the
	// rows wait for PostgreSQL.
	cm["acks"] = "all"
	cm["enable.idempotence"] = true
	cm["message.timeout.ms"] = 0
	cm["linger.ms"] = 5
	for k, v := range cfg.Kafka.Properties {
		// The file loader's producer settings (security included) apply
		// to this producer too.
		if _, set := cm[k]; !set {
			cm[k] = v
		}
	}
	p, err := kafka.NewProducer(&cm)
	if err != nil {
		return nil, &ArgError{fmt.Errorf("dead-letter producer (kafka.brokers, kafka.properties): %w", err)}
	}
	tl := &topicLetters{p: p, o: o, done: make(chan struct{})}
	// Delivery reports come on each message's own channel; the events
	// channel carries only errors and logs, drained here until Close
	// closes it.
	go func() {
		defer close(tl.done)
		for ev := range p.Events() {
			if e, ok := ev.(kafka.Error); ok {
				o.Logger.Warn("dead-letter producer", "err", e)
			}
		}
	}()
	return tl, nil
}

type topicLetters struct {
	p    *kafka.Producer
	o    Options
	done chan struct{}
}

func (t *topicLetters) write(ctx context.Context, l letter) error {
	topic := deadLetterTopic(t.o, l.topic)
	hs := make([]kafka.Header, 0, len(l.headers)+5)
	hs = append(hs, l.headers...)
	hs = append(hs,
		kafka.Header{Key: HeaderReason, Value: []byte(l.reason)},
		kafka.Header{Key: HeaderDetail, Value: []byte(l.detail)},
		kafka.Header{Key: HeaderTopic, Value: []byte(l.topic)},
		kafka.Header{Key: HeaderPartition, Value: strconv.AppendInt(nil, int64(l.partition), 10)},
		kafka.Header{Key: HeaderOffset, Value: strconv.AppendInt(nil, l.offset, 10)},
	)
	report := make(chan kafka.Event, 1)
	msg := &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
		Key:            l.key, Value: l.value, Headers: hs,
	}
	for {
		err := t.p.Produce(msg, report)
		if err == nil {
			break
		}
		if ke, ok := err.(kafka.Error); !ok || ke.Code() != kafka.ErrQueueFull {
			return fmt.Errorf("dead-letter topic %s: produce message of topic %s partition %d offset %d: %w", topic, l.topic, l.partition, l.offset, err)
		}
		select { // the producer's queue is full: let it drain
		case <-ctx.Done():
			return fmt.Errorf("dead-letter topic %s: %w", topic, context.Cause(ctx))
		case <-time.After(10 * time.Millisecond):
		}
	}
	select {
	case ev := <-report:
		m, ok := ev.(*kafka.Message)
		if !ok {
			return fmt.Errorf("dead-letter topic %s: unexpected delivery event %v", topic, ev)
		}
		if m.TopicPartition.Error != nil {
			return fmt.Errorf("dead-letter topic %s: message of topic %s partition %d offset %d not delivered: %w",
				topic, l.topic, l.partition, l.offset, m.TopicPartition.Error)
		}
		return nil
	case <-ctx.Done():
		// The message may still be delivered: a dead letter may repeat,
		// it is never lost, since the offset does not move past it.
		return fmt.Errorf("dead-letter topic %s: waiting for delivery: %w", topic, context.Cause(ctx))
	}
}

func (t *topicLetters) close() {
	t.p.Flush(5000)
	t.p.Close()
	<-t.done
}

// fileLetters appends letters to a file as loader.DeadLetter JSON lines,
// the loader's own dead-letter format: Stream is "<topic>/<partition>",
// File the topic and Offset the Kafka offset.
type fileLetters struct {
	mu sync.Mutex
	f  *os.File
}

func (fl *fileLetters) write(_ context.Context, l letter) error {
	dl := loader.DeadLetter{
		Time: time.Now().UTC(), Stream: Stream(l.topic, l.partition), Sink: "consume", Reason: l.reason, Detail: l.detail,
		File: l.topic, Offset: l.offset, Length: int64(len(l.value)),
	}
	if utf8.Valid(l.value) {
		s := string(l.value)
		dl.Line = &s
	} else {
		dl.LineBase64 = base64.StdEncoding.EncodeToString(l.value)
	}
	b, err := json.Marshal(dl)
	if err != nil {
		return fmt.Errorf("dead-letter file: %w", err)
	}
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if _, err := fl.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("dead-letter file %s: message of topic %s partition %d offset %d: %w", fl.f.Name(), l.topic, l.partition, l.offset, err)
	}
	if err := fl.f.Sync(); err != nil {
		return fmt.Errorf("dead-letter file %s: sync: %w", fl.f.Name(), err)
	}
	return nil
}

func (fl *fileLetters) close() { fl.f.Close() }
