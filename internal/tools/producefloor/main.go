// Command producefloor produces the lines of a key<TAB>value file to a
// topic through confluent-kafka-go's Producer with the Kafka sink's
// properties and message shape, and nothing else: no loader, no decode,
// no checkpoints. scripts/bench-e2e times it beside `kcat -P` and
// `ingest backfill --sink kafka` (its "producer" row), so the gap between
// kcat and the sink splits into what the Go binding costs (kcat →
// producefloor) and what the loader and sink add (producefloor → ingest).
//
// Usage:
//
//	producefloor -brokers HOST:PORT -topic T [-headers] [-chan=false] FILE
//
// It exits 1 if a delivery report carries an error or fewer reports than
// messages arrive.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/dualwrite/ingest/kafkasink"
)

func main() {
	brokers := flag.String("brokers", "", "bootstrap.servers")
	topic := flag.String("topic", "", "topic to produce to")
	headers := flag.Bool("headers", true, "send the sink's three headers (table, record id, source) on every message")
	perMsgChan := flag.Bool("chan", true, "pass a delivery channel to every Produce, as the sink does (false: reports on the Events channel)")
	flag.Parse()
	if *brokers == "" || *topic == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: producefloor -brokers HOST:PORT -topic T [-headers] [-chan=false] FILE")
		os.Exit(2)
	}
	n, err := run(*brokers, *topic, flag.Arg(0), *headers, *perMsgChan)
	if err != nil {
		fmt.Fprintln(os.Stderr, "producefloor:", err)
		os.Exit(1)
	}
	fmt.Printf("producefloor: %d messages delivered\n", n)
}

func run(brokers, topic, path string, headers, perMsgChan bool) (int, error) {
	conf := kafka.ConfigMap{
		"bootstrap.servers":         brokers,
		"go.delivery.report.fields": "none",
		"go.events.channel.size":    1000,
		"go.produce.channel.size":   1,
	}
	for k, v := range kafkasink.DefaultProperties() {
		conf[k] = v
	}
	if !perMsgChan {
		conf["go.events.channel.size"] = 4096 // the sink's delivery channel size
	}
	p, err := kafka.NewProducer(&conf)
	if err != nil {
		return 0, err
	}
	defer p.Close()

	// One goroutine counts reports; the producer waits on room when
	// librdkafka's queue is full.
	var dr chan kafka.Event
	reports := p.Events()
	if perMsgChan {
		dr = make(chan kafka.Event, 4096)
		reports = dr
	}
	room := make(chan struct{}, 1)
	type tally struct{ delivered, failed int }
	final := make(chan tally)
	want := make(chan int, 1) // the number of messages produced, once known
	stop := make(chan struct{})
	defer close(stop) // on an early return; after <-final it is a no-op for the goroutine
	go func() {
		var t tally
		target := -1
		for target < 0 || t.delivered+t.failed < target {
			select {
			case <-stop:
				return
			case n := <-want:
				target = n
				continue
			case ev := <-reports:
				m, ok := ev.(*kafka.Message)
				if !ok {
					continue // errors and stats; a failed message shows in its report
				}
				if m.TopicPartition.Error != nil {
					t.failed++
				} else {
					t.delivered++
				}
				select {
				case room <- struct{}{}:
				default:
				}
			}
		}
		select {
		case final <- t:
		case <-stop:
		}
	}()

	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	hdrs := make([]kafka.Header, 0, 3)
	if headers {
		hdrs = append(hdrs,
			kafka.Header{Key: kafkasink.HeaderTable, Value: []byte(topic)},
			kafka.Header{Key: kafkasink.HeaderRecordID, Value: []byte("3f1c9a52-7d4e-4b8a-9c61-0e2d5f7a8b90")},
			kafka.Header{Key: kafkasink.HeaderSource})
	}
	src := []byte("api/0000000000000001-20261122T000000.000Z.ndjson/")
	tp := kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny}
	n := 0
	for line := 1; ; line++ {
		b, err := r.ReadSlice('\n')
		if errors.Is(err, io.EOF) && len(b) == 0 {
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return n, fmt.Errorf("%s line %d: %w", path, line, err)
		}
		b = bytes.TrimSuffix(b, []byte("\n"))
		key, val, ok := bytes.Cut(b, []byte("\t"))
		if !ok {
			return n, fmt.Errorf("%s line %d: no tab between key and value", path, line)
		}
		msg := &kafka.Message{TopicPartition: tp, Key: key, Value: val}
		if headers {
			// The source header differs per message, as the sink's does.
			hdrs[2].Value = strconv.AppendInt(src[:len(src):len(src)], int64(line), 10)
			msg.Headers = hdrs
		}
		for {
			err = p.Produce(msg, dr)
			var kerr kafka.Error
			if !errors.As(err, &kerr) || kerr.Code() != kafka.ErrQueueFull {
				break
			}
			select {
			case <-room:
			case <-time.After(time.Minute):
				return n, fmt.Errorf("%s line %d: librdkafka's queue stayed full for a minute", path, line)
			}
		}
		if err != nil {
			return n, fmt.Errorf("%s line %d: produce: %w", path, line, err)
		}
		n++
	}
	want <- n
	t := <-final
	if t.failed > 0 {
		return t.delivered, fmt.Errorf("%d of %d messages failed", t.failed, n)
	}
	return t.delivered, nil
}
