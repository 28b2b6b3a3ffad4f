package dbsink_test

// The loader tests' traffic: lines appended through the rotatefile writer,
// as the API appends them, and the record of what was appended that the
// tests check the tables and the dead letters against.

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dualwrite/ingest/rotatefile"
)

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// feedRow is a valid line as appended: which table, its id and seq.
type feedRow struct {
	Table string
	ID    string
	Seq   int
}

func (r feedRow) line(body string) string {
	return fmt.Sprintf(`{"table":%q,"row":{"id":%q,"acct":%d,"seq":%d,"body":%q}}`, r.Table, r.ID, r.Seq%17, r.Seq, body)
}

// lineFeed appends lines through a rotatefile writer and remembers the valid
// ones in append order (one writer goroutine at a time, so append order is
// file order).
type lineFeed struct {
	w    *rotatefile.Writer
	body string

	mu     sync.Mutex
	rows   []feedRow
	bad    []string // invalid lines appended, in order
	badOff []int64  // their offsets, valid while the writer has not rotated
	size   int64    // bytes appended
}

func openFeed(tb testing.TB, spool string, maxBytes int64, body string) *lineFeed {
	tb.Helper()
	w, err := rotatefile.Open(rotatefile.Options{Dir: spool, Stream: loaderStream, MaxBytes: maxBytes, FlushInterval: time.Millisecond})
	if err != nil {
		tb.Fatalf("open writer: %v", err)
	}
	tb.Cleanup(func() { w.Close() })
	return &lineFeed{w: w, body: body}
}

// add appends one valid line, alternating between the two tables, and
// returns how many valid lines the feed has appended.
func (f *lineFeed) add() (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	seq := len(f.rows)
	r := feedRow{Table: feedTables[seq%2], ID: newUUID(), Seq: seq}
	line := r.line(f.body)
	if err := f.w.Append([]byte(line)); err != nil {
		return seq, fmt.Errorf("append line %d: %w", seq, err)
	}
	f.rows = append(f.rows, r)
	f.size += int64(len(line)) + 1
	return len(f.rows), nil
}

// addRaw appends a line that the loader must dead-letter.
func (f *lineFeed) addRaw(line string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.w.Append([]byte(line)); err != nil {
		return fmt.Errorf("append %q: %w", line, err)
	}
	f.bad = append(f.bad, line)
	f.badOff = append(f.badOff, f.size)
	f.size += int64(len(line)) + 1
	return nil
}

// all returns the valid lines appended so far, in append order.
func (f *lineFeed) all() []feedRow {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]feedRow(nil), f.rows...)
}

// run appends lines on the caller's goroutine until stop is closed or n
// lines were appended (n <= 0: no limit): perTick lines every tick, which
// paces the writer (a steady producer, not synchronisation). Every
// badEvery-th line (0: none) is followed by a line naming an unknown table.
func (f *lineFeed) run(stop <-chan struct{}, n int, tick time.Duration, perTick, badEvery int) error {
	t := time.NewTicker(tick)
	defer t.Stop()
	appended := len(f.all())
	for {
		for range perTick {
			if n > 0 && appended >= n {
				return nil
			}
			var err error
			if appended, err = f.add(); err != nil {
				return err
			}
			if badEvery > 0 && appended%badEvery == 0 {
				if err := f.addRaw(fmt.Sprintf(`{"table":"no_such_table","row":{"id":%q,"acct":1,"seq":-1,"body":"x"}}`, newUUID())); err != nil {
					return err
				}
			}
		}
		select {
		case <-stop:
			return nil
		case <-t.C:
		}
	}
}
