package loader

import (
	"bufio"
	"encoding/json"
	"fmt"
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
