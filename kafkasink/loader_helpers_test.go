package kafkasink_test

// Helpers of the loader-level tests (loader_*_test.go): the real loader
// tails files written by the real rotatefile writer and feeds the real
// kafkasink, which produces to a real Kafka broker (internal/kafkaserver);
// the tests read the topic back with a real consumer.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/dualwrite/ingest/internal/kafkaserver"
	"github.com/dualwrite/ingest/kafkasink"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/rotatefile"
)

// loaderStream is the one stream the loader-level tests write and load.
const loaderStream = "api"

// lineWriter appends numbered lines to a stream with rotatefile from one
// goroutine, so the seq of a line is its place in file order. Line seq has
// account acct[seq], chosen at random among the test's accounts.
type lineWriter struct {
	tb    testing.TB
	w     *rotatefile.Writer
	table string

	mu   sync.Mutex
	acct []string // by seq: the lines appended so far

	stop chan struct{}
	done chan struct{}
}

// writerPace says how the writer appends: burst lines, then a pause, until
// max lines are written or stop is called.
type writerPace struct {
	max   int
	burst int
	pause time.Duration
	accts int
	body  int // bytes of the body column
	// random makes every body random base64, which compression cannot
	// shrink, instead of one repeated letter.
	random bool
}

// startLineWriter opens a rotatefile writer on dir/loaderStream with
// maxBytes per file and starts appending. Cleanup stops it.
func startLineWriter(tb testing.TB, dir, table string, maxBytes int64, pace writerPace) *lineWriter {
	tb.Helper()
	w, err := rotatefile.Open(rotatefile.Options{Dir: dir, Stream: loaderStream, MaxBytes: maxBytes, FlushInterval: time.Millisecond})
	if err != nil {
		tb.Fatal(err)
	}
	lw := &lineWriter{tb: tb, w: w, table: table, stop: make(chan struct{}), done: make(chan struct{})}
	seed := uint64(time.Now().UnixNano())
	tb.Logf("line writer: seed %d, %d accounts, up to %d lines, %d-byte files", seed, pace.accts, pace.max, maxBytes)
	rng := rand.New(rand.NewPCG(seed, 5))
	body := strings.Repeat("b", pace.body)
	go func() {
		defer close(lw.done)
		for seq := 0; seq < pace.max; seq++ {
			if pace.burst > 0 && seq%pace.burst == 0 && seq > 0 {
				select {
				case <-lw.stop:
					return
				case <-time.After(pace.pause):
				}
			}
			acct := fmt.Sprintf("acct-%d", rng.IntN(pace.accts))
			if pace.random {
				body = randomBody(rng, pace.body)
			}
			line := fmt.Appendf(nil, `{"table":%q,"row":{"acct":%q,"seq":%d,"ts":%d,"body":%q}}`,
				table, acct, seq, time.Now().UnixMilli(), body)
			// Record the account first: a line the loader may see must be
			// known to the test.
			lw.mu.Lock()
			lw.acct = append(lw.acct, acct)
			lw.mu.Unlock()
			if err := w.Append(line); err != nil {
				lw.tb.Errorf("append line %d: %v", seq, err)
				return
			}
		}
	}()
	tb.Cleanup(func() { lw.finish() })
	return lw
}

// appended is the number of lines appended so far.
func (lw *lineWriter) appended() int {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return len(lw.acct)
}

// accounts returns the account of every line appended, by seq.
func (lw *lineWriter) accounts() []string {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return slices.Clone(lw.acct)
}

// account is the account of line seq.
func (lw *lineWriter) account(seq int) string {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.acct[seq]
}

// isDone reports whether the writer has written all its lines.
func (lw *lineWriter) isDone() bool {
	select {
	case <-lw.done:
		return true
	default:
		return false
	}
}

// finish stops appending, waits for the goroutine and closes the writer,
// which seals the active file. It returns the number of lines written.
func (lw *lineWriter) finish() int {
	select {
	case <-lw.stop:
	default:
		close(lw.stop)
	}
	<-lw.done
	if err := lw.w.Close(); err != nil {
		lw.tb.Errorf("close writer: %v", err)
	}
	return lw.appended()
}

// topicSize is the number of messages in a topic: the sum of its
// partitions' high watermarks (nothing is deleted in these tests).
func topicSize(tb testing.TB, c *kafkaserver.Cluster, topic string) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	parts, err := c.Partitions(ctx, topic)
	if err != nil {
		tb.Fatal(err)
	}
	cons, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": c.Bootstrap(), "group.id": "loader-test-watermarks", "log_level": 3})
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = cons.Close() }()
	total := 0
	for p := range parts {
		low, high, err := cons.QueryWatermarkOffsets(topic, int32(p), 10000)
		if err != nil {
			tb.Fatalf("watermarks of %s[%d]: %v", topic, p, err)
		}
		if low != 0 {
			tb.Fatalf("%s[%d] starts at offset %d: the broker deleted messages", topic, p, low)
		}
		total += int(high)
	}
	return total
}

// settledTopicSize waits until the topic's size stops changing (messages
// a killed producer had already written to a socket may still be appended
// by the broker) and returns it.
func settledTopicSize(tb testing.TB, c *kafkaserver.Cluster, topic string) int {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	prev := topicSize(tb, c, topic)
	for {
		time.Sleep(50 * time.Millisecond) // the interval between two reads that must agree
		n := topicSize(tb, c, topic)
		if n == prev {
			return n
		}
		if time.Now().After(deadline) {
			tb.Fatalf("topic %s still growing after 10 s (%d -> %d)", topic, prev, n)
		}
		prev = n
	}
}

// delivery is what a topic holds, checked against the lines written.
type delivery struct {
	repeats int                   // messages beyond the first of each record id
	maxCopy int                   // most copies of one record
	pos     []loader.Position     // by seq: where the line is in the spool
	copies  map[string]int        // by record id
	first   map[string][]consumed // by account: the first copy of each record, in partition order
}

// checkDelivery checks a topic's messages against the lines written
// (acct by seq, in file order):
//   - every line is there at least once, with key = its account, on the
//     partition Java's partitioner picks for that key;
//   - every message carries the table and record id headers, and copies of
//     one line carry the same record id and value (a record id never
//     names two lines);
//   - per account, keeping the first copy of each record id leaves exactly
//     the account's lines in file order.
func checkDelivery(tb testing.TB, msgs []consumed, acct []string, table string, partitions int) delivery {
	tb.Helper()
	n := len(acct)
	d := delivery{pos: make([]loader.Position, n), copies: map[string]int{}, first: map[string][]consumed{}}
	idOf := make([]string, n)
	valueOf := make([][]byte, n)
	seqOfID := map[string]int{}
	errs := 0
	fail := func(format string, args ...any) {
		tb.Helper()
		if errs++; errs <= 20 {
			tb.Errorf(format, args...)
		}
	}
	sorted := slices.Clone(msgs)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].partition != sorted[j].partition {
			return sorted[i].partition < sorted[j].partition
		}
		return sorted[i].offset < sorted[j].offset
	})
	for _, m := range sorted {
		if m.seq < 0 || m.seq >= n {
			fail("message with seq %d, only %d lines written", m.seq, n)
			continue
		}
		if m.key != acct[m.seq] {
			fail("line %d: key %q, want its account %q", m.seq, m.key, acct[m.seq])
		}
		if want := javaPartition(javaMurmur2([]byte(m.key)), partitions); m.partition != want {
			fail("line %d (key %q) in partition %d, Java's partitioner says %d", m.seq, m.key, m.partition, want)
		}
		if h := m.headers[kafkasink.HeaderTable]; h != table {
			fail("line %d: header %s=%q, want %q", m.seq, kafkasink.HeaderTable, h, table)
		}
		id := m.headers[kafkasink.HeaderRecordID]
		if id == "" {
			fail("line %d: no %s header", m.seq, kafkasink.HeaderRecordID)
			continue
		}
		if other, ok := seqOfID[id]; ok && other != m.seq {
			fail("record id %s names lines %d and %d", id, other, m.seq)
		}
		seqOfID[id] = m.seq
		if d.copies[id] == 0 {
			d.first[m.key] = append(d.first[m.key], m)
		}
		d.copies[id]++
		if idOf[m.seq] == "" {
			idOf[m.seq], valueOf[m.seq] = id, m.value
			pos, err := parseSource(m.headers[kafkasink.HeaderSource])
			if err != nil {
				fail("line %d: %v", m.seq, err)
			}
			d.pos[m.seq] = pos
			continue
		}
		if idOf[m.seq] != id {
			fail("line %d repeated with record id %s, first copy had %s", m.seq, id, idOf[m.seq])
		}
		if string(valueOf[m.seq]) != string(m.value) {
			fail("line %d repeated with a different value", m.seq)
		}
	}
	var missing []int
	for seq := range n {
		if idOf[seq] == "" {
			missing = append(missing, seq)
		}
	}
	if len(missing) > 0 {
		fail("%d of %d lines never arrived; first %v", len(missing), n, missing[:min(len(missing), 10)])
	}
	// Per account, first copies in partition order must be file order.
	want := map[string][]int{}
	for seq, a := range acct {
		want[a] = append(want[a], seq)
	}
	for a, seqs := range want {
		got := d.first[a]
		if len(got) != len(seqs) {
			continue // reported as missing above
		}
		for i, m := range got {
			if m.seq != seqs[i] {
				fail("account %s: after dropping repeats, message %d is line %d, want line %d (file order)", a, i, m.seq, seqs[i])
				break
			}
		}
	}
	for _, c := range d.copies {
		d.repeats += c - 1
		d.maxCopy = max(d.maxCopy, c)
	}
	if len(msgs) != len(d.copies)+d.repeats {
		fail("%d messages, %d records, %d repeats", len(msgs), len(d.copies), d.repeats)
	}
	if errs > 20 {
		tb.Errorf("... %d more delivery errors", errs-20)
	}
	for i := 1; i < n && errs == 0; i++ {
		if !d.pos[i-1].Before(d.pos[i]) {
			fail("line %d at %s is not after line %d at %s", i, d.pos[i], i-1, d.pos[i-1])
		}
	}
	return d
}

// covered is how many lines (a prefix, by seq) lie before checkpoint cp.
func (d delivery) covered(cp loader.Position) int {
	return sort.Search(len(d.pos), func(i int) bool { return !d.pos[i].Before(cp) })
}

// parseSource parses the ingest.source header, "<stream>/<file>/<offset>".
func parseSource(s string) (loader.Position, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 || parts[0] != loaderStream {
		return loader.Position{}, fmt.Errorf("source header %q is not %s/<file>/<offset>", s, loaderStream)
	}
	off, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return loader.Position{}, fmt.Errorf("source header %q: %v", s, err)
	}
	return loader.Position{File: parts[1], Offset: off}, nil
}

// rowSeq extracts "seq" from a row the lineWriter or gen wrote, without a
// JSON library: the rows are the tests' own.
func rowSeq(row []byte) (int, error) {
	s := string(row)
	i := strings.Index(s, `"seq":`)
	if i < 0 {
		return 0, fmt.Errorf("row without seq: %.80s", s)
	}
	s = s[i+len(`"seq":`):]
	j := strings.IndexByte(s, ',')
	if j < 0 {
		return 0, fmt.Errorf("row seq not followed by a field: %.80s", row)
	}
	return strconv.Atoi(s[:j])
}
