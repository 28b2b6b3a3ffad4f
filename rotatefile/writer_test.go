package rotatefile

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestConcurrentAppendsExactlyOnceInOrder(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncInterval, SyncNone, SyncAlways} {
		t.Run(policy.String(), func(t *testing.T) {
			t.Parallel()
			const goroutines = 16
			perG := 50000
			if policy == SyncAlways || testing.Short() {
				perG = 5000 // every append waits for an fsync
			}
			const maxBytes = 256 << 10
			dir := t.TempDir()
			w := mustOpen(t, Options{Dir: dir, Stream: "api", MaxBytes: maxBytes, Sync: policy})

			var wg sync.WaitGroup
			errs := make(chan error, goroutines)
			for g := range goroutines {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(g), 1))
					pad := strings.Repeat("x", 300)
					for i := range perG {
						// Mixed sizes, 20 to ~320 bytes, with a
						// checkable identity at the front.
						line := fmt.Sprintf("%d %d %s", g, i, pad[:rng.IntN(len(pad))])
						if err := w.Append([]byte(line)); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			// While appending, only the newest file may be active.
			stop := make(chan struct{})
			checked := make(chan error, 1)
			go func() {
				checked <- func() error {
					for {
						select {
						case <-stop:
							return nil
						default:
						}
						entries, _ := os.ReadDir(filepath.Join(dir, "api"))
						var names []string
						for _, e := range entries {
							if _, ok := ParseName(e.Name()); ok {
								names = append(names, e.Name())
							}
						}
						for i, n := range names {
							if !strings.HasSuffix(n, ActiveSuffix) || i == len(names)-1 {
								continue
							}
							// A listing is not atomic: the rename may have
							// happened between two getdents calls. Only an
							// older active file that still exists is wrong.
							if _, err := os.Stat(filepath.Join(dir, "api", n)); err == nil {
								return fmt.Errorf("active file %s is not the newest (newest %s)", n, names[len(names)-1])
							}
						}
						time.Sleep(time.Millisecond)
					}
				}()
			}()
			wg.Wait()
			close(stop)
			if err := <-checked; err != nil {
				t.Error(err)
			}
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}

			files := readStream(t, filepath.Join(dir, "api"))
			if len(files) < 10 {
				t.Fatalf("want many size rotations, got %d files", len(files))
			}
			for i, f := range files {
				if f.info.Active {
					t.Errorf("file %s still active after Close", f.name)
				}
				if len(f.data) > maxBytes {
					t.Errorf("file %s has %d bytes, over MaxBytes %d", f.name, len(f.data), maxBytes)
				}
				if i > 0 && f.info.Seq != files[i-1].info.Seq+1 {
					t.Errorf("sequence gap: %s after %s", f.name, files[i-1].name)
				}
				if i < len(files)-1 {
					// Rotation happened because the next line did not fit.
					next := files[i+1].data
					firstLen := strings.IndexByte(string(next), '\n') + 1
					if len(f.data)+firstLen <= maxBytes {
						t.Errorf("file %s rotated early: %d bytes + next line %d fit in %d", f.name, len(f.data), firstLen, maxBytes)
					}
				}
			}
			next := make([]int, goroutines)
			for _, line := range streamLines(t, filepath.Join(dir, "api")) {
				fields := strings.SplitN(line, " ", 3)
				if len(fields) != 3 {
					t.Fatalf("mangled line %q", line)
				}
				g, _ := strconv.Atoi(fields[0])
				i, _ := strconv.Atoi(fields[1])
				if i != next[g] {
					t.Fatalf("goroutine %d: got line %d, want %d (lost, duplicated or reordered)", g, i, next[g])
				}
				next[g]++
			}
			for g, n := range next {
				if n != perG {
					t.Errorf("goroutine %d: %d lines, want %d", g, n, perG)
				}
			}
			st := w.Stats()
			if st.Lines != uint64(goroutines*perG) || st.Rotations != uint64(len(files)) {
				t.Errorf("stats %+v: want %d lines, %d rotations", st, goroutines*perG, len(files))
			}
			if st.Writes >= st.Lines/4 {
				t.Errorf("%d writes for %d lines: appends are not batched", st.Writes, st.Lines)
			}
		})
	}
}

func TestRotatesByAgeAndNeverSealsEmptyFiles(t *testing.T) {
	dir := t.TempDir()
	const maxAge = 50 * time.Millisecond
	// The clock can be moved on, so "idle for several ages" is checked at a
	// time the test sets rather than after a sleep.
	var skew atomic.Int64
	w := mustOpen(t, Options{Dir: dir, Stream: "api", MaxAge: maxAge,
		now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }})
	stream := filepath.Join(dir, "api")
	// appendSealed appends line and waits for its file, the stream's nth,
	// to be sealed by age.
	appendSealed := func(line string, n int) []streamFile {
		t.Helper()
		if err := w.Append([]byte(line)); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, func() bool {
			fs := readStream(t, stream)
			return len(fs) == n && !fs[n-1].info.Active
		}, "file %d sealed by age", n)
		return readStream(t, stream)
	}

	first := appendSealed(`{"n":1}`, 1)[0]
	if got := string(first.data); got != "{\"n\":1}\n" {
		t.Fatalf("sealed file holds %q", got)
	}

	// Idle for several ages: the writer holds no bytes, so it has no age
	// deadline and plans no wake-up (the flusher's timer stays at its idle
	// hour), and nothing new may appear.
	skew.Store(int64(4 * maxAge))
	if d := w.nextDeadline(); d != time.Hour {
		t.Fatalf("idle writer plans to wake in %v, want the idle hour", d)
	}
	if fs := readStream(t, stream); len(fs) != 1 {
		t.Fatalf("idle writer created files: %v", fs)
	}

	if fs := appendSealed(`{"n":2}`, 2); fs[1].info.Seq != first.info.Seq+1 {
		t.Fatalf("second file %s does not follow %s", fs[1].name, first.name)
	}
	// The counter moves after the directory sync that follows the rename.
	eventually(t, 5*time.Second, func() bool { return w.Stats().Rotations == 2 }, "rotations = 2")
	if got := w.Stats().Rotations; got != 2 {
		t.Fatalf("rotations = %d, want 2", got)
	}
}

func TestLineVisibleWithinFlushInterval(t *testing.T) {
	dir := t.TempDir()
	w := mustOpen(t, Options{Dir: dir, Stream: "api", FlushInterval: 2 * time.Millisecond})
	if err := w.Append([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, func() bool {
		fs := readStream(t, filepath.Join(dir, "api"))
		return len(fs) == 1 && fs[0].info.Active && string(fs[0].data) == "hello\n"
	}, "line in the active file")
}

func TestAppendRejectsEmbeddedNewlineAndClosed(t *testing.T) {
	w := mustOpen(t, Options{Dir: t.TempDir(), Stream: "api"})
	if err := w.Append([]byte("a\nb")); !errors.Is(err, ErrNewline) {
		t.Fatalf("embedded newline: got %v", err)
	}
	if err := w.AppendJSON(map[string]string{"a": "line\nbreak"}); err != nil {
		t.Fatalf("JSON escapes newlines, got %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Append([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: got %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestSecondWriterOnStreamFails(t *testing.T) {
	dir := t.TempDir()
	w := mustOpen(t, Options{Dir: dir, Stream: "api"})
	_, err := Open(Options{Dir: dir, Stream: "api"})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: got %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), filepath.Join(dir, "api", ".lock")) {
		t.Errorf("error %q does not name the lock file", err)
	}
	// Another stream in the same dir is independent.
	mustOpen(t, Options{Dir: dir, Stream: "other"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w2, err := Open(Options{Dir: dir, Stream: "api"})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	w2.Close()
}

func TestOpenValidatesOptions(t *testing.T) {
	for _, o := range []Options{
		{Stream: "api"},
		{Dir: "x", Stream: ""},
		{Dir: "x", Stream: "a/b"},
		{Dir: "x", Stream: ".."},
		{Dir: "x", Stream: ".hidden"},
		{Dir: "x", Stream: "api", Ext: "ndjson"},
		{Dir: "x", Stream: "api", Sync: SyncPolicy(9)},
	} {
		if _, err := Open(o); err == nil {
			t.Errorf("Open(%+v) succeeded", o)
		}
	}
}

func TestRecoverSealsLeftoverAndContinuesSequence(t *testing.T) {
	dir := t.TempDir()
	stream := filepath.Join(dir, "api")
	if err := os.MkdirAll(stream, 0o750); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	sealed := FileName(6, t0, ".ndjson")
	torn := FileName(7, t0.Add(time.Minute), ".ndjson") + ActiveSuffix
	empty := FileName(8, t0.Add(2*time.Minute), ".ndjson") + ActiveSuffix
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(stream, name), []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	write(sealed, "a\n")
	write(torn, "b\n{\"torn")
	write(empty, "")
	write("unrelated.txt", "leave me")

	w := mustOpen(t, Options{Dir: dir, Stream: "api"})
	if err := w.Append([]byte("c")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fs := readStream(t, stream)
	if len(fs) != 3 {
		t.Fatalf("files %v, want sealed 6, recovered 7, new 9", fs)
	}
	if fs[1].name != strings.TrimSuffix(torn, ActiveSuffix) || string(fs[1].data) != "b\n{\"torn" {
		t.Errorf("leftover not sealed intact: %s %q", fs[1].name, fs[1].data)
	}
	if fs[2].info.Seq != 9 || string(fs[2].data) != "c\n" {
		t.Errorf("new file %s %q, want seq 9 holding c", fs[2].name, fs[2].data)
	}
	if _, err := os.Stat(filepath.Join(stream, "unrelated.txt")); err != nil {
		t.Errorf("unrelated file touched: %v", err)
	}

	// A reader deletes every file: numbering must still go on.
	for _, f := range fs {
		os.Remove(filepath.Join(stream, f.name))
	}
	w = mustOpen(t, Options{Dir: dir, Stream: "api"})
	if err := w.Append([]byte("d")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	fs = readStream(t, stream)
	if len(fs) != 1 || fs[0].info.Seq != 10 {
		t.Fatalf("after deleting all files got %v, want one file with seq 10", fs)
	}
}

func TestFileModeAndNames(t *testing.T) {
	dir := t.TempDir()
	w := mustOpen(t, Options{Dir: dir, Stream: "api"})
	if err := w.Append([]byte("x")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	fs := readStream(t, filepath.Join(dir, "api"))
	fi, err := os.Stat(filepath.Join(dir, "api", fs[0].name))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
	if time.Since(fs[0].info.Created) > time.Minute || !strings.HasSuffix(fs[0].name, ".ndjson") {
		t.Errorf("name %s: creation time %v", fs[0].name, fs[0].info.Created)
	}
}

func TestParseName(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	name := FileName(42, t0, ".ndjson")
	if name != "0000000000000042-20260102T030405.006Z.ndjson" {
		t.Fatalf("FileName = %s", name)
	}
	n, ok := ParseName(name + ActiveSuffix)
	if !ok || n.Seq != 42 || !n.Created.Equal(t0) || !n.Active || n.Sealed != name {
		t.Fatalf("ParseName = %+v, %v", n, ok)
	}
	for _, bad := range []string{"", ".lock", "42-x.ndjson", "000000000000004x-20260102T030405.006Z.ndjson", "0000000000000042-20260102T030405.006Zndjson"} {
		if _, ok := ParseName(bad); ok {
			t.Errorf("ParseName(%q) accepted", bad)
		}
	}
	if FileName(9, t0, ".x") >= FileName(10, t0.Add(-time.Hour), ".x") {
		t.Error("lexical order does not follow sequence")
	}
}
