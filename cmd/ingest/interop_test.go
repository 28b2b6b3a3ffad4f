package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/internal/testenv"
)

// interopJava reads a whole topic with Apache Kafka's own Java consumer and
// prints, per record: partition, offset, the partition Kafka's Java
// producer picks for the key (its default partitioner:
// Utils.toPositive(Utils.murmur2(key)) % partitions), the key, and every
// header as name=value (UTF-8). The first line is "partitions <n>".
const interopJava = `
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.utils.Utils;

public class Interop {
    public static void main(String[] args) {
        Properties p = new Properties();
        p.put("bootstrap.servers", args[0]);
        p.put("enable.auto.commit", "false");
        p.put("key.deserializer", ByteArrayDeserializer.class.getName());
        p.put("value.deserializer", ByteArrayDeserializer.class.getName());
        String topic = args[1];
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            List<TopicPartition> parts = new ArrayList<>();
            for (PartitionInfo pi : c.partitionsFor(topic, Duration.ofSeconds(30))) {
                parts.add(new TopicPartition(topic, pi.partition()));
            }
            int n = parts.size();
            System.out.println("partitions " + n);
            c.assign(parts);
            c.seekToBeginning(parts);
            Map<TopicPartition, Long> end = c.endOffsets(parts, Duration.ofSeconds(30));
            long deadline = System.currentTimeMillis() + 60_000;
            for (;;) {
                boolean done = true;
                for (TopicPartition tp : parts) {
                    if (c.position(tp) < end.get(tp)) done = false;
                }
                if (done) break;
                if (System.currentTimeMillis() > deadline) {
                    System.err.println("timed out before the end offsets " + end);
                    System.exit(2);
                }
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(500))) {
                    StringBuilder b = new StringBuilder();
                    int javaPart = r.key() == null ? -1 : Utils.toPositive(Utils.murmur2(r.key())) % n;
                    String key = r.key() == null ? "<null>" : new String(r.key(), StandardCharsets.UTF_8);
                    b.append(r.partition()).append('\t').append(r.offset()).append('\t')
                     .append(javaPart).append('\t').append(key);
                    for (Header h : r.headers()) {
                        b.append('\t').append(h.key()).append('=')
                         .append(h.value() == null ? "<null>" : new String(h.value(), StandardCharsets.UTF_8));
                    }
                    System.out.println(b);
                }
            }
        }
    }
}
`

// javaRecord is one line of interopJava's output.
type javaRecord struct {
	partition int32
	offset    int64
	javaPart  int32
	key       string
	headers   map[string]string
}

// Issue #14: a Java client reads what `ingest run` produced. Apache Kafka's
// Java consumer (the broker's own kafka-clients jar) reads the topic; every
// key is on the partition Kafka's Java partitioner computes for it, so
// Java and Go producers of the same keys agree, and the three headers read
// back in Java as what Go's client sees. Kafka: the shared real broker, a
// topic of this test's own with 7 partitions (not a power of two, so a
// partitioner that only agrees on the low bits is caught).
func TestJavaClientReadsOurMessages(t *testing.T) {
	e := newBrokerEnv(t, 7)
	e.configure(t, e.config("all"))
	const lines = 1000
	ingestOK(t, "gen", "--dir", e.spool, "--count", strconv.Itoa(lines), "--accounts", "400", "--size", "300")
	run, _ := start(t, "run", "--config", e.cfgPath)
	testenv.Eventually(t, time.Minute, func() bool { return statusLag(t, e.cfgPath) == 0 }, "both sinks caught up")
	stop(t, run)

	ctx := testenv.Context(t, 3*time.Minute)
	java, err := kafkaserver.Java()
	if err != nil {
		t.Fatal(err)
	}
	cp, err := kafkaserver.Classpath(ctx)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "Interop.java")
	writeFile(t, src, interopJava)
	var stdout, stderr bytes.Buffer
	cmd := testenv.Command(t, 3*time.Minute, java, "-Xmx256m", "-cp", cp, src, e.kb.Bootstrap(), e.topic)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("java consumer: %v\nstderr:\n%s", err, testenv.Tail(stderr.String(), 30))
	}
	out := strings.Split(strings.TrimRight(stdout.String(), "\n"), "\n")
	if len(out) == 0 || out[0] != "partitions 7" {
		t.Fatalf("java consumer's first line %q, want \"partitions 7\"; stderr:\n%s", out[0], testenv.Tail(stderr.String(), 30))
	}
	jr := map[[2]int64]javaRecord{}
	for _, l := range out[1:] {
		f := strings.Split(l, "\t")
		if len(f) < 4 {
			t.Fatalf("java consumer line %q", l)
		}
		p, _ := strconv.Atoi(f[0])
		off, _ := strconv.ParseInt(f[1], 10, 64)
		jp, _ := strconv.Atoi(f[2])
		r := javaRecord{partition: int32(p), offset: off, javaPart: int32(jp), key: f[3], headers: map[string]string{}}
		for _, h := range f[4:] {
			k, v, _ := strings.Cut(h, "=")
			r.headers[k] = v
		}
		jr[[2]int64{int64(p), off}] = r
	}

	// What Go's client reads from the same topic, record by record.
	msgs, err := e.kb.ReadTopic(ctx, e.topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) < lines || len(jr) != len(msgs) {
		t.Fatalf("java read %d records, go %d; %d lines were written", len(jr), len(msgs), lines)
	}
	used := map[int32]bool{}
	for _, m := range msgs {
		p, off := m.TopicPartition.Partition, int64(m.TopicPartition.Offset)
		r, ok := jr[[2]int64{int64(p), off}]
		if !ok {
			t.Fatalf("java did not read %d@%d", p, off)
		}
		used[p] = true
		if r.javaPart != p {
			t.Errorf("key %q is on partition %d; Kafka's Java partitioner puts it on %d", r.key, p, r.javaPart)
		}
		if r.key != string(m.Key) {
			t.Errorf("%d@%d: java reads key %q, go %q", p, off, r.key, m.Key)
		}
		var row struct {
			UUID string `json:"uuid"`
		}
		if err := json.Unmarshal(m.Value, &row); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"ingest.table": "raw_item", "ingest.record_id": row.UUID, "ingest.source": header(m, "ingest.source")}
		if fmt.Sprint(r.headers) != fmt.Sprint(want) || want["ingest.source"] == "" {
			t.Errorf("%d@%d: java reads headers %v, want %v", p, off, r.headers, want)
		}
	}
	if len(used) != 7 {
		t.Errorf("keys landed on %d of 7 partitions, want all: the check above needs keys on every partition", len(used))
	}
	t.Logf("java consumer read %d records over %d partitions; every key on Java's partition, headers intact", len(jr), len(used))
}
