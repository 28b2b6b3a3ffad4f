package gen

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

type genLine struct {
	Table string `json:"table"`
	Row   struct {
		ProjectID int64  `json:"project_id"`
		Timestamp int64  `json:"timestamp"`
		Body      string `json:"body"`
		Version   int    `json:"version"`
		Billable  int    `json:"billable"`
		UUID      string `json:"uuid"`
		Seq       int64  `json:"seq"`
	} `json:"row"`
	Counter    int64 `json:"counter"`
	AppendedNS int64 `json:"appended_ns"`
}

func TestRunWritesRealisticLines(t *testing.T) {
	dir := t.TempDir()
	st, err := Run(context.Background(), Options{Dir: dir, Count: 5000, Accounts: 50, Size: 1000, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if st.Lines != 5000 {
		t.Fatalf("wrote %d lines", st.Lines)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "api", "*.ndjson"))
	if len(files) == 0 {
		t.Fatal("no sealed file")
	}
	ids := map[string]bool{}
	next := map[int64]int64{}
	perAccount := map[int64]int{}
	var total int
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var l genLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("line is not JSON: %v", err)
			}
			total += len(sc.Bytes())
			if l.Table != "raw_item" || l.Row.ProjectID < 1 || l.Row.ProjectID > 50 || len(l.Row.UUID) != 36 || l.Row.UUID[14] != '4' {
				t.Fatalf("bad line %s", sc.Text())
			}
			if ids[l.Row.UUID] {
				t.Fatalf("duplicate uuid %s", l.Row.UUID)
			}
			ids[l.Row.UUID] = true
			if l.Counter != next[l.Row.ProjectID] || l.Row.Seq != l.Counter {
				t.Fatalf("account %d: counter %d, want %d", l.Row.ProjectID, l.Counter, next[l.Row.ProjectID])
			}
			next[l.Row.ProjectID]++
			perAccount[l.Row.ProjectID]++
		}
		fh.Close()
	}
	if mean := total / 5000; mean < 800 || mean > 1200 {
		t.Errorf("mean line size %d, want about 1000", mean)
	}
	// Skewed: the busiest account has far more than an even share.
	if perAccount[1] < 5000/50*3 {
		t.Errorf("account 1 has %d lines: not skewed", perAccount[1])
	}
}

func TestRunHoldsTheRate(t *testing.T) {
	start := time.Now()
	st, err := Run(context.Background(), Options{Dir: t.TempDir(), Count: 200, Rate: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 190*time.Millisecond {
		t.Fatalf("200 lines at 1000/s took %v", el)
	}
	if st.Lines != 200 {
		t.Fatal(st.Lines)
	}
}
