package kafkasink_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/dualwrite/ingest/internal/mockkafka"
	"github.com/dualwrite/ingest/kafkasink"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
)

// Start the sink for the topics of the tables routed to Kafka, hand it a
// batch, and wait for the ack that lets the loader advance its checkpoint.
// Mock: an example must run anywhere (it is what `kafka.brokers: embedded`
// uses); the guarantees are tested on a real broker.
func ExampleSink_Submit() {
	cluster, sch := exampleCluster() // stands in for kafka.brokers
	defer cluster.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sink, err := kafkasink.New(ctx, kafkasink.Config{
		Brokers: cluster.Bootstrap(),
		Topics:  []string{"raw_item"}, // every routed table's Topic
	})
	if err != nil {
		log.Fatal(err)
	}
	defer sink.Close(ctx)

	batch := exampleBatch(sch) // one line of stream "api", decoded as the loader does

	acked := make(chan error, 1)
	if err := sink.Submit(ctx, batch, func(err error) { acked <- err }); err != nil {
		log.Fatal(err)
	}
	fmt.Println("acked:", <-acked) // now the loader may save batch.End

	msgs, err := cluster.Consume(ctx, "raw_item", 1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("key %s value %s\n", msgs[0].Key, msgs[0].Value)
	// Output:
	// acked: <nil>
	// key 42 value {"project_id":42,"body":"hello"}
}

// New refuses to start when a topic is missing, and says how to create it.
// Mock: an example must run anywhere; TestMissingTopic checks
// this on a real broker.
func ExampleNew_missingTopic() {
	cluster, err := mockkafka.New(1)
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = kafkasink.New(ctx, kafkasink.Config{Brokers: cluster.Bootstrap(), Topics: []string{"raw_item"}})
	var missing *kafkasink.MissingTopicError
	if errors.As(err, &missing) {
		fmt.Println("missing:", missing.Topics)
	}
	// Output:
	// missing: [raw_item]
}

// Start the sink in the background, as `ingest run` does, so that a broker
// outage at start holds up nothing else: StartErr returns a missing topic
// at once when a broker answers (and nil at once when none accepts a
// connection), Submit queues batches until the sink is built, Fatal
// reports a missing topic found later, and Ready serves a readiness
// check. Mock: an example must run anywhere; the outage at start is
// tested on a real broker (cmd/ingest, internal/runner).
func ExampleStart() {
	cluster, sch := exampleCluster()
	defer cluster.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sink := kafkasink.Start(ctx, kafkasink.Config{Brokers: cluster.Bootstrap(), Topics: []string{"raw_item"}})
	defer sink.Close(ctx)
	if err := sink.StartErr(ctx); err != nil {
		log.Fatal(err) // a missing topic or a config error: waiting would not fix it
	}
	go func() {
		select {
		case err := <-sink.Fatal():
			log.Fatal(err) // the same, found once a broker answered
		case <-ctx.Done():
		}
	}()

	batch := exampleBatch(sch) // one line of stream "api", decoded as the loader does
	acked := make(chan error, 1)
	if err := sink.Submit(ctx, batch, func(err error) { acked <- err }); err != nil {
		log.Fatal(err)
	}
	fmt.Println("acked:", <-acked)
	fmt.Println("ready:", sink.Ready(ctx))
	// Output:
	// acked: <nil>
	// ready: <nil>
}

// exampleCluster starts librdkafka's mock cluster with the topic raw_item
// (3 partitions), and returns it with the schema of the table raw_item.
func exampleCluster() (*mockkafka.Cluster, *schema.Schema) {
	cluster, err := mockkafka.New(1)
	if err != nil {
		log.Fatal(err)
	}
	if err := cluster.CreateTopic("raw_item", 3); err != nil {
		log.Fatal(err)
	}
	sch, err := schema.New(map[string]*schema.Table{
		"raw_item": {Key: "project_id", Columns: map[string]string{"project_id": "bigint", "body": "text"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	return cluster, sch
}

// exampleBatch is a batch of one line of raw_item, as the loader hands
// the sink: the line at offset 0 of a stream file, decoded.
func exampleBatch(sch *schema.Schema) *loader.Batch {
	line := []byte(`{"table":"raw_item","row":{"project_id":42,"body":"hello"}}`)
	rec, err := sch.Decode(line, "")
	if err != nil {
		log.Fatal(err)
	}
	pos := loader.Position{File: "000001.ndjson", Offset: 0}
	return loader.NewBatch("api", pos, loader.Position{File: pos.File, Offset: int64(len(line)) + 1},
		[]loader.Record{{Record: rec, RecordID: "api/000001.ndjson/0", Pos: pos, Line: line}}, nil)
}
