package loader

import "testing"

// No Kafka, no PostgreSQL. pending is the lag `ingest status` shows and
// ingest_lag_bytes reports: the bytes after the checkpoint, the files they
// are in, and the first of them (whose age is OLDEST PENDING).
func TestPending(t *testing.T) {
	files := []spoolFile{{key: "a"}, {key: "b"}, {key: "c"}}
	sizes := []int64{100, 50, 30}
	for _, c := range []struct {
		name         string
		pos          Position
		ok           bool
		bytes        int64
		nfiles, from int
	}{
		{"no checkpoint: everything", Position{}, false, 180, 3, 0},
		{"inside the second file", Position{File: "b", Offset: 20}, true, 60, 2, 1},
		{"at the end of the first file", Position{File: "a", Offset: 100}, true, 80, 2, 1},
		{"at the end of the stream", Position{File: "c", Offset: 30}, true, 0, 0, -1},
		{"a retired file before the first", Position{File: "0", Offset: 7}, true, 180, 3, 0},
		{"past a truncated file's end", Position{File: "c", Offset: 99}, true, 0, 0, -1},
	} {
		b, n, first := pending(files, sizes, c.pos, c.ok)
		if b != c.bytes || n != c.nfiles || first != c.from {
			t.Errorf("%s: pending = %d bytes, %d files, first %d; want %d, %d, %d", c.name, b, n, first, c.bytes, c.nfiles, c.from)
		}
	}
}
