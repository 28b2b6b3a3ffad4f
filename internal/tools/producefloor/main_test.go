package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/kafkasink"
)

// Real Apache Kafka broker (testenv.Broker): the floor is only a floor if
// it delivers what the sink would, so the test reads the messages back.
func TestMain(m *testing.M) { testenv.Main(m, true) }

func TestProducesEveryLineWithTheSinksHeaders(t *testing.T) {
	c := testenv.Broker(t)
	topic := testenv.Topic(t, c, kafkaserver.TopicSpec{Partitions: 3})
	var b strings.Builder
	const lines = 40
	for i := 1; i <= lines; i++ {
		fmt.Fprintf(&b, "%d\t{\"n\":%d}\n", i%7, i)
	}
	path := filepath.Join(t.TempDir(), "rows.tsv")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, perMsgChan := range []bool{true, false} {
		n, err := run(c.Bootstrap(), topic, path, true, perMsgChan)
		if err != nil || n != lines {
			t.Fatalf("run(chan=%v) = %d, %v; want %d delivered", perMsgChan, n, err, lines)
		}
	}
	msgs, err := c.Consume(testenv.Context(t, time.Minute), topic, 2*lines)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, m := range msgs {
		seen[string(m.Key)+" "+string(m.Value)]++
		if len(m.Headers) != 3 || m.Headers[0].Key != kafkasink.HeaderTable || m.Headers[2].Key != kafkasink.HeaderSource ||
			!strings.HasSuffix(string(m.Headers[2].Value), "/"+strings.TrimSuffix(strings.TrimPrefix(string(m.Value), `{"n":`), "}")) {
			t.Fatalf("message %s=%s: headers %v, want the sink's three with the line number in %s", m.Key, m.Value, m.Headers, kafkasink.HeaderSource)
		}
	}
	for i := 1; i <= lines; i++ {
		if k := fmt.Sprintf("%d {\"n\":%d}", i%7, i); seen[k] != 2 {
			t.Errorf("line %d (%s) read %d times, want 2 (one per run)", i, k, seen[k])
		}
	}
}

func TestLineWithoutTabIsAnErrorNamingIt(t *testing.T) {
	c := testenv.Broker(t)
	topic := testenv.Topic(t, c, kafkaserver.TopicSpec{})
	path := filepath.Join(t.TempDir(), "rows.tsv")
	if err := os.WriteFile(path, []byte("1\t{}\nno tab here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := run(c.Bootstrap(), topic, path, true, true)
	if want := path + " line 2: no tab"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want one containing %q", err, want)
	}
}
