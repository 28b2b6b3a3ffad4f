package rdk_test

import (
	"bytes"
	"fmt"
	"strconv"
	"syscall"
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
// BenchmarkBindingVsConfluent runs both, to see what the binding buys (at
// least 1.25x, or it goes). Both report msgs/s and the process's CPU time
// per message (cpu-ns/msg), which on a busy machine is the steadier of the
// two. Alternate separate runs, each with its own broker, and compare
// medians:
//
//	go test -c -o /tmp/rdk.test ./kafkasink/internal/rdk/
//	cd kafkasink/internal/rdk
//	for i in 1 2 3; do for w in binding confluent; do
//		/tmp/rdk.test -test.run '^$' -test.bench "BindingVsConfluent/$w\$" -test.benchtime 200000x
//	done; done
func BenchmarkBindingVsConfluent(b *testing.B) {
	b.Run("binding", func(b *testing.B) { benchProduce(b, 3) })
	b.Run("confluent", func(b *testing.B) { benchProduceConfluent(b, false) })
	b.Run("confluent-opaque", func(b *testing.B) { benchProduceConfluent(b, true) })
}

// benchProduceConfluent with opaque set is what a sink built on the
// Producer would do: tag each message with an Opaque (the sink needs it to
// find the message's batch; the Producer keeps it in a map until the
// report) and ask for no message fields back in delivery reports (the
// sink needs only the opaque, partition and error). Without it, the
// reports copy key and headers back into Go and no opaque is tracked.
func benchProduceConfluent(b *testing.B, opaque bool) {
	c := testenv.Broker(b)
	name := testenv.Topic(b, c, kafkaserver.TopicSpec{Partitions: 6})
	fields := "key,headers"
	var refs []int // what each message's Opaque points at: no allocation per message
	if opaque {
		fields, refs = "none", make([]int, b.N)
	}
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers": c.Bootstrap(), "acks": "all", "enable.idempotence": true,
		"linger.ms": 10, "compression.type": "lz4", "message.timeout.ms": 0,
		"partitioner": "murmur2_random", "batch.num.messages": 10000, "batch.size": 1000000,
		"queue.buffering.max.kbytes": 262144, "queue.buffering.max.messages": 100000,
		"go.delivery.reports": true, "go.delivery.report.fields": fields,
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
			if opaque {
				if ref, ok := m.Opaque.(*int); !ok || ref != &refs[*ref] {
					done <- fmt.Errorf("delivery report with opaque %v", m.Opaque)
					return
				}
			}
			n++
		}
		done <- nil
	}()
	b.SetBytes(int64(len(value)))
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU(b)
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
		if opaque {
			refs[i] = i
			m.Opaque = &refs[i]
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
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/msg")
}

// processCPU is the CPU time this process has used, user and system, on
// all its threads (Go's and librdkafka's; not the broker's, a child JVM).
// Per message it is what the binding is meant to save, and unlike
// msgs/s it hardly depends on what else the machine is running.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
