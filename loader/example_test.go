package loader_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"sync"

	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/rotatefile"
	"github.com/dualwrite/ingest/schema"
)

// printSink stores nothing: it prints each record and acknowledges at once.
type printSink struct {
	mu   sync.Mutex
	seen int
	done chan struct{}
}

func (s *printSink) Name() string { return "print" }

func (s *printSink) Submit(_ context.Context, b *loader.Batch, ack func(error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range b.Records {
		fmt.Printf("%s key=%s id=%s %s\n", r.Table.Name, r.Key, r.RecordID, r.Row)
		if s.seen++; s.seen == 2 {
			close(s.done)
		}
	}
	ack(nil)
	return nil
}

func ExampleLoader_Run() {
	spool, _ := os.MkdirTemp("", "spool")
	defer os.RemoveAll(spool)

	// The API side: lines appended through the writer.
	w, err := rotatefile.Open(rotatefile.Options{Dir: spool, Stream: "api"})
	if err != nil {
		log.Fatal(err)
	}
	w.Append([]byte(`{"table":"raw_item","row":{"project_id":7,"uuid":"bad3a155-585f-47cb-bc3e-51767d52c2a2"}}`))
	w.Append([]byte(`{"table":"raw_item","row":{"project_id":"not a number"}}`)) // dead-lettered
	w.Append([]byte(`{"table":"raw_item","row":{"project_id":8,"uuid":"0f5d3a1e-0000-4000-8000-000000000001"}}`))
	defer w.Close()

	s, err := schema.New(map[string]*schema.Table{
		"raw_item": {Key: "project_id", ID: "uuid", Columns: map[string]string{"project_id": "bigint", "uuid": "uuid"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	sink := &printSink{done: make(chan struct{})}
	l, err := loader.New(loader.Config{Dir: spool, Schema: s}, loader.SinkSpec{Sink: sink})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-sink.done; cancel() }()
	if err := l.Run(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// raw_item key=7 id=bad3a155-585f-47cb-bc3e-51767d52c2a2 {"project_id":7,"uuid":"bad3a155-585f-47cb-bc3e-51767d52c2a2"}
	// raw_item key=8 id=0f5d3a1e-0000-4000-8000-000000000001 {"project_id":8,"uuid":"0f5d3a1e-0000-4000-8000-000000000001"}
}
