package loader_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/rotatefile"
	"github.com/dualwrite/ingest/schema"
)

func ExampleNewBackfill() {
	root, _ := os.MkdirTemp("", "archive")
	defer os.RemoveAll(root)

	// Two sealed files of stream "api" and the active one, which a
	// backfill leaves alone.
	dir := filepath.Join(root, "api")
	os.MkdirAll(dir, 0o750)
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, body := range []string{
		`{"table":"raw_item","row":{"project_id":7,"timestamp":1767225600}}` + "\n",
		`{"table":"raw_item","row":{"project_id":8,"timestamp":1767225660}}` + "\n" +
			`{"table":"raw_item","row":{"project_id":7,"timestamp":1767229200}}` + "\n",
		`{"table":"raw_item","row":{"project_id":7,"timestamp":1767229260}}` + "\n",
	} {
		name := rotatefile.FileName(uint64(i+1), created, ".ndjson")
		if i == 2 {
			name += rotatefile.ActiveSuffix
		}
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o640)
	}
	streams, skipped, err := loader.ResolveBackfill([]string{dir}, "")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("stream %s: %d files, skipped %d active\n", streams[0].Name, len(streams[0].Files), len(skipped))

	s, err := schema.New(map[string]*schema.Table{
		"raw_item": {Key: "project_id", Time: "timestamp", Columns: map[string]string{"project_id": "bigint", "timestamp": "bigint"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	// Account 7, first hour of 2026 only.
	window := loader.Window{Since: created, Until: created.Add(time.Hour)}
	state, _ := os.MkdirTemp("", "backfill-state")
	defer os.RemoveAll(state)
	b, err := loader.NewBackfill(loader.BackfillConfig{
		Streams: streams, Schema: s, StateDir: state,
		Filter: func(r *schema.Record) bool { return r.Key == "7" && window.Contains(r.Time) },
	}, loader.SinkSpec{Sink: &printSink{done: make(chan struct{})}})
	if err != nil {
		log.Fatal(err)
	}
	// Run returns once every file is acknowledged; the checkpoints under
	// state make a second Run with the same sink name a no-op.
	if err := b.Run(context.Background()); err != nil {
		log.Fatal(err)
	}
	pr := b.Progress()
	fmt.Printf("complete %v: %d lines read, %d delivered, %d filtered\n", pr.Complete, pr.LinesRead, pr.Sinks[0].Delivered, pr.Sinks[0].Filtered)
	// Output:
	// stream api: 2 files, skipped 1 active
	// raw_item key=7 id=api/0000000000000001-20260101T000000.000Z.ndjson/0 {"project_id":7,"timestamp":1767225600}
	// complete true: 3 lines read, 1 delivered, 2 filtered
}
