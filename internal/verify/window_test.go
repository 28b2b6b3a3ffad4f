package verify_test

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/dualwrite/ingest/internal/backfill"
	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/internal/testenv"
	"github.com/dualwrite/ingest/internal/verify"
	"github.com/dualwrite/ingest/loader"
)

// A topic holding three windows A, B, C of records (messages timestamped
// with the rows' time field by the Kafka sink): verify of window B reads
// each partition from B's first offset to C's first — B's messages and
// none of C's, where it used to read to the end of the topic — and reports
// what it read and what librdkafka fetched from the broker, past B's end
// included; it finds a row deleted from PostgreSQL inside B and ignores one
// deleted in C; a window holding nothing on either side is "nothing to
// compare" unless allowed. What it fetches of each partition is B's
// messages plus the rest of the batch holding B's last offset plus at
// most one fetch (one batch, or verify.FetchBytes of small ones), with
// the batches read from the broker's log. Real broker: the window is found by Kafka's
// OffsetsForTimes, which the mock cluster answers with "end", and only a
// broker has a log to read batches from.
func TestVerifyWindowReadsOnlyTheWindow(t *testing.T) {
	const perWindow, batch = 3000, 100 // batch: the producer's batch.num.messages
	e := newEnv(t, 0, 6)
	// ~2 KB rows; all share this body, so lz4 shrinks a batch to 6-13 KB and
	// one fetch of verify.FetchBytes past B's end brings several batches,
	// which the allowance counts from the log. librdkafka's own prefetch
	// would take the rest of each partition (it did: 2,000 fetched of
	// 1,000).
	rnd := make([]byte, 1500)
	rand.Read(rnd)
	e.body = base64.StdEncoding.EncodeToString(rnd)
	e.archive = e.writeLines(t, "api", t0, 3*perWindow, 6, 0)
	cfg := e.config(t, "all")
	e.backfill(t, cfg, backfill.Options{})
	wB := loader.Window{Since: t0.Add(perWindow * time.Second), Until: t0.Add(2 * perWindow * time.Second)}

	// What the topic holds of B, per partition, by message timestamp.
	msgs, err := testenv.Broker(t).ReadTopic(testenv.Context(t, time.Minute), e.topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3*perWindow {
		t.Fatalf("topic holds %d messages, want %d", len(msgs), 3*perWindow)
	}
	inB := map[int32]int64{}
	for _, m := range msgs {
		if wB.Contains(m.Timestamp) {
			inB[m.TopicPartition.Partition]++
		}
	}

	// The allowance past B's end, per partition: the rest of the batch
	// holding B's last offset (B's fetch), then one fetch of
	// verify.FetchBytes from the next batch: that batch whole whatever its
	// size, and the batches after it that end within FetchBytes of its
	// start (or within it, when it is larger). Each batch holds at most
	// the producer's batch.num.messages.
	batches, nextBytes := map[int32][]recordBatch{}, map[int32]int64{}
	pastEnd := func(p int32, end int64) int64 {
		t.Helper()
		if batches[p] == nil {
			batches[p] = readBatches(t, testenv.Broker(t), e.topic, p)
		}
		bs := batches[p]
		for i, b := range bs {
			if b.first <= end-1 && end-1 <= b.last {
				allow := b.last - (end - 1)
				if i+1 == len(bs) {
					return allow
				}
				nextBytes[p] = bs[i+1].bytes
				reach := max(int64(verify.FetchBytes), bs[i+1].bytes)
				for size, j := int64(0), i+1; j < len(bs) && size+bs[j].bytes <= reach; j++ {
					if bs[j].count() > batch {
						t.Fatalf("partition %d: batch %+v holds more than batch.num.messages=%d", p, bs[j], batch)
					}
					size += bs[j].bytes
					allow += bs[j].count()
				}
				return allow
			}
		}
		t.Fatalf("partition %d: no batch holds offset %d: %+v", p, end-1, bs)
		return 0
	}

	checkReads := func(rep *verify.Report) {
		t.Helper()
		if rep.StartOffsets != verify.StartByTimestamp || rep.EndOffsets != verify.EndByTimestamp || len(rep.Reads) != 3 || rep.PastEnd {
			t.Fatalf("window B: offsets %q..%q, %d partition reads, past end %v", rep.StartOffsets, rep.EndOffsets, len(rep.Reads), rep.PastEnd)
		}
		var fetched int64
		allowed := map[int32]int64{}
		for _, p := range rep.Reads {
			// Read: B exactly (within one batch of it if the window's
			// offsets were off by a batch); Fetched: a real count from the
			// broker, at least what was read, and at most one fetch past
			// B's end (the batch holding B's last offset is B's).
			allow := pastEnd(p.Partition, p.End)
			allowed[p.Partition] = allow
			if p.Read < inB[p.Partition] || p.Read > inB[p.Partition]+batch || p.End-p.Start != inB[p.Partition] || p.End >= p.HighWatermark ||
				p.Fetched < p.Read || p.Fetched > p.Read+allow {
				t.Errorf("partition %d: read %+v, holds %d messages of window B; fetched more than %d past its end", p.Partition, p, inB[p.Partition], allow)
			}
			fetched += p.Fetched
		}
		t.Logf("window B (%d messages): fetched %d (allowed past the end, per partition: %v; bytes of the batch after the end's: %v): %+v", perWindow, fetched, allowed, nextBytes, rep.Reads)
		if rep.Messages != perWindow || t.Failed() {
			t.Fatalf("window B: %d messages read, %d fetched; the window holds %d", rep.Messages, fetched, perWindow)
		}
	}
	rep := run(t, cfg, verify.Options{Window: wB})
	checkReads(rep)
	if !rep.OK || rep.Checked != 6 || account(t, rep, "1").DB.Count != perWindow/6 {
		t.Fatalf("window B before deleting: %+v", rep)
	}

	// Account 2's 10th row of B (line perWindow+6*10+1) and its 10th of C.
	goneB := []string{e.lines[perWindow+61].uuid}
	goneC := []string{e.lines[2*perWindow+61].uuid}
	if n := e.exec(t, `DELETE FROM raw_item WHERE uuid::text = ANY($1)`, slices.Concat(goneB, goneC)); n != 2 {
		t.Fatalf("deleted %d rows", n)
	}
	rep = run(t, cfg, verify.Options{Window: wB})
	checkReads(rep)
	a2 := account(t, rep, "2")
	if rep.OK || !slices.Equal(rep.Mismatched, []string{"2"}) || !slices.Equal(a2.MissingInDB, goneB) || len(a2.MissingInKafka) != 0 {
		t.Fatalf("window B after deleting %v (in B) and %v (in C): mismatched %v, account 2 %+v", goneB, goneC, rep.Mismatched, a2)
	}

	for _, w := range []loader.Window{
		{Since: t0.Add(3*perWindow*time.Second + time.Hour), Until: t0.Add(3*perWindow*time.Second + 2*time.Hour)}, // after every message
		{Since: t0.Add(-2 * time.Hour), Until: t0.Add(-time.Hour)},                                                 // before every message
	} {
		rep, err := verify.Run(testenv.Context(t, time.Minute), cfg, verify.Options{Table: "raw_item", Window: w})
		if !errors.Is(err, verify.ErrNothingToCompare) || rep == nil || rep.OK || !rep.Empty || rep.Messages != 0 {
			t.Fatalf("empty window %v: err %v, report %+v", w, err, rep)
		}
		rep, err = verify.Run(testenv.Context(t, time.Minute), cfg, verify.Options{Table: "raw_item", Window: w, AllowEmpty: true})
		if err != nil || !rep.OK || !rep.Empty {
			t.Fatalf("empty window %v allowed: err %v, report %+v", w, err, rep)
		}
	}
}

// History backfilled after newer records puts messages of an old window
// past the offsets its timestamps point to: verify looks there before it
// calls a record missing in Kafka, still names the records that are
// missing, and a window of newer records still reads only itself. Real
// broker: offsets by timestamp exist only there.
func TestVerifyFindsRecordsProducedOutOfTimeOrder(t *testing.T) {
	const n = 1200
	e := newEnv(t, n, 4)
	cfg := e.config(t, "all")
	e.backfill(t, cfg, backfill.Options{})
	// A day earlier, loaded after: account 3's records never reach Kafka.
	hist := e.writeLines(t, "hist", t0.Add(-24*time.Hour), 400, 4, n)
	e.backfill(t, cfg, backfill.Options{Paths: []string{hist}, Sinks: []string{"db"}})
	e.backfill(t, cfg, backfill.Options{Paths: []string{hist}, Sinks: []string{"kafka"}, Accounts: []string{"1", "2", "4"}})

	wH := loader.Window{Since: t0.Add(-24 * time.Hour), Until: t0.Add(-23 * time.Hour)}
	rep := run(t, cfg, verify.Options{Window: wH})
	var past int64
	for _, p := range rep.Reads {
		past += p.PastEndRead
	}
	missing := e.uuidsOf("3", func(i int) bool { return i >= n/4 })
	a3 := account(t, rep, "3")
	if !rep.PastEnd || past < 300 || rep.OK || !slices.Equal(rep.Mismatched, []string{"3"}) || !slices.Equal(a3.MissingInKafka, missing) {
		t.Fatalf("history window: past end %v (%d read), mismatched %v, account 3 missing %d, want %d", rep.PastEnd, past, rep.Mismatched, len(a3.MissingInKafka), len(missing))
	}
	if a1 := account(t, rep, "1"); !a1.Agree || a1.Kafka.Count != 100 {
		t.Fatalf("account 1 in the history window: %+v", a1)
	}

	// The newer records' window ends at the first message of its end time,
	// before the history.
	w := loader.Window{Since: t0, Until: t0.Add(600 * time.Second)}
	rep = run(t, cfg, verify.Options{Window: w})
	if !rep.OK || rep.PastEnd || rep.Messages != 600 {
		t.Fatalf("window %v: ok %v, past end %v, %d messages read", w, rep.OK, rep.PastEnd, rep.Messages)
	}
	// --to-end reads the history too (filtered out by time), not past end.
	rep = run(t, cfg, verify.Options{Window: w, ReadToEnd: true})
	if !rep.OK || rep.EndOffsets != verify.EndHighWatermark || rep.Messages != int64(n+300) {
		t.Fatalf("window %v to the end: ok %v, end %q, %d messages read", w, rep.OK, rep.EndOffsets, rep.Messages)
	}
}

// A topic that stamps messages with the broker's append time says nothing
// about row times through its timestamps: verify reads such a topic whole
// and still compares the window exactly. Real broker: the topic config
// only exists there.
func TestVerifyAppendTimeTopicIsReadWhole(t *testing.T) {
	e := newEnvOn(t, 600, 3, func(tb testing.TB) (string, string) {
		c := testenv.Broker(tb)
		return c.Bootstrap(), testenv.Topic(tb, c, kafkaserver.TopicSpec{Partitions: 3, Configs: map[string]string{
			"retention.ms": "-1", "message.timestamp.type": "LogAppendTime",
		}})
	})
	cfg := e.config(t, "all")
	e.backfill(t, cfg, backfill.Options{})
	gone := e.uuidsOf("1", func(i int) bool { return i == 150 }) // line 450, in the window
	if n := e.exec(t, `DELETE FROM raw_item WHERE uuid::text = ANY($1)`, gone); n != 1 {
		t.Fatalf("deleted %d rows", n)
	}
	w := loader.Window{Since: t0.Add(300 * time.Second), Until: t0.Add(500 * time.Second)}
	rep := run(t, cfg, verify.Options{Window: w})
	if rep.StartOffsets != verify.StartAppendTime || rep.EndOffsets != verify.EndHighWatermark || rep.Messages != 600 ||
		!slices.Equal(rep.Mismatched, []string{"1"}) || !slices.Equal(account(t, rep, "1").MissingInDB, gone) || account(t, rep, "2").Kafka.Count != 67 {
		t.Fatalf("window %v on a LogAppendTime topic: %+v", w, rep)
	}
}

// recordBatch is one record batch of a partition's log: offsets
// first..last, and its size in the log (what a fetch counts).
type recordBatch struct{ first, last, bytes int64 }

func (b recordBatch) count() int64 { return b.last - b.first + 1 }

// readBatches reads the record batches of a partition from the broker's
// log segments (message format v2: base offset, length, leader epoch,
// magic, crc, attributes, last offset delta), in offset order.
func readBatches(t *testing.T, c *kafkaserver.Cluster, topic string, partition int32) []recordBatch {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(c.Dir(), "node*", "data", fmt.Sprintf("%s-%d", topic, partition), "*.log"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("log segments of %s[%d] under %s: %v (none found)", topic, partition, c.Dir(), err)
	}
	sort.Strings(segs) // named by base offset, zero-padded
	var out []recordBatch
	for _, seg := range segs {
		data, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		for pos := 0; pos+27 <= len(data); {
			base := int64(binary.BigEndian.Uint64(data[pos:]))
			length := int(binary.BigEndian.Uint32(data[pos+8:]))
			if length == 0 { // preallocated tail of the active segment
				break
			}
			if magic := data[pos+16]; magic != 2 {
				t.Fatalf("%s at %d: message format %d, want 2", seg, pos, magic)
			}
			delta := int64(binary.BigEndian.Uint32(data[pos+23:]))
			out = append(out, recordBatch{first: base, last: base + delta, bytes: int64(12 + length)})
			pos += 12 + length
		}
	}
	return out
}
