package kafkasink_test

import (
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/kafkasink"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/rotatefile"
)

// A live run on a topic keeping messages for an hour (retention.ms) and
// refusing timestamps more than an hour ahead
// (message.timestamp.after.max.ms), with lines of old, recent and future
// event times mixed in one file. With the default margin (an hour, at most
// half the retention: 30 minutes) the sink
//   - dead-letters exactly the lines older than 30 minutes (reason
//     "retention") and those more than 59 minutes ahead (reason
//     "timestamp_refused"), each with a detail naming the topic, the
//     limit, the record's time and the fixes;
//   - produces every other line, including one 29 minutes old, just
//     inside the bound: a record the broker would keep is never
//     dead-lettered;
//   - counts as acked (ingest_records_acked_total) exactly what Kafka
//     holds, and as rejected what it dead-lettered;
//   - logs one WARN per reason for the batch, with the count.
//
// Real broker (shared): the limits are the topic's, read with
// DescribeConfigs, which librdkafka's mock does not answer. The broker's
// retention check need not run: what the sink dead-letters never reaches
// it, and what it produces is far younger than an hour.
func TestLoaderEventTimeOutsideTopicLimitsDeadLettered(t *testing.T) {
	t.Parallel()
	const table, partitions = "events", 3
	c := testenv.Broker(t)
	topic := testenv.Topic(t, c, kafkaserver.TopicSpec{Partitions: partitions, Configs: map[string]string{
		"retention.ms":                   "3600000",
		"message.timestamp.after.max.ms": "3600000",
	}})
	now := time.Now()
	kind := func(seq int) string {
		switch {
		case seq == 7:
			return "edge-in" // 29 min old: inside the 30 min bound
		case seq == 8:
			return "edge-out" // 31 min old
		case seq%10 == 3:
			return "future" // 2 h ahead
		case seq%3 == 0:
			return "old" // 2 h old
		case seq%3 == 1:
			return "recent" // 20 min old
		default:
			return "current"
		}
	}
	timeOf := map[string]time.Duration{
		"edge-in": -29 * time.Minute, "edge-out": -31 * time.Minute, "future": 2 * time.Hour,
		"old": -2 * time.Hour, "recent": -20 * time.Minute, "current": 0,
	}
	const lines = 90
	spool := t.TempDir()
	dir := filepath.Join(spool, loaderStream)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	wantDead := map[int64]string{} // offset -> reason
	wantKafka := map[int]bool{}
	for seq := range lines {
		k := kind(seq)
		offset := int64(b.Len())
		switch k {
		case "old", "edge-out":
			wantDead[offset] = "retention"
		case "future":
			wantDead[offset] = "timestamp_refused"
		default:
			wantKafka[seq] = true
		}
		fmt.Fprintf(&b, `{"table":%q,"row":{"acct":"acct-%d","seq":%d,"ts":%d,"body":"x"}}`+"\n",
			table, seq%7, seq, now.Add(timeOf[k]).UnixMilli())
	}
	// Written whole before the loader starts, so it reads the lines as
	// one batch: one WARN per reason.
	name := rotatefile.FileName(1, now, ".ndjson")
	if err := os.WriteFile(filepath.Join(dir, name+".tmp"), []byte(b.String()), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, name+".tmp"), filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}

	log, logger := loadertest.NewLog(t)
	sink := newSink(t, c, kafkasink.Config{Topics: []string{topic}, Logger: logger})
	reg := prometheus.NewRegistry()
	run := loadertest.Start(t, loader.Config{Dir: spool, Schema: testSchema(t, map[string]string{table: topic}),
		Logger: loadertest.Logger(t), Registry: reg}, loader.SinkSpec{Sink: sink, MaxInFlight: 4})
	end := loadertest.StreamEnd(t, spool, loaderStream)
	testenv.Eventually(t, 60*time.Second, func() bool {
		return run.Position(loaderStream, "kafka") == end
	}, "the Kafka checkpoint reaching %s", end)

	// Exactly the lines outside the topic's limits are dead letters.
	stateDir := filepath.Join(spool, ".ingest")
	dls := loadertest.DeadLetters(t, stateDir, loaderStream)
	got := map[int64]string{}
	for _, dl := range dls {
		if dl.Sink != "kafka" {
			t.Errorf("dead letter for sink %q at %d: %s", dl.Sink, dl.Offset, dl.Reason)
		}
		got[dl.Offset] = dl.Reason
		for _, want := range []string{"topic " + topic, "the record's event time ", "Fixes: ", "kafka-configs.sh --bootstrap-server " + c.Bootstrap(), "fix the clock or the data"} {
			if !strings.Contains(dl.Detail, want) {
				t.Errorf("dead letter at %d: detail %q lacks %q", dl.Offset, dl.Detail, want)
			}
		}
		switch dl.Reason {
		case "retention":
			if !strings.Contains(dl.Detail, "retention.ms=3600000 (1h0m0s)") || !strings.Contains(dl.Detail, "a margin of 30m0s") {
				t.Errorf("dead letter at %d: detail %q lacks the retention and the margin", dl.Offset, dl.Detail)
			}
		case "timestamp_refused":
			if !strings.Contains(dl.Detail, "message.timestamp.after.max.ms=3600000") {
				t.Errorf("dead letter at %d: detail %q lacks the topic's bound", dl.Offset, dl.Detail)
			}
		}
	}
	if len(got) != len(dls) || !maps.Equal(got, wantDead) {
		t.Fatalf("dead letters (offset: reason) %v, want %v", got, wantDead)
	}

	// Every other line is in Kafka, once, with its event time.
	msgs := consume(t, c, topic, len(wantKafka))
	seen := map[int]bool{}
	for _, m := range msgs {
		seen[m.seq] = true
	}
	if !maps.Equal(seen, wantKafka) {
		missing := []int{}
		for seq := range wantKafka {
			if !seen[seq] {
				missing = append(missing, seq)
			}
		}
		slices.Sort(missing)
		t.Fatalf("Kafka holds %d lines; missing %v", len(seen), missing)
	}
	held := topicSize(t, c, topic)
	acked := loaderMetric(t, reg, "ingest_records_acked_total", loaderStream, "kafka")
	if int(acked) != held || held != len(wantKafka) {
		t.Fatalf("ingest_records_acked_total{sink=kafka} = %v, Kafka holds %d, want both %d", acked, held, len(wantKafka))
	}
	// The delivery counter moves just after the reports that complete a
	// batch, so it may trail the ack.
	testenv.Eventually(t, 10*time.Second, func() bool {
		st := sink.Stats()
		return st.Rejected == int64(len(wantDead)) && st.Delivered == int64(len(wantKafka))
	}, "Stats %v: Rejected %d, Delivered %d", loadertest.Lazy(func() string { return fmt.Sprintf("%+v", sink.Stats()) }), len(wantDead), len(wantKafka))

	// One WARN per reason, with the count.
	count := func(reason string) string {
		n := 0
		for _, r := range wantDead {
			if r == reason {
				n++
			}
		}
		return "count=" + strconv.Itoa(n)
	}
	for _, w := range []struct{ msg, reason string }{
		{"the topic's retention would delete them", "retention"},
		{"the topic refuses their timestamp", "timestamp_refused"},
	} {
		testenv.Eventually(t, 10*time.Second, func() bool {
			return log.Count("level=WARN", w.msg) >= 1
		}, "the WARN for reason %s", w.reason)
		if n := log.Count("level=WARN", w.msg); n != 1 {
			t.Errorf("%d WARNs %q, want 1", n, w.msg)
		}
		if n := log.Count("level=WARN", w.msg, count(w.reason), "reason="+w.reason); n != 1 {
			t.Errorf("the WARN %q lacks %s reason=%s", w.msg, count(w.reason), w.reason)
		}
	}
}

// loaderMetric is the value of the loader's counter name{stream, sink} in reg.
func loaderMetric(tb testing.TB, reg *prometheus.Registry, name, stream, sink string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["stream"] == stream && labels["sink"] == sink {
				return m.GetCounter().GetValue()
			}
		}
	}
	tb.Fatalf("no metric %s{stream=%q,sink=%q}", name, stream, sink)
	return 0
}

// The fix a retention dead letter names, applied while the sink runs: a
// record two hours old is dead-lettered on a topic keeping an hour; once
// the topic's retention.ms is raised to a day on the broker, the sink's
// periodic re-read of the topic configs (shortened here from 5 minutes)
// applies it without a restart, and such a record is produced.
// Real broker (shared): the configs are the broker's (DescribeConfigs,
// IncrementalAlterConfigs), which librdkafka's mock does not serve. Not
// parallel: it shortens a package variable the other tests' sinks read.
func TestRetentionRaisedWhileRunningApplies(t *testing.T) {
	defer kafkasink.SetConfigRefresh(200 * time.Millisecond)()
	c := testenv.Broker(t)
	topic := testenv.Topic(t, c, kafkaserver.TopicSpec{Partitions: 1, Configs: map[string]string{"retention.ms": "3600000"}})
	sch := testSchema(t, map[string]string{"events": topic})
	log, logger := loadertest.NewLog(t)
	s := newSink(t, c, kafkasink.Config{Topics: []string{topic}, Logger: logger})
	g := newGen(t, sch, "api", 10)
	old := func() []loader.Record {
		recs := g.records("events", "acct-1")
		recs[0].Time = time.Now().Add(-2 * time.Hour)
		return recs
	}
	dl := &loadertest.Rejects{}
	a := newAcks()
	ctx := testenv.Context(t, 90*time.Second)
	if err := g.submit(ctx, s, g.batch(1, old(), dl), a.fn(1)); err != nil {
		t.Fatal(err)
	}
	a.wait(t, 1, 30*time.Second)
	if err := a.err(1); err != nil {
		t.Fatalf("ack: %v", err)
	}
	if rs := dl.All(); len(rs) != 1 || rs[0].Reason != "retention" {
		t.Fatalf("dead letters %+v, want the record with reason retention", rs)
	}

	if err := c.SetTopicConfig(ctx, topic, map[string]string{"retention.ms": "86400000"}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		return log.Count("topic config changed on the brokers", "retention=24h0m0s") > 0
	}, "the sink reading the raised retention")
	if err := g.submit(ctx, s, g.batch(2, old(), dl), a.fn(2)); err != nil {
		t.Fatal(err)
	}
	a.wait(t, 1, 30*time.Second)
	if err := a.err(2); err != nil {
		t.Fatalf("ack: %v", err)
	}
	if n := len(dl.All()); n != 1 {
		t.Fatalf("%d dead letters after the retention was raised, want still 1", n)
	}
	// The delivery counter moves just after the reports that complete a
	// batch, so it may trail the ack.
	testenv.Eventually(t, 10*time.Second, func() bool {
		st := s.Stats()
		return st.Delivered == 1 && st.Rejected == 1
	}, "Stats %+v: 1 delivered, 1 rejected", loadertest.Lazy(func() string { return fmt.Sprintf("%+v", s.Stats()) }))
	if n := topicSize(t, c, topic); n != 1 {
		t.Fatalf("topic holds %d messages, want the one record produced", n)
	}
}

// BenchmarkLoaderEventTimeDeadLetters loads b.N lines through the loader
// and the sink to a topic keeping an hour: "old" lines are 3 hours old and
// all dead-lettered for their event time, "current" ones are delivered.
// It reports lines/s from the loader's start to its Kafka checkpoint at
// the end of the file. Real broker (shared): the topic's retention is read
// with DescribeConfigs.
//
//	go test -run '^$' -bench LoaderEventTimeDeadLetters -benchtime 20000x ./kafkasink/
func BenchmarkLoaderEventTimeDeadLetters(b *testing.B) {
	for _, age := range []struct {
		name string
		d    time.Duration
	}{{"old", 3 * time.Hour}, {"current", 0}} {
		b.Run(age.name, func(b *testing.B) {
			c := testenv.Broker(b)
			topic := testenv.Topic(b, c, kafkaserver.TopicSpec{Partitions: 3, Configs: map[string]string{"retention.ms": "3600000"}})
			spool := b.TempDir()
			dir := filepath.Join(spool, loaderStream)
			if err := os.MkdirAll(dir, 0o750); err != nil {
				b.Fatal(err)
			}
			var text strings.Builder
			now := time.Now()
			body := strings.Repeat("x", 200)
			for seq := range b.N {
				fmt.Fprintf(&text, `{"table":"events","row":{"acct":"acct-%d","seq":%d,"ts":%d,"body":%q}}`+"\n", seq%7, seq, now.Add(-age.d).UnixMilli(), body)
			}
			if err := os.WriteFile(filepath.Join(dir, rotatefile.FileName(1, now, ".ndjson")), []byte(text.String()), 0o640); err != nil {
				b.Fatal(err)
			}
			sink := newSink(b, c, kafkasink.Config{Topics: []string{topic}, Logger: slog.New(slog.DiscardHandler)})
			b.ResetTimer()
			start := time.Now()
			run := loadertest.Start(b, loader.Config{Dir: spool, Schema: testSchema(b, map[string]string{"events": topic}),
				Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()}, loader.SinkSpec{Sink: sink, MaxInFlight: 4})
			end := loadertest.StreamEnd(b, spool, loaderStream)
			testenv.Eventually(b, 10*time.Minute, func() bool { return run.Position(loaderStream, "kafka") == end }, "the Kafka checkpoint at the end")
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "lines/s")
			b.StopTimer()
			st := sink.Stats()
			if age.d > 0 && st.Rejected != int64(b.N) || age.d == 0 && st.Rejected != 0 {
				b.Fatalf("Stats %+v after %d %s lines", st, b.N, age.name)
			}
			if err := run.Stop(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
