package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/consume"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/loader"
)

// statusEntries splits `ingest status --json` into its stream elements and
// its consumer-group elements.
func statusEntries(t *testing.T, out string) ([]loader.StreamStatus, map[string]consume.GroupStatus) {
	t.Helper()
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	var streams []loader.StreamStatus
	groups := map[string]consume.GroupStatus{}
	for i, r := range raw {
		b, _ := json.Marshal(r)
		switch {
		case r["stream"] != nil:
			var s loader.StreamStatus
			if err := json.Unmarshal(b, &s); err != nil {
				t.Fatalf("status --json element %d: %v", i, err)
			}
			streams = append(streams, s)
		case r["consumer_group"] != nil:
			var g consume.GroupStatus
			if err := json.Unmarshal(b, &g); err != nil {
				t.Fatalf("status --json element %d: %v", i, err)
			}
			groups[g.Group] = g
		default:
			t.Fatalf("status --json element %d is neither a stream nor a consumer group: %s", i, b)
		}
	}
	return streams, groups
}

// ingest status shows, after `ingest consume` ran and stopped and more
// messages were produced, each consumer group's checkpoint, Kafka's
// committed offset, end and lag per partition, in --json and in the text;
// the config's consume.group is shown before it has checkpoints; with
// Kafka unreachable the section says so and shows PostgreSQL's
// checkpoints, and the streams are still shown. Kafka: a real broker
// (newCutover's one-node cluster), PostgreSQL: a real server.
func TestStatusShowsConsumerGroups(t *testing.T) {
	const first, more = 400, 100
	c := newCutover(t, first)
	cfgText, err := os.ReadFile(c.cfg)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, c.cfg, string(cfgText)+"consume: {group: configured-only}\n")
	ingestOK(t, "backfill", "--config", c.cfg, "--sink", "kafka", c.files)

	cmd, log := start(t, "consume", "--config", c.cfg, "--group", "status-test", "--dead-letter-file", filepath.Join(c.dir, "dl.ndjson"))
	loaded := func() bool { rows, _ := rawItemRows(t, c.pg.URL()); return rows == first }
	testenv.Eventually(t, 2*time.Minute, loaded, "consume loads %d rows; log:\n%s", first, log)
	stop(t, cmd)

	// More messages, which the stopped group has not loaded: its lag.
	ingestOK(t, "gen", "--dir", c.spool, "--stream", "later", "--count", strconv.Itoa(more), "--accounts", "12", "--size", "300")
	ingestOK(t, "backfill", "--config", c.cfg, "--sink", "kafka", filepath.Join(c.spool, "later"))

	out, code := ingest(t, "status", "--config", c.cfg, "--json")
	if code != 0 {
		t.Fatalf("status --json: exit %d\n%s", code, out)
	}
	streams, groups := statusEntries(t, out)
	if len(streams) == 0 {
		t.Errorf("status --json: no stream elements\n%s", out)
	}
	g, ok := groups["status-test"]
	if !ok || g.DBError != "" || g.KafkaError != "" || len(g.Partitions) != 4 {
		t.Fatalf("group status-test: %+v, want 4 partitions and no error\n%s", g, out)
	}
	var sumCheckpoint, sumEnd, sumLag int64
	for _, p := range g.Partitions {
		if p.Topic != c.topic || p.Checkpoint < 0 || p.KafkaCommitted != p.Checkpoint || p.Lag != p.End-p.Checkpoint {
			t.Errorf("partition %+v: want the checkpoint, Kafka's committed offset equal to it after a clean stop, and lag = end - checkpoint", p)
		}
		if (p.Lag == 0) != (p.LagSeconds == 0) || p.LagSeconds < 0 || p.LagSeconds > 3600 {
			t.Errorf("partition %+v: lag_seconds %v, want 0 exactly when there is no lag, else the age of a message made minutes ago", p, p.LagSeconds)
		}
		sumCheckpoint += p.Checkpoint
		sumEnd += p.End
		sumLag += p.Lag
	}
	if sumCheckpoint != first || sumEnd != first+more || sumLag != more || g.Lag != more {
		t.Errorf("group status-test: checkpoints sum to %d (want %d), ends to %d (want %d), lags to %d and total %d (want %d)",
			sumCheckpoint, first, sumEnd, first+more, sumLag, g.Lag, more)
	}
	// The configured group has consumed nothing: all of every partition.
	cg, ok := groups["configured-only"]
	if !ok || len(cg.Partitions) != 4 || cg.Lag != first+more {
		t.Errorf("group configured-only: %+v, want 4 partitions and lag %d", cg, first+more)
	}
	for _, p := range cg.Partitions {
		if p.Checkpoint != -1 || p.KafkaCommitted != -1 {
			t.Errorf("configured-only partition %+v: want no checkpoint and no committed offset (-1)", p)
		}
	}

	text, code := ingest(t, "status", "--config", c.cfg)
	t.Logf("ingest status:\n%s", text)
	if code != 0 || !strings.Contains(text, "CONSUMER GROUPS") || !strings.Contains(text, "group status-test") ||
		!regexp.MustCompile(`(?m)^total lag\s+`+strconv.Itoa(more)+`$`).MatchString(text) {
		t.Errorf("status: exit %d, want the consumer groups with total lag %d:\n%s", code, more, text)
	}

	// Kafka does not answer: the section says so, PostgreSQL's
	// checkpoints are still shown, and so are the streams.
	out, code = ingest(t, "status", "--config", c.cfg, "--json", "--kafka-brokers", "127.0.0.1:1")
	if code != 0 {
		t.Fatalf("status --json with Kafka down: exit %d\n%s", code, out)
	}
	streams, groups = statusEntries(t, out)
	g = groups["status-test"]
	if len(streams) == 0 || g.KafkaError == "" || g.DBError != "" || len(g.Partitions) != 4 || g.Lag != -1 {
		t.Fatalf("status --json with Kafka down: streams %d, group %+v; want the streams, a kafka_error, the 4 checkpoints, lag -1\n%s", len(streams), g, out)
	}
	sumCheckpoint = 0
	for _, p := range g.Partitions {
		sumCheckpoint += p.Checkpoint
		if p.End != -1 || p.KafkaCommitted != -1 || p.Lag != -1 {
			t.Errorf("partition %+v with Kafka down: want end, committed and lag unknown (-1)", p)
		}
	}
	if sumCheckpoint != first {
		t.Errorf("checkpoints with Kafka down sum to %d, want %d", sumCheckpoint, first)
	}
	text, _ = ingest(t, "status", "--config", c.cfg, "--kafka-brokers", "127.0.0.1:1")
	if !strings.Contains(text, "Kafka: did not answer") {
		t.Errorf("status with Kafka down: the section does not say Kafka did not answer:\n%s", text)
	}
}
