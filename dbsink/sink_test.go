package dbsink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dualwrite/ingest/internal/loadertest"
	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
)

// typesColumns has one column of every supported type.
var typesColumns = map[string]string{
	"k": "bigint", "u": "uuid", "i": "integer", "s": "smallint", "t": "text", "b": "boolean",
	"d": "double precision", "n": "numeric", "j": "jsonb", "ts": "timestamptz", "extra": "jsonb",
}

// typesSchema has the same columns twice: "types" loads through the
// staging table (id column), "types_noid" straight with COPY.
func typesSchema(tb testing.TB) *schema.Schema {
	return mustSchema(tb, map[string]*schema.Table{
		"types":      {Key: "k", ID: "u", Columns: typesColumns, UnknownFields: "jsonb:extra"},
		"types_noid": {Key: "k", Columns: typesColumns, UnknownFields: "jsonb:extra"},
	})
}

func TestRoundTripEveryType(t *testing.T) {
	t.Parallel()
	e := newSinkEnv(t, typesSchema(t), true)
	sch, s, conn, ctx := e.sch, e.sink, e.conn, e.ctx

	// 1 MiB of text with multi-byte characters and an escape every 1000 bytes.
	big := strings.Repeat(strings.Repeat("ab€d", 250)+`\n`, 1024)
	bigWant := strings.ReplaceAll(big, `\n`, "\n")
	str := func(s string) *string { return &s }
	rows := []struct {
		row  string
		want []*string // k u i s t b d n j ts extra
	}{
		{`{"k":9223372036854775807,"u":"bad3a155-585f-47cb-bc3e-51767d52c2a2","i":-2147483648,"s":32767,` +
			`"t":"héllo wörld ✓ 世界 🎉 tab\tnl\nquote\" backslash\\ slash\/ \u00e9 \ud83d\ude00 \u001f","b":true,"d":0.1,"n":"12.50",` +
			`"j":{"b":[1,2.5,null],"a":"x"},"ts":1574948156,"zz":"kept","yy":[1]}`,
			[]*string{str("9223372036854775807"), str("bad3a155-585f-47cb-bc3e-51767d52c2a2"), str("-2147483648"), str("32767"),
				str("héllo wörld ✓ 世界 🎉 tab\tnl\nquote\" backslash\\ slash/ é 😀 \x1f"), str("true"), str("0.1"), str("12.50"),
				str(`{"a": "x", "b": [1, 2.5, null]}`), str("2019-11-28 13:35:56+00"), str(`{"yy": [1], "zz": "kept"}`)}},
		{`{"k":-1,"u":"BAD3A155585F47CBBC3E51767D52C2A3","i":null,"s":null,"t":null,"b":null,"d":null,"n":null,"j":null,"ts":null}`,
			[]*string{str("-1"), str("bad3a155-585f-47cb-bc3e-51767d52c2a3"), nil, nil, nil, nil, nil, nil, nil, nil, nil}},
		{`{"k":0,"u":"{bad3a155-585f-47cb-bc3e-51767d52c2a4}"}`,
			[]*string{str("0"), str("bad3a155-585f-47cb-bc3e-51767d52c2a4"), nil, nil, nil, nil, nil, nil, nil, nil, nil}},
		{`{"k":42,"u":"bad3a155-585f-47cb-bc3e-51767d52c2a5","i":0,"s":-32768,"t":"","b":false,"d":-1.5e300,"n":1e-3,` +
			`"j":"just a string","ts":"2019-11-28T14:35:56.123456789+01:00"}`,
			[]*string{str("42"), str("bad3a155-585f-47cb-bc3e-51767d52c2a5"), str("0"), str("-32768"), str(""), str("false"),
				str("-1.5e+300"), str("0.001"), str(`"just a string"`), str("2019-11-28 13:35:56.123457+00"), nil}},
		{`{"k":43,"u":"bad3a155-585f-47cb-bc3e-51767d52c2a6","n":"-Infinity","d":5e-324,"ts":1574948156123,"j":[],"t":"` + big + `"}`,
			[]*string{str("43"), str("bad3a155-585f-47cb-bc3e-51767d52c2a6"), nil, nil, str(bigWant), nil,
				str("5e-324"), str("-Infinity"), str("[]"), str("2019-11-28 13:35:56.123+00"), nil}},
		{`{"k":44,"u":"bad3a155-585f-47cb-bc3e-51767d52c2a7","i":2147483647,"n":1.50e1,"d":1.7976931348623157e308,` +
			`"j":{"emoji":"\ud83d\ude00","n":-0},"ts":"1969-07-20T20:17:40Z","t":"\"\\\/\b\f\n\r\t"}`,
			[]*string{str("44"), str("bad3a155-585f-47cb-bc3e-51767d52c2a7"), str("2147483647"), nil, str("\"\\/\b\f\n\r\t"), nil,
				str("1.7976931348623157e+308"), str("15.0"), str(`{"n": 0, "emoji": "😀"}`), str("1969-07-20 20:17:40+00"), nil}},
		{`{"k":45,"u":"bad3a155-585f-47cb-bc3e-51767d52c2a8","n":"-123456789012345678901234567890.123456789012","d":-0,"ts":-1.5}`,
			[]*string{str("45"), str("bad3a155-585f-47cb-bc3e-51767d52c2a8"), nil, nil, nil, nil,
				str("-0"), str("-123456789012345678901234567890.123456789012"), nil, str("1969-12-31 23:59:58.5+00"), nil}},
	}

	for _, table := range []string{"types", "types_noid"} {
		t.Run(table, func(t *testing.T) {
			var lines []string
			for _, r := range rows {
				lines = append(lines, `{"table":"`+table+`","row":`+r.row+`}`)
			}
			f := newLineFile("000001", lines)
			dl := &loadertest.Rejects{}
			b := loader.NewBatch(table, f.pos[0], f.pos[len(lines)], f.decode(t, sch, 0, len(lines)), dl.Reject)
			if err := submit(t, ctx, s, b); err != nil {
				t.Fatalf("ack: %v", err)
			}
			if got := dl.All(); len(got) > 0 {
				t.Fatalf("rejected: %+v", got)
			}
			res, err := conn.Query(ctx, `SELECT k::text, u::text, i::text, s::text, t, b::text, d::text, n::text, j::text, ts::text, extra::text
				FROM `+table+` ORDER BY k`)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]*string{}
			for res.Next() {
				vals := make([]*string, 11)
				ptrs := make([]any, 11)
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				if err := res.Scan(ptrs...); err != nil {
					t.Fatal(err)
				}
				got[*vals[0]] = vals
			}
			if err := res.Err(); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(rows) {
				t.Fatalf("%d rows in %s, want %d", len(got), table, len(rows))
			}
			names := []string{"k", "u", "i", "s", "t", "b", "d", "n", "j", "ts", "extra"}
			for _, r := range rows {
				g := got[*r.want[0]]
				for c := range names {
					if !sameStr(g[c], r.want[c]) {
						t.Errorf("row k=%s column %s = %s, want %s", *r.want[0], names[c], show(g[c]), show(r.want[c]))
					}
				}
			}
			if cp := checkpointOf(t, s, table); cp != f.pos[len(lines)] {
				t.Errorf("checkpoint %v, want %v", cp, f.pos[len(lines)])
			}
		})
	}
}

func sameStr(a, b *string) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }

func show(s *string) string {
	switch {
	case s == nil:
		return "NULL"
	case len(*s) > 100:
		return fmt.Sprintf("%q... (%d bytes)", (*s)[:60], len(*s))
	}
	return fmt.Sprintf("%q", *s)
}

func TestValueThatDoesNotConvertIsRejected(t *testing.T) {
	t.Parallel()
	e := newSinkEnv(t, typesSchema(t), true)
	sch, s, conn, ctx := e.sch, e.sink, e.conn, e.ctx
	tbl, _ := sch.Lookup("types")

	u := func(n int) string { return fmt.Sprintf(`"bad3a155-585f-47cb-bc3e-%012d"`, n) }
	rows := []struct{ row, column string }{
		{`{"k":100,"u":` + u(100) + `,"i":7}`, ""},
		{`{"k":1,"u":` + u(1) + `,"i":"abc"}`, "i"},
		{`{"k":2,"u":` + u(2) + `,"i":2147483648}`, "i"},
		{`{"k":101,"u":` + u(101) + `,"t":"fine"}`, ""},
		{`{"k":3,"u":"not-a-uuid"}`, "u"},
		{`{"k":4,"u":` + u(4) + `,"n":"1e999999"}`, "n"},
		{`{"k":5,"u":` + u(5) + `,"ts":"yesterday"}`, "ts"},
		{`{"k":6,"u":` + u(6) + `,"t":"a\u0000b"}`, "t"},
		{`{"k":7,"u":` + u(7) + `,"b":1}`, "b"},
		{`{"k":8,"u":` + u(8) + `,"d":"1.0"}`, "d"},
		{`{"k":9,"u":` + u(9) + `,"s":1.5}`, "s"},
		{`{"k":10,"u":` + u(10) + `,"t":`, "row"}, // malformed
		{`{"k":102,"u":` + u(102) + `,"n":"NaN"}`, ""},
		// Not UTF-8: Decode refuses such a line, and so does the sink.
		{`{"k":11,"u":` + u(11) + `,"t":"` + "\xff\xfe" + `"}`, "row"},
	}
	var recs []loader.Record
	want := map[loader.Position]string{}
	for i, r := range rows {
		pos := loader.Position{File: "000001", Offset: int64(i * 100)}
		recs = append(recs, rawRecord(tbl, pos, r.row))
		if r.column != "" {
			want[pos] = r.column
		}
	}
	end := loader.Position{File: "000001", Offset: 5000}
	dl := &loadertest.Rejects{}
	if err := submit(t, ctx, s, loader.NewBatch("types", recs[0].Pos, end, recs, dl.Reject)); err != nil {
		t.Fatalf("ack: %v", err)
	}
	got := dl.All()
	if len(got) != len(want) {
		t.Errorf("%d rejected, want %d: %+v", len(got), len(want), got)
	}
	for _, d := range got {
		col, ok := want[d.Pos]
		if !ok {
			t.Errorf("unexpected rejection %+v", d)
			continue
		}
		wantReason := ReasonBadColumn
		if col == "row" {
			wantReason = ReasonMalformedRow
		}
		if d.Reason != wantReason || !strings.HasPrefix(d.Detail, col+": ") {
			t.Errorf("rejection at %v = %s %q, want reason %s naming column %s", d.Pos, d.Reason, d.Detail, wantReason, col)
		}
	}
	if n := queryInt(t, conn, `SELECT count(*) FROM types`); n != 3 {
		t.Errorf("%d rows stored, want 3", n)
	}
	if n := queryInt(t, conn, `SELECT count(*) FROM types WHERE k IN (100, 101, 102)`); n != 3 {
		t.Errorf("valid rows stored: %d, want 3", n)
	}
	if cp := checkpointOf(t, s, "types"); cp != end {
		t.Errorf("checkpoint %v, want %v", cp, end)
	}
}

func TestConstraintViolationRejectsOnlyThatRow(t *testing.T) {
	t.Parallel()
	cols := map[string]string{"acct": "bigint", "id": "uuid", "seq": "integer", "n": "integer", "t": "text"}
	sch := mustSchema(t, map[string]*schema.Table{
		"with_id": {Key: "acct", ID: "id", Columns: cols},
		"no_id":   {Key: "acct", Columns: cols},
	})
	e := newSinkEnv(t, sch, true)
	s, conn, ctx := e.sink, e.conn, e.ctx
	for _, tbl := range []string{"with_id", "no_id"} {
		exec(t, conn, `ALTER TABLE `+tbl+` ADD CONSTRAINT n_nonneg CHECK (n >= 0)`)
		exec(t, conn, `ALTER TABLE `+tbl+` ALTER COLUMN t SET NOT NULL`)
	}
	exec(t, conn, `CREATE UNIQUE INDEX no_id_seq ON no_id (seq)`)
	// A deferred constraint would fail the COMMIT, where the sink could
	// not isolate the row, unless the sink makes it immediate.
	exec(t, conn, `ALTER TABLE with_id ADD CONSTRAINT seq_unique UNIQUE (seq) DEFERRABLE INITIALLY DEFERRED`)

	const n = 60
	bad := map[string]map[int]string{ // table -> line -> expected detail fragment
		"with_id": {7: "n_nonneg", 30: "not-null", 31: "seq_unique", 59: "n_nonneg"},
		"no_id":   {0: "n_nonneg", 12: "n_nonneg", 40: "no_id_seq", 41: "not-null"},
	}
	var lines []string
	var want []int
	for _, tbl := range []string{"with_id", "no_id"} {
		for i := range n {
			seq, nv, tv := i, 1, `"x"`
			switch bad[tbl][i] {
			case "n_nonneg":
				nv = -1
			case "not-null":
				tv = "null"
			case "no_id_seq", "seq_unique":
				seq = 3 // same as line 3
			}
			lines = append(lines, fmt.Sprintf(`{"table":%q,"row":{"acct":1,"id":"00000000-0000-0000-0000-%012d","seq":%d,"n":%d,"t":%s}}`,
				tbl, len(lines), seq, nv, tv))
			if bad[tbl][i] != "" {
				want = append(want, len(lines)-1)
			}
		}
	}
	f := newLineFile("000001", lines)
	dl := &loadertest.Rejects{}
	b := loader.NewBatch("mixed", f.pos[0], f.pos[len(lines)], f.decode(t, sch, 0, len(lines)), dl.Reject)
	if err := submit(t, ctx, s, b); err != nil {
		t.Fatalf("ack: %v", err)
	}
	got := dl.All()
	if len(got) != len(want) {
		t.Fatalf("rejected %d rows, want %d: %+v", len(got), len(want), got)
	}
	for _, line := range want {
		tbl := "with_id"
		i := line
		if line >= n {
			tbl, i = "no_id", line-n
		}
		var found *loadertest.Rejected
		for k := range got {
			if got[k].Pos == f.pos[line] {
				found = &got[k]
			}
		}
		switch {
		case found == nil:
			t.Errorf("%s line %d (%s) not rejected", tbl, i, bad[tbl][i])
		case found.Reason != ReasonDBRejected || !strings.Contains(found.Detail, bad[tbl][i]) || !strings.Contains(found.Detail, "SQLSTATE 23"):
			t.Errorf("%s line %d rejected as %s %q, want db_rejected mentioning %s", tbl, i, found.Reason, found.Detail, bad[tbl][i])
		}
	}
	for _, tbl := range []string{"with_id", "no_id"} {
		if got := queryInt(t, conn, `SELECT count(*) FROM `+tbl); got != n-4 {
			t.Errorf("%s holds %d rows, want %d", tbl, got, n-4)
		}
	}
	if cp := checkpointOf(t, s, "mixed"); cp != f.pos[len(lines)] {
		t.Errorf("checkpoint %v, want %v", cp, f.pos[len(lines)])
	}
}

// seqSchema is a table without id (so only the checkpoint protects it
// from duplicates) and one with an id.
func seqSchema(tb testing.TB) *schema.Schema {
	return mustSchema(tb, map[string]*schema.Table{
		"plain": {Key: "acct", Columns: map[string]string{"acct": "bigint", "seq": "bigint", "body": "text"}},
		"keyed": {Key: "acct", ID: "seq", Columns: map[string]string{"acct": "bigint", "seq": "bigint", "body": "text"}},
	})
}

// seqLines returns n lines alternating between the two tables of
// seqSchema, seq = line number.
func seqLines(n int, body string) []string {
	lines := make([]string, n)
	for i := range lines {
		tbl := "plain"
		if i%3 == 0 {
			tbl = "keyed"
		}
		lines[i] = fmt.Sprintf(`{"table":%q,"row":{"acct":%d,"seq":%d,"body":%q}}`, tbl, i%7, i, body)
	}
	return lines
}

func TestReplayAddsNothing(t *testing.T) {
	t.Parallel()
	e := newSinkEnv(t, seqSchema(t), true)
	sch, s, conn, ctx := e.sch, e.sink, e.conn, e.ctx
	f := newLineFile("000001", seqLines(30, "x"))
	steps := []struct {
		from, to, want int // want: checkpoint line after the step
	}{
		{0, 10, 10},
		{0, 10, 10},  // the same batch again: a retry after a lost COMMIT reply
		{5, 15, 15},  // overlapping: lines 5-9 are skipped
		{0, 3, 15},   // entirely behind the checkpoint
		{15, 15, 15}, // empty
		{15, 30, 30},
	}
	for _, st := range steps {
		if err := submit(t, ctx, s, f.batch(t, sch, "s", st.from, st.to)); err != nil {
			t.Fatalf("batch [%d,%d): %v", st.from, st.to, err)
		}
		if cp := checkpointOf(t, s, "s"); cp != f.pos[st.want] {
			t.Fatalf("after [%d,%d): checkpoint %v, want %v", st.from, st.to, cp, f.pos[st.want])
		}
	}
	total := queryInt(t, conn, `SELECT (SELECT count(*) FROM plain) + (SELECT count(*) FROM keyed)`)
	distinct := queryInt(t, conn, `SELECT count(DISTINCT seq) FROM (SELECT seq FROM plain UNION ALL SELECT seq FROM keyed) x`)
	if total != 30 || distinct != 30 {
		t.Fatalf("%d rows, %d distinct, want 30 and 30", total, distinct)
	}
}

func TestEmptyBatchMovesCheckpoint(t *testing.T) {
	t.Parallel()
	e := newSinkEnv(t, seqSchema(t), true)
	srv, sch, s, ctx := e.srv, e.sch, e.sink, e.ctx
	noCheckpoint(t, s, "s", "before any batch")
	end := loader.Position{File: "000003", Offset: 1234}
	if err := submit(t, ctx, s, loader.NewBatch("s", loader.Position{File: "000001"}, end, nil, nil)); err != nil {
		t.Fatal(err)
	}
	if cp := checkpointOf(t, s, "s"); cp != end {
		t.Fatalf("checkpoint %v, want %v", cp, end)
	}
	// Another sink name has its own checkpoint.
	other := newSink(t, srv, sch, false, func(c *Config) { c.Name = "backfill" })
	noCheckpoint(t, other, "s", "of another sink")
}

// A COMMIT that succeeded but whose reply was lost looks like a
// connection error to the client. The retry must see the checkpoint and
// add nothing, even for a table without id.
func TestLostCommitReplyIsNotDuplicated(t *testing.T) {
	t.Parallel()
	e := newSinkEnv(t, seqSchema(t), true)
	sch, s, conn, ctx := e.sch, e.sink, e.conn, e.ctx
	var committed, commits atomic.Int32
	s.hook = func(ctx context.Context, point string) error {
		switch point {
		case "commit":
			// Fail the first COMMIT before it is sent: the retry must
			// redo the whole transaction.
			if commits.Add(1) == 1 {
				return io.ErrUnexpectedEOF
			}
		case "committed":
			if committed.Add(1) == 1 {
				return io.ErrUnexpectedEOF
			}
		}
		return nil
	}
	f := newLineFile("000001", seqLines(50, "y"))
	if err := submit(t, ctx, s, f.batch(t, sch, "s", 0, 50)); err != nil {
		t.Fatalf("ack: %v", err)
	}
	if c, k := commits.Load(), committed.Load(); c != 2 || k != 1 {
		t.Errorf("commit hook ran %d times, committed hook %d times; want 2 and 1", c, k)
	}
	if n := queryInt(t, conn, `SELECT count(*) FROM plain`); n != 33 {
		t.Errorf("plain holds %d rows, want 33", n)
	}
	if n := queryInt(t, conn, `SELECT count(*) FROM keyed`); n != 17 {
		t.Errorf("keyed holds %d rows, want 17", n)
	}
}

func TestNonRetryableErrorFailsBatch(t *testing.T) {
	t.Parallel()
	e := newSinkEnv(t, seqSchema(t), false) // not migrated: the tables do not exist
	sch, s, ctx := e.sch, e.sink, e.ctx
	f := newLineFile("000001", seqLines(3, "z"))
	err := submit(t, ctx, s, f.batch(t, sch, "s", 0, 3))
	if err == nil || Retryable(err) || !strings.Contains(err.Error(), "42P01") {
		t.Fatalf("ack = %v; want a non-retryable undefined-table error", err)
	}
	// A dead-letter queue that fails fails the batch too.
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	tbl, _ := sch.Lookup("plain")
	dlqDown := errors.New("disk full")
	b := loader.NewBatch("s", f.pos[0], f.pos[1], []loader.Record{rawRecord(tbl, f.pos[0], `{"acct":"x"}`)},
		func(context.Context, *loader.Record, string, string) error { return dlqDown })
	if err := submit(t, ctx, s, b); !errors.Is(err, dlqDown) {
		t.Fatalf("ack = %v; want the dead-letter error", err)
	}
	noCheckpoint(t, s, "s", "although the batch failed")
}

// TestDuplicateIDsSkippedAfterDirectCopy covers the id path's two ways
// in: the direct copy, which PostgreSQL refuses over a duplicate id, and
// the staging table it falls back to, which skips the duplicates. The
// batches come from different streams, so the checkpoint (per stream)
// does not skip them: only the id does, as in a backfill over live data.
func TestDuplicateIDsSkippedAfterDirectCopy(t *testing.T) {
	t.Parallel()
	e := newSinkEnv(t, seqSchema(t), true)
	sch, s, conn, ctx := e.sch, e.sink, e.conn, e.ctx
	keyed, _ := sch.Lookup("keyed")
	lines := func(seqs ...int) *lineFile {
		var ls []string
		for _, q := range seqs {
			ls = append(ls, fmt.Sprintf(`{"table":"keyed","row":{"acct":1,"seq":%d,"body":"x"}}`, q))
		}
		return newLineFile("000001", ls)
	}
	load := func(stream string, seqs ...int) {
		t.Helper()
		f := lines(seqs...)
		b := f.batch(t, sch, stream, 0, len(seqs))
		if err := submit(t, ctx, s, b); err != nil {
			t.Fatalf("stream %s %v: %v", stream, seqs, err)
		}
	}
	info, err := s.tableInfo(keyed)
	if err != nil {
		t.Fatal(err)
	}

	load("a", 1, 2, 3)
	if n := info.staged.Load(); n != 0 {
		t.Fatalf("after new ids: %d batches to stage, want 0 (direct copy)", n)
	}
	load("b", 3, 4, 4, 5) // 3 is stored, 4 twice in the batch
	if n := info.staged.Load(); n != stagedAfterDuplicate {
		t.Fatalf("after a duplicate: %d batches to stage, want %d", n, stagedAfterDuplicate)
	}
	for i := range stagedAfterDuplicate {
		load(fmt.Sprintf("c%d", i), 5, 100+i) // 5 is stored: staging skips it
	}
	if n := info.staged.Load(); n != 0 {
		t.Fatalf("after %d staged batches: %d still to stage", stagedAfterDuplicate, n)
	}
	load("d", 200) // direct again
	if n := info.staged.Load(); n != 0 {
		t.Fatalf("after new ids: %d batches to stage, want 0", n)
	}
	if total, distinct := queryInt(t, conn, `SELECT count(*) FROM keyed`), queryInt(t, conn, `SELECT count(DISTINCT seq) FROM keyed`); total != 6+stagedAfterDuplicate || distinct != total {
		t.Fatalf("keyed holds %d rows, %d distinct; want %d distinct", total, distinct, 6+stagedAfterDuplicate)
	}
}

// TestSubmitQueuesInStreamOrder submits batches without waiting for acks,
// as a loader with MaxInFlight > 1 would: a stream's batches commit one at
// a time in Submit order, and once a failed ack voided the rest of the
// epoch (as the loader fails it, inside ack), the batches queued behind
// fail with the epoch's error instead of moving the checkpoint over the
// failed batch's lines.
func TestSubmitQueuesInStreamOrder(t *testing.T) {
	t.Parallel()
	e := newSinkEnv(t, seqSchema(t), true)
	sch, s, conn, ctx := e.sch, e.sink, e.conn, e.ctx
	const n, per = 60, 6 // lines, lines per batch
	linesB := seqLines(n, "b")
	for i := range linesB { // ids of their own: stream b's keyed rows are not a's repeats
		linesB[i] = strings.Replace(linesB[i], fmt.Sprintf(`"seq":%d,`, i), fmt.Sprintf(`"seq":%d,`, 1000+i), 1)
	}
	files := map[string]*lineFile{"a": newLineFile("000001", seqLines(n, "a")), "b": newLineFile("000001", linesB)}

	// failSeq fails the first attempt of that batch of stream a with an
	// error that is not retried (0: none).
	var failSeq atomic.Uint64
	s.hook = func(ctx context.Context, point string) error {
		if point == "begin" && failSeq.Load() != 0 && ctx.Value(seqKey{}) == failSeq.Load() {
			failSeq.Store(0)
			return errors.New("injected failure")
		}
		return nil
	}
	type acked struct {
		stream string
		seq    uint64
		err    error
	}
	run := func(streams ...string) []acked {
		t.Helper()
		acks := make(chan acked, 2*n/per)
		epochs := map[string]*loader.Epoch{}
		for _, st := range streams {
			epochs[st] = loader.NewEpoch()
		}
		for i := 0; i < n; i += per {
			for _, st := range streams {
				f := files[st]
				b := f.batch(t, sch, st, i, i+per).InEpoch(epochs[st], uint64(i/per+1))
				ack := func(err error) {
					if err != nil {
						epochs[st].Fail(b.Seq, st, err)
					}
					acks <- acked{st, b.Seq, err}
				}
				if err := s.Submit(context.WithValue(ctx, seqKey{}, b.Seq), b, ack); err != nil {
					t.Fatalf("Submit: %v", err)
				}
			}
		}
		var got []acked
		for range len(streams) * n / per {
			got = append(got, <-acks)
		}
		return got
	}

	failSeq.Store(4)
	for _, a := range run("a") {
		switch {
		case a.seq < 4 && a.err != nil:
			t.Errorf("batch %d: %v", a.seq, a.err)
		case a.seq == 4 && (a.err == nil || !strings.Contains(a.err.Error(), "injected failure")):
			t.Errorf("batch 4 = %v, want the injected failure", a.err)
		case a.seq > 4 && !errors.Is(a.err, loader.ErrEpochCancelled):
			t.Errorf("batch %d behind the failed one = %v, want loader.ErrEpochCancelled", a.seq, a.err)
		}
	}
	if cp := checkpointOf(t, s, "a"); cp != files["a"].pos[3*per] {
		t.Fatalf("checkpoint after the failure %v, want the end of batch 3 %v", cp, files["a"].pos[3*per])
	}

	// The replay from the checkpoint, with a second stream alongside.
	seen := map[string]uint64{}
	for _, a := range run("a", "b") {
		if a.err != nil {
			t.Errorf("stream %s batch %d: %v", a.stream, a.seq, a.err)
		}
		if a.seq <= seen[a.stream] {
			t.Errorf("stream %s: batch %d acknowledged after batch %d", a.stream, a.seq, seen[a.stream])
		}
		seen[a.stream] = a.seq
	}
	for st, f := range files {
		if cp := checkpointOf(t, s, st); cp != f.pos[n] {
			t.Errorf("stream %s: checkpoint %v, want %v", st, cp, f.pos[n])
		}
	}
	for _, tbl := range []string{"plain", "keyed"} {
		total, distinct := queryInt(t, conn, `SELECT count(*) FROM `+tbl), queryInt(t, conn, `SELECT count(DISTINCT (body, seq)) FROM `+tbl)
		if total != distinct {
			t.Errorf("%s: %d rows, %d distinct", tbl, total, distinct)
		}
	}
	if got := queryInt(t, conn, `SELECT (SELECT count(*) FROM plain) + (SELECT count(*) FROM keyed)`); got != 2*n {
		t.Errorf("%d rows, want %d", got, 2*n)
	}
}

type seqKey struct{}

// TestVoidBatchIsNotStored: a batch whose epoch a failed earlier batch
// voided is acknowledged with the epoch's error and stores nothing, not
// even its checkpoint; an earlier batch of that epoch, which the failure
// does not void, is stored.
func TestVoidBatchIsNotStored(t *testing.T) {
	t.Parallel()
	e := newSinkEnv(t, seqSchema(t), true)
	sch, s, conn, ctx := e.sch, e.sink, e.conn, e.ctx
	f := newLineFile("000001", seqLines(30, "v"))
	epoch := loader.NewEpoch()
	b1 := f.batch(t, sch, "s", 0, 10).InEpoch(epoch, 1)
	b3 := f.batch(t, sch, "s", 20, 30).InEpoch(epoch, 3)
	failed := errors.New("batch 2 refused")
	epoch.Fail(2, "s", failed)
	if err := submit(t, ctx, s, b1); err != nil {
		t.Fatalf("batch 1, before the failed one: %v", err)
	}
	err := submit(t, ctx, s, b3)
	if !errors.Is(err, loader.ErrEpochCancelled) || !errors.Is(err, failed) {
		t.Fatalf("batch 3, after the failed one = %v; want loader.ErrEpochCancelled wrapping %v", err, failed)
	}
	if cp := checkpointOf(t, s, "s"); cp != f.pos[10] {
		t.Fatalf("checkpoint %v, want the end of batch 1 %v", cp, f.pos[10])
	}
	if n := queryInt(t, conn, `SELECT (SELECT count(*) FROM plain) + (SELECT count(*) FROM keyed)`); n != 10 {
		t.Fatalf("%d rows, want batch 1's 10", n)
	}
}
