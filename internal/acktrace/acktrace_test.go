package acktrace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/gen"
	"github.com/dualwrite/ingest/loader"
)

// fakeSink acknowledges every batch at once with err.
type fakeSink struct {
	name string
	err  error
}

func (s *fakeSink) Name() string { return s.name }
func (s *fakeSink) Submit(_ context.Context, _ *loader.Batch, ack func(error)) error {
	ack(s.err)
	return nil
}

type fakeOwner struct{ fakeSink }

func (*fakeOwner) Checkpoint(context.Context, string) (loader.Position, bool, error) {
	return loader.Position{File: "f", Offset: 7}, true, nil
}

func batch(lines ...string) *loader.Batch {
	var recs []loader.Record
	for i, l := range lines {
		recs = append(recs, loader.Record{RecordID: fmt.Sprint("id", i), Line: []byte(l)})
	}
	return loader.NewBatch("api", loader.Position{}, loader.Position{}, recs, nil)
}

func line(ns int64) string {
	return fmt.Sprintf(`{"table":"t","row":{"a":1,"note":"\"appended_ns\":1"},"counter":3,"appended_ns":%d}`, ns)
}

func TestTracerTimesSuccessfulAcks(t *testing.T) {
	now := time.Unix(100, 0)
	var out bytes.Buffer
	tr := New(Options{Out: &out, Keep: true, IDs: true, Now: func() time.Time { return now }})
	kafka := tr.Wrap(&fakeSink{name: "kafka"})
	failing := tr.Wrap(&fakeSink{name: "db", err: errors.New("down")})

	var acked []error
	ack := func(err error) { acked = append(acked, err) }
	base := now.UnixNano()
	if err := kafka.Submit(context.Background(), batch(line(base-5e6), `{"row":{}}`, line(base-30e6)), ack); err != nil {
		t.Fatal(err)
	}
	if err := failing.Submit(context.Background(), batch(line(base-1e6)), ack); err != nil {
		t.Fatal(err)
	}
	if len(acked) != 2 || acked[0] != nil || acked[1] == nil {
		t.Fatalf("acks passed on: %v, want [nil down]", acked)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "kafka\t5000000\nkafka\t30000000\n"; got != want {
		t.Errorf("trace:\n%q\nwant\n%q", got, want)
	}
	if got := tr.Latencies("kafka"); len(got) != 2 || got[0] != 5*time.Millisecond || got[1] != 30*time.Millisecond {
		t.Errorf("latencies %v", got)
	}
	if tr.Acked("kafka") != 3 || tr.Untimed("kafka") != 1 || tr.Acked("db") != 0 {
		t.Errorf("acked kafka %d (untimed %d), db %d; want 3 (1), 0", tr.Acked("kafka"), tr.Untimed("kafka"), tr.Acked("db"))
	}
	if ids := tr.IDs("kafka"); len(ids) != 3 || !ids["id2"] {
		t.Errorf("ids %v", ids)
	}
	if len(tr.IDs("db")) != 0 || len(tr.Latencies("db")) != 0 {
		t.Error("a failed ack was recorded")
	}
}

func TestWrapKeepsCheckpointOwner(t *testing.T) {
	tr := New(Options{})
	if _, ok := tr.Wrap(&fakeSink{name: "kafka"}).(loader.CheckpointOwner); ok {
		t.Error("a plain sink became a checkpoint owner")
	}
	w, ok := tr.Wrap(&fakeOwner{fakeSink{name: "db"}}).(loader.CheckpointOwner)
	if !ok {
		t.Fatal("the db sink lost its checkpoint")
	}
	if pos, _, _ := w.Checkpoint(context.Background(), "api"); pos.Offset != 7 {
		t.Errorf("checkpoint %v", pos)
	}
	if w.(loader.Sink).Name() != "db" {
		t.Error("name not passed through")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestTraceWriteErrorIsReported(t *testing.T) {
	tr := New(Options{Out: failWriter{}})
	tr.Wrap(&fakeSink{name: "db"}).Submit(context.Background(), batch(line(time.Now().UnixNano())), func(error) {})
	if err := tr.Close(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Close: %v, want the write error", err)
	}
	if tr.Acked("db") != 1 {
		t.Error("a trace error must not stop counting")
	}
}

func TestAppendedNSOfGeneratedLines(t *testing.T) {
	g := gen.New("raw_item", 10, 300, 1)
	at := time.Unix(1_790_000_000, 123_456_789)
	l := g.Line(nil, at)
	ns, ok := AppendedNS(l)
	if !ok || ns != at.UnixNano() {
		t.Fatalf("AppendedNS(gen line) = %d, %v; want %d (line %s)", ns, ok, at.UnixNano(), l)
	}
	for _, bad := range []string{`{"row":{}}`, `{"appended_ns":x}`, `{"appended_ns":12`, `{"appended_ns":-5}`} {
		if ns, ok := AppendedNS([]byte(bad)); ok {
			t.Errorf("AppendedNS(%s) = %d, want none", bad, ns)
		}
	}
}

func TestPercentileIsExactNearestRank(t *testing.T) {
	d := make([]time.Duration, 100)
	for i := range d {
		d[i] = time.Duration(i + 1)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50}, {99, 99}, {99.9, 100}, {100, 100}, {0, 1}, {1, 1}, {1.5, 2}} {
		if got := Percentile(d, c.p); got != c.want {
			t.Errorf("Percentile(1..100, %v) = %d, want %d", c.p, got, c.want)
		}
	}
	if Percentile(nil, 50) != 0 {
		t.Error("empty")
	}
	if got := Percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("one value: %d", got)
	}
}

func TestReadSummaries(t *testing.T) {
	var in strings.Builder
	for i := 1000; i >= 1; i-- { // kafka: 1..1000 ms, reversed
		fmt.Fprintf(&in, "kafka\t%d\n", int64(i)*int64(time.Millisecond))
	}
	in.WriteString("db\t7\n\ndb\t3\n")
	got, err := ReadSummaries(strings.NewReader(in.String()))
	if err != nil {
		t.Fatal(err)
	}
	want := []Summary{
		{Sink: "db", Count: 2, P50: 3, P99: 7, P999: 7, Max: 7},
		{Sink: "kafka", Count: 1000, P50: 500 * time.Millisecond, P99: 990 * time.Millisecond, P999: 999 * time.Millisecond, Max: time.Second},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	for _, bad := range []string{"kafka 12\n", "kafka\tx\n", "\t5\n"} {
		if _, err := ReadSummaries(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if _, err := ReadSummaries(strings.NewReader("")); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty trace: %v", err)
	}
}
