package schema

import "errors"

// AppendValues appends to dst the raw JSON value of every column of t, in
// [Table.ColumnList] order, taken from row (a [Record.Row] that Decode
// accepted). A column the row lacks, or whose value is null, gets nil. It is
// how the Postgres sink gets column values without decoding the row into a
// map; the values alias row.
//
// With unknown_fields: jsonb:<column>, that column's value is a new JSON
// object of the row's fields that are not columns, raw bytes copied in
// order (nil when there are none).
func (t *Table) AppendValues(dst [][]byte, row []byte) ([][]byte, error) {
	c := t.c
	if c == nil {
		var err error
		if c, err = t.compile(); err != nil {
			return dst, err
		}
	}
	base := len(dst)
	for range c.cols {
		dst = append(dst, nil)
	}
	vals := dst[base:]
	var extra []byte
	sc := scanner{b: row}
	if sc.peek() != '{' {
		return dst, errors.New("row is not a JSON object")
	}
	sc.i++
	if sc.peek() == '}' {
		return dst, nil
	}
	var nbuf [64]byte
	for {
		if sc.peek() != '"' {
			return dst, sc.errf("expected string key")
		}
		ks := sc.i
		_, _, esc, err := sc.str()
		if err != nil {
			return dst, err
		}
		ke := sc.i
		name := row[ks+1 : ke-1]
		if esc {
			name = unescape(nbuf[:0], name)
		}
		if sc.peek() != ':' {
			return dst, sc.errf("expected ':'")
		}
		sc.i++
		sc.ws()
		vs := sc.i
		if err := sc.value(1); err != nil {
			return dst, err
		}
		v := row[vs:sc.i]
		if col := c.lookup(name); col >= 0 {
			if string(v) != "null" {
				vals[col] = v
			}
		} else if c.extra >= 0 {
			if extra == nil {
				extra = append(extra, '{')
			} else {
				extra = append(extra, ',')
			}
			extra = append(extra, row[ks:ke]...)
			extra = append(extra, ':')
			extra = append(extra, v...)
		}
		switch sc.peek() {
		case ',':
			sc.i++
			continue
		case '}':
		default:
			return dst, sc.errf("expected ',' or '}'")
		}
		break
	}
	if extra != nil {
		vals[c.extra] = append(extra, '}')
	}
	return dst, nil
}
