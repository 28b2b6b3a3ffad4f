package dbsink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/dualwrite/ingest/loader"
	"github.com/dualwrite/ingest/schema"
)

// batchState is one Submit's work: the converted rows grouped by table,
// and which records were dead-lettered, which survives retries so that a
// row is rejected at most once per Submit.
type batchState struct {
	b        *loader.Batch
	groups   []*group
	rejected []bool // by record index
}

// group is the rows of one table in a batch. vals holds len(recs) rows of
// len(info.cols) values, flat, so a batch costs one allocation per table
// rather than one per row.
type group struct {
	info *tableInfo
	recs []int // record indexes into b.Records
	vals []any
}

func (g *group) row(j int) []any {
	n := len(g.info.cols)
	return g.vals[j*n : (j+1)*n : (j+1)*n]
}

// prepare converts every record to column values, rejecting those that do
// not convert. It runs once per Submit, before any transaction, so that
// retries reuse the values.
func (s *Sink) prepare(ctx context.Context, b *loader.Batch) (*batchState, error) {
	st := &batchState{b: b, rejected: make([]bool, len(b.Records))}
	for i := range b.Records {
		r := &b.Records[i]
		if r.Table == nil {
			if err := s.reject(ctx, st, i, string(schema.ReasonUnknownTable), "record has no table"); err != nil {
				return nil, err
			}
			continue
		}
		g, err := st.group(s, r.Table, len(b.Records))
		if err != nil {
			return nil, err
		}
		// The loader's Decode converted the values; a record made another
		// way (a tool, a test) gets them from the same code now.
		rec := &r.Record
		if !rec.HasValues() {
			dec, err := r.Table.DecodeRow(r.Row)
			if err != nil {
				reason, detail := rowRejection(err)
				if err := s.reject(ctx, st, i, reason, detail); err != nil {
					return nil, err
				}
				continue
			}
			rec = &dec
		}
		base := len(g.vals)
		n := len(g.info.cols)
		g.vals = append(g.vals, make([]any, n)...)
		var bad error
		for c := range n {
			v := rec.Value(c)
			if v.Null() {
				continue // SQL NULL: the column is absent or null
			}
			x, err := g.info.conv[c](v)
			if err != nil {
				bad = fmt.Errorf("%s: %w", g.info.cols[c].Name, err)
				break
			}
			g.vals[base+c] = x
		}
		if bad != nil {
			clear(g.vals[base:])
			g.vals = g.vals[:base]
			if err := s.reject(ctx, st, i, ReasonBadColumn, bad.Error()); err != nil {
				return nil, err
			}
			continue
		}
		g.recs = append(g.recs, i)
	}
	return st, nil
}

// rowRejection is the dead-letter reason and detail for a row that
// schema.Table.DecodeRow refused: malformed_json naming "row" when it is not
// a well-formed object, otherwise bad_column naming the field.
func rowRejection(err error) (reason, detail string) {
	var de *schema.Error
	if !errors.As(err, &de) {
		return ReasonMalformedRow, "row: " + err.Error()
	}
	switch de.Reason {
	case schema.ReasonMalformedJSON, schema.ReasonInvalidUTF8, schema.ReasonEmptyLine, schema.ReasonNotObject, schema.ReasonRowNotObject:
		return ReasonMalformedRow, "row: " + de.Error()
	}
	field := strings.TrimPrefix(de.Field, "row.")
	if field == "" {
		field = "row"
	}
	return ReasonBadColumn, field + ": " + de.Detail + " (" + string(de.Reason) + ")"
}

// group returns the batch's group for table t, creating it.
func (st *batchState) group(s *Sink, t *schema.Table, sizeHint int) (*group, error) {
	for _, g := range st.groups {
		if g.info.t == t {
			return g, nil
		}
	}
	info, err := s.tableInfo(t)
	if err != nil {
		return nil, err
	}
	g := &group{info: info}
	if len(st.groups) == 0 { // most batches hold one table: size for it
		g.vals = make([]any, 0, sizeHint*len(info.cols))
	}
	st.groups = append(st.groups, g)
	return g, nil
}

// reject dead-letters record i and remembers it. A failure to write the
// dead letter fails the batch: the row could otherwise be lost.
func (s *Sink) reject(ctx context.Context, st *batchState, i int, reason, detail string) error {
	rec := &st.b.Records[i]
	if err := st.b.Reject(ctx, i, reason, detail); err != nil {
		return &rejectError{fmt.Errorf("record at %v: %w", rec.Pos, err)}
	}
	st.rejected[i] = true
	// The dead letter is the record of it; a row PostgreSQL refused is
	// worth a warning (a constraint the config does not know about), one
	// that did not convert normally never gets past the loader's Decode.
	level := slog.LevelDebug
	if reason == ReasonDBRejected {
		level = slog.LevelWarn
	}
	s.log.Log(ctx, level, "dbsink: row rejected", "stream", st.b.Stream, "pos", rec.Pos.String(), "reason", reason, "detail", detail)
	return nil
}
