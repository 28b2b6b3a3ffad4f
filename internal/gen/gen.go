// Package gen is the load generator behind `ingest gen` and the demo: it
// writes realistic offline lines through [rotatefile] — the way an API
// embeds the writer — at a fixed rate.
//
// Lines look like the reference API's raw_item events: a project (account)
// id drawn from a skewed (Zipf) distribution, so a few accounts are busy and
// most are quiet; a unique uuid; the event time; and a base64 body whose
// size varies around the requested mean. Each line also carries, outside
// "row", the sequence number per account and the append time in
// nanoseconds (the sequence also inside "row", as "seq"), which the demo and
// benchmarks use to check per-account order
// and measure append-to-sink latency.
package gen

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"time"

	"github.com/dualwrite/ingest/rotatefile"
)

// Options configure a run. Zero fields take the documented defaults.
type Options struct {
	Dir    string // spool directory (required)
	Stream string // default "api"
	Table  string // default "raw_item"
	// Rate is lines per second; 0 writes as fast as the writer takes them.
	Rate float64
	// Count stops after this many lines; 0 runs until ctx ends.
	Count int64
	// Accounts is the number of distinct project ids; default 1000.
	Accounts int
	// Size is the mean line size in bytes; default 2500.
	Size int
	// Writer options (Sync, MaxBytes, MaxAge...); Dir and Stream are set
	// from the fields above.
	Writer rotatefile.Options
	// Seed makes the account sequence repeatable; 0 picks one.
	Seed uint64
	// Progress, when set, is called about once a second.
	Progress func(Stats)
}

// Stats summarise a run.
type Stats struct {
	Lines   int64
	Bytes   int64
	Elapsed time.Duration
}

// Run writes lines until Count or ctx ends, then closes the writer. It
// returns ctx's error only if Count was set and not reached.
func Run(ctx context.Context, o Options) (Stats, error) {
	if o.Dir == "" {
		return Stats{}, errors.New("gen: Dir is required")
	}
	if o.Stream == "" {
		o.Stream = "api"
	}
	if o.Table == "" {
		o.Table = "raw_item"
	}
	if o.Accounts <= 0 {
		o.Accounts = 1000
	}
	if o.Size <= 0 {
		o.Size = 2500
	}
	if o.Rate < 0 || o.Count < 0 {
		return Stats{}, fmt.Errorf("gen: rate and count must not be negative")
	}
	wo := o.Writer
	wo.Dir, wo.Stream = o.Dir, o.Stream
	w, err := rotatefile.Open(wo)
	if err != nil {
		return Stats{}, err
	}
	g := New(o.Table, o.Accounts, o.Size, o.Seed)
	var st Stats
	start := time.Now()
	lastProgress := start
	var line []byte
	for o.Count == 0 || st.Lines < o.Count {
		if ctx.Err() != nil {
			break
		}
		if o.Rate > 0 {
			due := start.Add(time.Duration(float64(st.Lines) / o.Rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-ctx.Done():
				}
				t.Stop()
				if ctx.Err() != nil {
					break
				}
			}
		}
		line = g.Line(line[:0], time.Now())
		if err := w.Append(line); err != nil {
			w.Close()
			st.Elapsed = time.Since(start)
			return st, fmt.Errorf("gen: append line %d: %w", st.Lines, err)
		}
		st.Lines++
		st.Bytes += int64(len(line)) + 1
		if o.Progress != nil && time.Since(lastProgress) >= time.Second {
			lastProgress = time.Now()
			st.Elapsed = lastProgress.Sub(start)
			o.Progress(st)
		}
	}
	err = w.Close()
	st.Elapsed = time.Since(start)
	if err == nil && o.Count > 0 && st.Lines < o.Count {
		err = ctx.Err()
	}
	return st, err
}

// Generator makes lines; it is not safe for concurrent use.
type Generator struct {
	table string
	size  int
	rng   *mrand.Rand
	zipf  *mrand.Zipf
	seq   []int64 // next sequence number per account
	body  []byte  // random base64, sliced per line
}

// New returns a generator over accounts 1..accounts with lines of about
// size bytes.
func New(table string, accounts, size int, seed uint64) *Generator {
	if seed == 0 {
		seed = mrand.Uint64()
	}
	rng := mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	raw := make([]byte, 3*size)
	rand.Read(raw)
	return &Generator{
		table: table,
		size:  size,
		rng:   rng,
		zipf:  mrand.NewZipf(rng, 1.1, 1, uint64(accounts-1)),
		seq:   make([]int64, accounts),
		body:  []byte(base64.StdEncoding.EncodeToString(raw)),
	}
}

// overhead is the size of a line without its body, near enough.
const overhead = 230

// Line appends one line (without newline) to dst.
func (g *Generator) Line(dst []byte, now time.Time) []byte {
	account := int(g.zipf.Uint64())
	seq := g.seq[account]
	g.seq[account]++
	// Sizes spread ±50% around the mean.
	n := max(16, g.size-overhead)
	n = n/2 + g.rng.IntN(n+1)
	n = min(n, len(g.body))
	off := g.rng.IntN(len(g.body) - n + 1)

	var id [16]byte
	binary64(id[:8], g.rng.Uint64())
	binary64(id[8:], g.rng.Uint64())
	id[6] = id[6]&0x0f | 0x40 // version 4
	id[8] = id[8]&0x3f | 0x80 // RFC 4122 variant

	dst = append(dst, `{"table":"`...)
	dst = append(dst, g.table...)
	dst = append(dst, `","row":{"project_id":`...)
	dst = strconv.AppendInt(dst, int64(account+1), 10)
	dst = append(dst, `,"timestamp":`...)
	dst = strconv.AppendInt(dst, now.Unix(), 10)
	dst = append(dst, `,"body":"`...)
	dst = append(dst, g.body[off:off+n]...)
	dst = append(dst, `","version":2,"billable":`...)
	dst = strconv.AppendInt(dst, int64(g.rng.IntN(2)), 10)
	dst = append(dst, `,"uuid":"`...)
	dst = appendUUID(dst, id)
	// seq repeats the counter inside the row so that consumers of the
	// Kafka topic (which carries the row only) can check per-account order.
	dst = append(dst, `","seq":`...)
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, `},"counter":`...)
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, `,"appended_ns":`...)
	dst = strconv.AppendInt(dst, now.UnixNano(), 10)
	return append(dst, '}')
}

func binary64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (8 * i))
	}
}

func appendUUID(dst []byte, id [16]byte) []byte {
	const hex = "0123456789abcdef"
	for i, b := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hex[b>>4], hex[b&15])
	}
	return dst
}

// TableConfig is the config file's entry for the table gen writes, under
// "tables:", with kafkaRoute as its Kafka selector (db: all). The demo and
// the end-to-end tests build their configs from it, so the line shape and
// the columns cannot drift apart.
func TableConfig(table, kafkaRoute string) string {
	return fmt.Sprintf(`  %s:
    key: project_id
    id: uuid
    time: timestamp
    columns: {project_id: bigint, timestamp: bigint, body: text, version: integer, billable: integer, uuid: uuid}
    db: all
    kafka: %s
`, table, kafkaRoute)
}
