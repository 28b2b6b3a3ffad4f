package consume_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/config"
	"github.com/dualwrite/ingest/internal/consume"
)

// With PostgreSQL not answering, Groups still answers, at once and without
// asking Kafka about a group that may not exist: the configured group (here
// the default one) with the reason, and the table says so. Neither server
// runs: both addresses are closed ports.
func TestGroupsWithPostgresDown(t *testing.T) {
	cfg, err := config.Parse([]byte(`spool: {dir: /tmp/nowhere}
kafka: {brokers: "127.0.0.1:1"}
db: {url: "postgres://ingest@127.0.0.1:1/app"}
tables:
  ev: {key: account, columns: {account: bigint}}
`))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	gs := consume.Groups(ctx, cfg)
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("Groups took %v with PostgreSQL refusing connections, want well under the Kafka timeouts", took)
	}
	if len(gs) != 1 || gs[0].Group != "ingest-app" || !strings.Contains(gs[0].DBError, "did not answer") ||
		gs[0].KafkaError != "" || len(gs[0].Partitions) != 0 || gs[0].Lag != -1 {
		t.Fatalf("Groups = %+v, want the default group ingest-app with a db_error, no Kafka error, no partitions, lag -1", gs)
	}
	var out bytes.Buffer
	if err := consume.WriteGroup(&out, gs[0]); err != nil {
		t.Fatal(err)
	}
	if text := out.String(); !strings.Contains(text, "group ingest-app") || !strings.Contains(text, "PostgreSQL: did not answer") ||
		strings.Count(text, "\n") != 2 {
		t.Errorf("WriteGroup: want the heading and the PostgreSQL line, each on one line:\n%s", text)
	}
}
