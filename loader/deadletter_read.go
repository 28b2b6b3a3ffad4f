package loader

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// ReadDeadLetters returns the dead letters of a stream under stateDir, in
// file (day) and line order: for tools that inspect or replay them.
func ReadDeadLetters(stateDir, stream string) ([]DeadLetter, error) {
	files, err := filepath.Glob(filepath.Join(StateLayout{stateDir}.StreamDeadLetters(stream), "*.ndjson"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []DeadLetter
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(fh)
		// An entry holds its whole line, up to MaxLineBytes and more in base64.
		sc.Buffer(nil, 64<<20)
		for n := 1; sc.Scan(); n++ {
			if len(sc.Bytes()) == 0 {
				continue
			}
			var d DeadLetter
			if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
				fh.Close()
				return nil, fmt.Errorf("dead letter %s:%d: %w", f, n, err)
			}
			out = append(out, d)
		}
		err = sc.Err()
		fh.Close()
		if err != nil {
			return nil, fmt.Errorf("dead letters %s: %w", f, err)
		}
	}
	return out, nil
}

// CountDeadLetters counts the dead letters under stateDir: one stream's,
// or every stream's when stream is "". It is the one count `ingest status`,
// doctor, backfill's summary and the demo report, so none can disagree
// with another about what is waiting. It counts newlines without parsing
// entries (a dead letter is one line), so a file of millions of entries
// costs a read, not a decode.
//
// A file it cannot read is not left out silently: the count is of the
// files it could read, and err names each file it could not.
func CountDeadLetters(stateDir, stream string) (int64, error) {
	l := StateLayout{stateDir}
	dir := l.StreamDeadLetters(stream)
	if stream == "" {
		dir = filepath.Join(l.DeadLetters(), "*")
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.ndjson"))
	if err != nil {
		return 0, fmt.Errorf("dead letters under %s: %w", l.DeadLetters(), err)
	}
	var n int64
	var errs []error
	buf := make([]byte, 64<<10)
	for _, f := range files {
		k, err := countLines(f, buf)
		n += k
		if err != nil {
			errs = append(errs, fmt.Errorf("count dead letters in %s: %w (fix its permissions or move it away)", f, err))
		}
	}
	return n, errors.Join(errs...)
}

// countLines counts the newlines of file name, using buf.
func countLines(name string, buf []byte) (int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
