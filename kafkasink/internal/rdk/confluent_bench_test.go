package rdk_test

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/internal/testenv"
)

// BenchmarkProduceConfluent is BenchmarkProduce's traffic (2 KB values,
// keys from 5,000 accounts, the sink's three headers, delivery reports
// awaited) through confluent-kafka-go's own Producer, used as well as it
// allows: Produce per message onto one shared delivery channel drained by
// one goroutine, the same librdkafka properties, the same real broker.
// BenchmarkBindingVsConfluent runs both side by side, alternating with
// -count, to see what the binding buys (at least 1.25x, or it goes):
//
//	go test -run '^$' -bench BindingVsConfluent -benchtime 200000x -count 5 ./kafkasink/internal/rdk/
func BenchmarkBindingVsConfluent(b *testing.B) {
	b.Run("binding", func(b *testing.B) { benchProduce(b, 3) })
	b.Run("confluent", benchProduceConfluent)
}

func benchProduceConfluent(b *testing.B) {
	c := testenv.Broker(b)
	name := testenv.Topic(b, c, kafkaserver.TopicSpec{Partitions: 6})
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers": c.Bootstrap(), "acks": "all", "enable.idempotence": true,
		"linger.ms": 10, "compression.type": "lz4", "message.timeout.ms": 0,
		"partitioner": "murmur2_random", "batch.num.messages": 10000, "batch.size": 1000000,
		"queue.buffering.max.kbytes": 262144, "queue.buffering.max.messages": 100000,
		"go.delivery.reports": true, "go.delivery.report.fields": "key,headers",
	})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	value := bytes.Repeat([]byte("x"), 2000)
	dr := make(chan kafka.Event, 4096)
	done := make(chan error, 1)
	go func() {
		for n := 0; n < b.N; {
			m, ok := (<-dr).(*kafka.Message)
			if !ok {
				continue
			}
			if m.TopicPartition.Error != nil {
				done <- m.TopicPartition.Error
				return
			}
			n++
		}
		done <- nil
	}()
	b.SetBytes(int64(len(value)))
	b.ResetTimer()
	start := time.Now()
	tp := kafka.TopicPartition{Topic: &name, Partition: kafka.PartitionAny}
	for i := 0; i < b.N; i++ {
		m := &kafka.Message{
			TopicPartition: tp,
			Key:            strconv.AppendInt(nil, int64(i%5000), 10),
			Value:          value,
			Headers: []kafka.Header{
				{Key: "h.table", Value: []byte("bench")},
				{Key: "h.id", Value: strconv.AppendInt(nil, int64(i), 10)},
				{Key: "h.src", Value: strconv.AppendInt(nil, int64(i), 10)},
			},
		}
		for {
			err := p.Produce(m, dr)
			if err == nil {
				break
			}
			if err.(kafka.Error).Code() != kafka.ErrQueueFull {
				b.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
