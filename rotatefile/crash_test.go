package rotatefile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHelperWriterProcess is the child side of TestKillDashNine: it appends
// with SyncAlways from several goroutines and prints "ack <line>" on stdout
// after each append returned nil, until it is killed.
func TestHelperWriterProcess(t *testing.T) {
	dir := os.Getenv("ROTATEFILE_CHILD_DIR")
	if dir == "" {
		t.Skip("child process of TestKillDashNine")
	}
	round := os.Getenv("ROTATEFILE_CHILD_ROUND")
	w, err := Open(Options{Dir: dir, Stream: "api", Sync: SyncAlways, MaxBytes: 64 << 10})
	if err != nil {
		fmt.Println("open error:", err)
		os.Exit(3)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			pad := strings.Repeat("p", 500)
			for i := 0; ; i++ {
				line := fmt.Sprintf("%s %d %d %s", round, g, i, pad[:(i*37)%len(pad)])
				if err := w.Append([]byte(line)); err != nil {
					fmt.Println("append error:", err)
					os.Exit(4)
				}
				mu.Lock()
				fmt.Fprintf(out, "ack %s %d %d\n", round, g, i)
				out.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestKillDashNine kills a writing child process at random points, several
// times in a row on the same stream. Every line whose append returned nil
// must be in a file, once; each restart seals the leftover active file and
// continues the sequence.
func TestKillDashNine(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	acked := map[string]bool{}
	var maxSeqBefore uint64
	leftovers := 0 // rounds whose kill left an active file to recover
	for round := range 4 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriterProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), "ROTATEFILE_CHILD_DIR="+dir, "ROTATEFILE_CHILD_ROUND="+strconv.Itoa(round))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAt := 500 + rng.IntN(3000)
		sc := bufio.NewScanner(stdout)
		n := 0
		for sc.Scan() {
			line := sc.Text()
			key, ok := strings.CutPrefix(line, "ack ")
			if !ok {
				t.Fatalf("child: %s", line)
			}
			acked[key] = true
			if n++; n == 1 {
				// The OS lock holds across processes too.
				if _, err := Open(Options{Dir: dir, Stream: "api"}); !errors.Is(err, ErrLocked) {
					t.Fatalf("Open while a child process writes: got %v, want ErrLocked", err)
				}
			}
			if n == killAt {
				if err := cmd.Process.Kill(); err != nil { // SIGKILL
					t.Fatal(err)
				}
				break
			}
		}
		// Acks printed before the kill landed still count.
		for sc.Scan() {
			if key, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
				acked[key] = true
			}
		}
		cmd.Wait()
		if n < killAt {
			t.Fatalf("round %d: child stopped after %d acks before the kill", round, n)
		}

		files := readStream(t, filepath.Join(dir, "api"))
		if len(files) == 0 {
			t.Fatalf("round %d: the killed writer left no file", round)
		}
		// A kill between a rotation's rename and the next line's file
		// leaves every file sealed, a legitimate state; the recovery this
		// test is about needs at least one round that left an active file.
		if files[len(files)-1].info.Active {
			leftovers++
		}
		if round > 0 {
			// The files of this round come after every earlier file.
			for _, f := range files {
				if strings.Contains(string(f.data), fmt.Sprintf("\n%d ", round)) || strings.HasPrefix(string(f.data), fmt.Sprintf("%d ", round)) {
					if f.info.Seq <= maxSeqBefore {
						t.Fatalf("round %d wrote into %s, seq not after %d", round, f.name, maxSeqBefore)
					}
				}
			}
		}
		maxSeqBefore = files[len(files)-1].info.Seq
	}

	if leftovers == 0 {
		t.Fatal("no kill left an active file: recovery of a leftover was never exercised")
	}

	// A final Open recovers the last leftover.
	w := mustOpen(t, Options{Dir: dir, Stream: "api"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, f := range readStream(t, filepath.Join(dir, "api")) {
		if f.info.Active {
			t.Errorf("%s still active after recovery", f.name)
		}
		data := f.data
		if i := bytes.LastIndexByte(data, '\n'); i != len(data)-1 {
			data = data[:i+1] // a torn tail is allowed: the loader dead-letters it
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			fields := strings.SplitN(l, " ", 4)
			if len(fields) < 3 {
				continue
			}
			seen[strings.Join(fields[:3], " ")]++
		}
	}
	for key := range acked {
		if seen[key] == 0 {
			t.Errorf("acknowledged line %q lost", key)
		}
	}
	for key, n := range seen {
		if n > 1 {
			t.Errorf("line %q stored %d times", key, n)
		}
	}
	t.Logf("%d acknowledged lines over 4 kills, %d stored", len(acked), len(seen))
}
