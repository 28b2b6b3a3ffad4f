package consume_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dualwrite/ingest/dbsink"
	"github.com/dualwrite/ingest/internal/backfill"
	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/consume"
	"github.com/dualwrite/ingest/internal/gen"
	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/internal/testenv"
)

// TestThroughputVersusBackfill compares, on the same rows, `ingest consume`
// loading PostgreSQL from Kafka with `ingest backfill --sink db` loading
// it from the files (the issue's >= 0.8x), median of 3 runs each. The
// lines come from gen (~2.5 KB raw_item rows) and reach Kafka through
// the real Kafka sink (backfill --sink kafka). It is a measurement, not a
// check: it runs only with INGEST_CONSUME_BENCH=<lines> and logs the
// figures; it fails only when a run does not load every line.
func TestThroughputVersusBackfill(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("INGEST_CONSUME_BENCH"))
	if n <= 0 {
		t.Skip("set INGEST_CONSUME_BENCH=<lines> (e.g. 60000) to measure")
	}
	kb := testenv.Broker(t)
	pg := testenv.Postgres(t)
	topic := testenv.Topic(t, kb, kafkaserver.TopicSpec{Partitions: 4})
	ctx := testenv.Context(t, 30*time.Minute)
	if err := kb.CreateTopic(ctx, topic+".dlq", kafkaserver.TopicSpec{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	spool := filepath.Join(dir, "spool")
	text := fmt.Sprintf("spool: {dir: %q}\nkafka: {brokers: %q}\ndb: {url: %q}\nmetrics: {listen: \"127.0.0.1:0\"}\ntables:\n%s    topic: %q\n",
		spool, kb.Bootstrap(), pg.URL(), gen.TableConfig("raw_item", "all"), topic)
	cfgPath := filepath.Join(dir, "ingest.yaml")
	if err := os.WriteFile(cfgPath, []byte(text), 0o640); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	sch, err := cfg.Schema()
	if err != nil {
		t.Fatal(err)
	}
	db, err := dbsink.New(ctx, dbsink.Config{URL: pg.URL(), Schema: sch})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := gen.Run(ctx, gen.Options{Dir: spool, Count: int64(n), Accounts: 5000, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	paths := []string{filepath.Join(spool, "api")}
	if _, err := backfill.Run(ctx, cfg, backfill.Options{Paths: paths, Sinks: []string{config.SinkKafka}}); err != nil {
		t.Fatalf("backfill --sink kafka: %v", err)
	}
	truncate := func() {
		conn, err := pgx.Connect(ctx, pg.URL())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		for _, q := range []string{"TRUNCATE raw_item", "VACUUM ANALYZE raw_item"} {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
	}
	var fromFiles, fromKafka []float64
	for run := range 3 {
		truncate()
		start := time.Now()
		if _, err := backfill.Run(ctx, cfg, backfill.Options{Paths: paths, Sinks: []string{config.SinkDB}, Restart: true}); err != nil {
			t.Fatalf("backfill --sink db: %v", err)
		}
		d := time.Since(start)
		if got := queryInt(t, pg, "SELECT count(*) FROM raw_item"); got != int64(n) {
			t.Fatalf("backfill loaded %d rows, want %d", got, n)
		}
		fromFiles = append(fromFiles, float64(n)/d.Seconds())

		truncate()
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		start = time.Now()
		go func() { done <- consume.Run(cctx, cfg, consume.Options{Group: fmt.Sprintf("bench-%d", run)}) }()
		testenv.Eventually(t, 10*time.Minute, func() bool {
			got, err := tryInt(pg, "SELECT count(*) FROM raw_item")
			return err == nil && got >= int64(n)
		}, "consume loads every row")
		d = time.Since(start)
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("consume: %v", err)
		}
		fromKafka = append(fromKafka, float64(n)/d.Seconds())
		t.Logf("run %d: backfill --sink db %.0f lines/s, consume %.0f lines/s (group join included)", run+1, fromFiles[run], fromKafka[run])
	}
	slices.Sort(fromFiles)
	slices.Sort(fromKafka)
	t.Logf("median of 3, %d lines of ~2.5 KB, 4 partitions: backfill --sink db %.0f lines/s, consume %.0f lines/s: %.2fx",
		n, fromFiles[1], fromKafka[1], fromKafka[1]/fromFiles[1])
}
