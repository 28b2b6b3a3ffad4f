package kafkasink_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/kafkasink"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
)

// Batches the loader submits to a started sink before it is built wait in
// Lazy's queue: Submit returns at once (so the pipeline goes on
// refreshing its lag) and nothing is acked. Once the sink is built they
// reach it in Submit order, batches submitted meanwhile behind them, and
// each stream's acks and messages come in that order. Kafka: librdkafka's
// mock cluster: the claim is about the hand-over, not about a broker.
func TestLazyQueuesUntilBuilt(t *testing.T) {
	mc := testenv.Kafka(t, 1)
	const topic = "ev"
	if err := mc.CreateTopic(topic, 1); err != nil {
		t.Fatal(err)
	}
	sch, err := schema.New(map[string]*schema.Table{topic: {Key: "account", Topic: topic,
		Columns: map[string]string{"account": "bigint", "id": "text"}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := kafkasink.Config{Brokers: mc.Bootstrap(), Topics: []string{topic}, Name: "kafka"}
	k := kafkasink.NewUnbuilt(cfg)
	ctx := testenv.Context(t, time.Minute)

	var mu sync.Mutex
	acked := map[string][]int{} // stream -> batch seqs in ack order
	batch := func(stream string, seq int) *loader.Batch {
		var recs []loader.Record
		for i := range 3 {
			line := fmt.Appendf(nil, `{"table":"ev","row":{"account":%d,"id":"%s-%d-%d"}}`, i, stream, seq, i)
			rec, err := sch.Decode(line, "")
			if err != nil {
				t.Fatal(err)
			}
			pos := loader.Position{File: "f", Offset: int64(seq*100 + i)}
			recs = append(recs, loader.Record{Record: rec, RecordID: fmt.Sprintf("%s-%d-%d", stream, seq, i), Pos: pos, Line: line})
		}
		b := loader.NewBatch(stream, recs[0].Pos, loader.Position{File: "f", Offset: int64(seq*100 + 3)}, recs, nil)
		b.Seq = uint64(seq)
		return b
	}
	submit := func(stream string, seq int) {
		t.Helper()
		returned := make(chan error, 1)
		go func() {
			returned <- k.Submit(ctx, batch(stream, seq), func(err error) {
				if err != nil {
					t.Errorf("stream %s batch %d: ack %v", stream, seq, err)
				}
				mu.Lock()
				acked[stream] = append(acked[stream], seq)
				mu.Unlock()
			})
		}()
		select {
		case err := <-returned:
			if err != nil {
				t.Fatalf("Submit %s/%d: %v", stream, seq, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Submit %s/%d blocked while the sink was not built", stream, seq)
		}
	}
	for seq := 1; seq <= 3; seq++ {
		submit("a", seq)
		submit("b", seq)
	}
	mu.Lock()
	early := len(acked)
	mu.Unlock()
	if early != 0 {
		t.Fatalf("acks before the sink was built: %v", acked)
	}

	s, err := kafkasink.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	kafkasink.SetBuilt(k, s)
	submit("a", 4) // behind the queue, or straight to the sink once it drained
	testenv.Eventually(t, 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked["a"]) == 4 && len(acked["b"]) == 3
	}, "every batch acked once the sink was built")
	mu.Lock()
	if !slices.Equal(acked["a"], []int{1, 2, 3, 4}) || !slices.Equal(acked["b"], []int{1, 2, 3}) {
		t.Errorf("acks per stream %v, want Submit order", acked)
	}
	mu.Unlock()

	msgs, err := mc.Consume(ctx, topic, 21)
	if err != nil {
		t.Fatal(err)
	}
	next := map[string]int{"a": 1, "b": 1} // per stream, the batch whose records come next
	for i, m := range msgs {
		var row struct{ ID string }
		if err := json.Unmarshal(m.Value, &row); err != nil {
			t.Fatalf("message %d %q: %v", i, m.Value, err)
		}
		var seq int
		stream, rest, _ := strings.Cut(row.ID, "-")
		if _, err := fmt.Sscanf(rest, "%d-", &seq); err != nil {
			t.Fatalf("message %d: id %q: %v", i, row.ID, err)
		}
		if seq < next[stream] {
			t.Errorf("message %d: stream %s batch %d after batch %d", i, stream, seq, next[stream])
		}
		next[stream] = seq
	}
	cctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := k.Close(cctx); err != nil {
		t.Fatal(err)
	}
}
