package mockkafka_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/dualwrite/ingest/internal/mockkafka"
)

// Produce to a mock cluster with a real producer and read it back.
func ExampleCluster_Consume() {
	c, err := mockkafka.New(3)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.CreateTopic("raw_item", 4); err != nil {
		log.Fatal(err)
	}

	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": c.Bootstrap(), "acks": "all"})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	topic := "raw_item"
	reports := make(chan kafka.Event, 1)
	msg := &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
		Key:            []byte("42"),
		Value:          []byte(`{"project_id":42}`),
	}
	if err := p.Produce(msg, reports); err != nil {
		log.Fatal(err)
	}
	if m := (<-reports).(*kafka.Message); m.TopicPartition.Error != nil {
		log.Fatal(m.TopicPartition.Error)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := c.Consume(ctx, "raw_item", 1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s %s\n", msgs[0].Key, msgs[0].Value)
	// Output: 42 {"project_id":42}
}
