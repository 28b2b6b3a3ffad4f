package kafkasink_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/kafkasink"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
)

const (
	benchRowBytes   = 2048 // ~2 KB rows, as in the issue
	benchBatch      = 2000 // batch.max_records default
	benchInFlight   = 4    // batches a stream keeps in flight
	benchAccounts   = 1000
	benchPartitions = 6
)

// benchLines returns n offline lines of ~2 KB rows for 1000 accounts.
func benchLines(n int) [][]byte {
	pad := strings.Repeat("x", benchRowBytes-100)
	lines := make([][]byte, n)
	for i := range lines {
		lines[i] = fmt.Appendf(nil, `{"table":"raw_item","row":{"acct":"%d","seq":%d,"ts":%d,"body":"%s"},"counter":%d}`,
			i%benchAccounts, i, ts(i), pad, i)
	}
	return lines
}

// benchTarget returns the brokers the benchmarks produce to and a fresh
// topic there with benchPartitions partitions: the test binary's shared
// real broker (one node, so replication 1), or with
// INGEST_KAFKA_BENCH_MOCK=1 a 3-broker mock cluster, the set-up the
// figures in README and BENCHMARKS were measured on before the real broker
// existed. The mock keeps only ~5 MB per partition and does no disk I/O.
func benchTarget(b *testing.B) (brokers, topic string) {
	b.Helper()
	if envTrue("INGEST_KAFKA_BENCH_MOCK") {
		c := testenv.Kafka(b, 3)
		if err := c.CreateTopic("raw_item", benchPartitions); err != nil {
			b.Fatal(err)
		}
		return c.Bootstrap(), "raw_item"
	}
	c := testenv.Broker(b)
	return c.Bootstrap(), testenv.Topic(b, c, kafkaserver.TopicSpec{Partitions: benchPartitions})
}

func envTrue(name string) bool {
	v, err := strconv.ParseBool(os.Getenv(name))
	return err == nil && v
}

// BenchmarkSubmit measures the sink against a real broker (benchTarget):
// ~2 KB records in batches of 2000, four batches in flight, each acked
// after acks=all delivery. "records" submits decoded records; "decode"
// also decodes every line with the schema, as the loader does.
//
//	go test -run '^$' -bench Submit -benchtime 200000x ./kafkasink/
func BenchmarkSubmit(b *testing.B) {
	for _, decode := range []bool{false, true} {
		name := "records"
		if decode {
			name = "decode"
		}
		b.Run(name, func(b *testing.B) { benchSubmit(b, decode) })
	}
}

func benchSubmit(b *testing.B, decode bool) {
	brokers, topic := benchTarget(b)
	sch := testSchema(b, map[string]string{"raw_item": topic})
	s := newSinkAt(b, brokers, kafkasink.Config{Topics: []string{topic}, Logger: slog.New(slog.DiscardHandler),
		Properties: benchProps(b)})

	// A pool of lines and records reused across batches: the sink owns a
	// batch's records only until its ack.
	pool := benchLines(benchBatch * benchInFlight * 2)
	decoded := make([]loader.Record, len(pool))
	for i, line := range pool {
		decoded[i] = benchRecord(b, sch, line, i)
	}
	rowBytes := 0
	for _, r := range decoded {
		rowBytes += len(r.Row)
	}
	b.SetBytes(int64(rowBytes / len(decoded)))

	slots := make(chan int, benchInFlight*2) // free pool slots
	for i := range benchInFlight * 2 {
		slots <- i
	}
	var wg sync.WaitGroup
	var failed error
	var mu sync.Mutex
	ctx := context.Background()
	m := startMeter(b)
	for done, seq := 0, uint64(1); done < b.N; seq++ {
		n := min(benchBatch, b.N-done)
		slot := <-slots
		recs := decoded[slot*benchBatch : slot*benchBatch+n]
		if decode {
			for i := range recs {
				recs[i] = benchRecord(b, sch, pool[slot*benchBatch+i], i)
			}
		}
		batch := loader.NewBatch("bench", recs[0].Pos, recs[n-1].Pos, recs, nil)
		batch.Seq = seq
		wg.Add(1)
		err := s.Submit(ctx, batch, func(err error) {
			if err != nil {
				mu.Lock()
				failed = err
				mu.Unlock()
			}
			slots <- slot
			wg.Done()
		})
		if err != nil {
			b.Fatal(err)
		}
		done += n
	}
	wg.Wait()
	m.report(b, failed, processCPU())
}

// meter measures a benchmark's loop: from startMeter, which resets the
// timer, to report.
type meter struct {
	start time.Time
	cpu   time.Duration // processCPU at the start
}

func startMeter(b *testing.B) meter {
	b.ResetTimer()
	return meter{start: time.Now(), cpu: processCPU()}
}

// report stops the timer, fails b with failed if set, and reports
// messages per second and the CPU per message, cpu being the process's
// CPU time now (processCPU), or the CPU time a child used with the
// meter's start at 0.
func (m meter) report(b *testing.B, failed error, cpu time.Duration) {
	elapsed := time.Since(m.start)
	b.StopTimer()
	if failed != nil {
		b.Fatal(failed)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64((cpu-m.cpu).Nanoseconds())/float64(b.N), "cpu-ns/msg")
}

// processCPU is the test process's user+sys CPU time, librdkafka's
// threads included and the broker's JVM (a child) not: on a shared
// machine the steadier figure than wall time, and the one the sink's
// cost per line is judged by.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchProps reads extra producer properties for tuning experiments from
// INGEST_KAFKA_BENCH_PROPS ("linger.ms=50,compression.type=zstd").
func benchProps(tb testing.TB) map[string]string {
	v := os.Getenv("INGEST_KAFKA_BENCH_PROPS")
	if v == "" {
		return nil
	}
	props := map[string]string{}
	for _, kv := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			tb.Fatalf("INGEST_KAFKA_BENCH_PROPS: %q is not key=value", kv)
		}
		props[k] = val
	}
	return props
}

func benchRecord(tb testing.TB, sch *schema.Schema, line []byte, i int) loader.Record {
	rec, err := sch.Decode(line, "")
	if err != nil {
		tb.Fatal(err)
	}
	pos := loader.Position{File: "000001-20250101T000000Z.ndjson", Offset: int64(i) * int64(len(line)+1)}
	return loader.Record{Record: rec, RecordID: fmt.Sprintf("bench/%s/%d", pos.File, pos.Offset), Pos: pos, Line: line}
}

// BenchmarkProducerBaseline is the same traffic through a bare
// confluent-kafka-go producer with the sink's default properties (same
// keys, values and headers, delivery reports counted): what the sink's
// bookkeeping costs on top of librdkafka.
//
//	go test -run '^$' -bench ProducerBaseline -benchtime 200000x ./kafkasink/
func BenchmarkProducerBaseline(b *testing.B) {
	brokers, topic := benchTarget(b)
	conf := kafka.ConfigMap{"bootstrap.servers": brokers, "go.delivery.report.fields": "none"}
	for k, v := range kafkasink.DefaultProperties() {
		conf[k] = v
	}
	p, err := kafka.NewProducer(&conf)
	if err != nil {
		b.Fatal(err)
	}
	delivered := make(chan struct{})
	var failed error
	go func() {
		defer close(delivered)
		n := 0
		for ev := range p.Events() {
			if m, ok := ev.(*kafka.Message); ok {
				if m.TopicPartition.Error != nil {
					failed = m.TopicPartition.Error
				}
				if n++; n == b.N {
					return
				}
			}
		}
	}()
	defer func() {
		go func() { // keep draining so Close cannot block on a full channel
			for range p.Events() {
			}
		}()
		p.Close()
	}()

	sch := testSchema(b, map[string]string{"raw_item": topic})
	pool := benchLines(benchBatch)
	recs := make([]loader.Record, len(pool))
	rowBytes := 0
	for i, line := range pool {
		recs[i] = benchRecord(b, sch, line, i)
		rowBytes += len(recs[i].Row)
	}
	b.SetBytes(int64(rowBytes / len(recs)))
	m := startMeter(b)
	for i := range b.N {
		r := &recs[i%len(recs)]
		msg := &kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
			Key:            []byte(r.Key), Value: r.Row, Timestamp: r.Time,
			Headers: []kafka.Header{{Key: kafkasink.HeaderTable, Value: []byte("raw_item")},
				{Key: kafkasink.HeaderRecordID, Value: []byte(r.RecordID)},
				{Key: kafkasink.HeaderSource, Value: []byte(r.RecordID)}},
		}
		for {
			err := p.Produce(msg, nil)
			if err == nil {
				break
			}
			if err.(kafka.Error).Code() != kafka.ErrQueueFull {
				b.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
	}
	<-delivered
	m.report(b, failed, processCPU())
}

// BenchmarkKcat produces the same rows, keyed by account, to the same kind
// of broker (benchTarget) with `kcat -P -l` (librdkafka's own CLI) and the sink's
// delivery properties: the yardstick the issue compares BenchmarkSubmit
// (decode included) against. headers=3 adds three headers of the sink's
// sizes to every message (kcat -H; the same values on every message),
// which is the sink's message shape; headers=0 is plain kcat. It skips when
// kcat is not installed (apt-get install -y kcat).
//
//	go test -run '^$' -bench 'Submit/decode|Kcat' -benchtime 200000x ./kafkasink/
func BenchmarkKcat(b *testing.B) {
	for _, headers := range []int{0, 3} {
		b.Run(fmt.Sprintf("headers=%d", headers), func(b *testing.B) { benchKcat(b, headers) })
	}
}

func benchKcat(b *testing.B, headers int) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		b.Skip("kcat is not installed: apt-get install -y kcat")
	}
	brokers, topic := benchTarget(b)
	sch := testSchema(b, map[string]string{"raw_item": topic})
	pool := benchLines(benchBatch)
	// kcat reads "key<TAB>value" lines: the account and the row, as the
	// sink sends them.
	path := filepath.Join(b.TempDir(), "lines.tsv")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	rowBytes := 0
	for i := range b.N {
		r := benchRecord(b, sch, pool[i%len(pool)], i)
		w.WriteString(r.Key)
		w.WriteByte('\t')
		w.Write(r.Row)
		w.WriteByte('\n')
		rowBytes += len(r.Row)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	b.SetBytes(int64(rowBytes / b.N))
	args := []string{"-P", "-b", brokers, "-t", topic, "-K", "\t", "-l", "-q"}
	if headers > 0 {
		args = append(args, "-H", kafkasink.HeaderTable+"=raw_item",
			"-H", kafkasink.HeaderRecordID+"=bench/000001-20250101T000000Z.ndjson/123456789",
			"-H", kafkasink.HeaderSource+"=bench/000001-20250101T000000Z.ndjson/123456789")
	}
	for k, v := range kafkasink.DefaultProperties() {
		args = append(args, "-X", k+"="+v)
	}
	m := startMeter(b)
	m.cpu = 0 // kcat's own CPU, not this process's
	cmd := exec.Command(kcat, append(args, path)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("kcat: %v\n%s", err, out)
	}
	m.report(b, nil, cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
}
