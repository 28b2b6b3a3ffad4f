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
	"syscall"
	"testing"
	"time"
)

// faultFS injects write and sync failures into the real file system.
type faultFS struct {
	osFS
	mu sync.Mutex
	// shortWrites makes the next N writes store half their bytes and fail
	// with ENOSPC, as a full disk does.
	shortWrites int
	// failSyncs makes the next N syncs fail with EIO.
	failSyncs int
	// failCreate, when set, fails the creation of new files.
	failCreate error
}

func (fs *faultFS) OpenFile(name string, flag int, perm os.FileMode) (file, error) {
	fs.mu.Lock()
	failCreate := fs.failCreate
	fs.mu.Unlock()
	if failCreate != nil && flag&os.O_CREATE != 0 {
		return nil, failCreate
	}
	f, err := fs.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{file: f, fs: fs}, nil
}

func (fs *faultFS) set(shortWrites, failSyncs int) {
	fs.mu.Lock()
	fs.shortWrites, fs.failSyncs = shortWrites, failSyncs
	fs.mu.Unlock()
}

type faultFile struct {
	file
	fs *faultFS
}

// take uses up one of the faults *n counts, reporting whether there was
// one: writes and syncs draw from their own counters under the same lock.
func (fs *faultFS) take(n *int) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if *n <= 0 {
		return false
	}
	*n--
	return true
}

func (f *faultFile) Write(p []byte) (int, error) {
	if f.fs.take(&f.fs.shortWrites) {
		n, _ := f.file.Write(p[:len(p)/2])
		return n, syscall.ENOSPC
	}
	return f.file.Write(p)
}

func (f *faultFile) Sync() error {
	if f.fs.take(&f.fs.failSyncs) {
		return syscall.EIO
	}
	return f.file.Sync()
}

// openOnFaults opens stream "api" in a fresh directory on a faultFS with
// o's other options, and appends first while nothing fails yet; the test
// then sets the faults for what follows. dir is the spool directory.
func openOnFaults(t *testing.T, o Options, first string) (w *Writer, fs *faultFS, dir string) {
	t.Helper()
	fs = &faultFS{}
	o.Dir, o.Stream, o.fs = t.TempDir(), "api", fs
	w = mustOpen(t, o)
	if err := w.Append([]byte(first)); err != nil {
		t.Fatal(err)
	}
	return w, fs, o.Dir
}

func TestShortWriteIsCutBackAndReported(t *testing.T) {
	w, fs, dir := openOnFaults(t, Options{Sync: SyncAlways}, "first")
	fs.set(1, 0)
	err := w.Append([]byte("torn-by-enospc"))
	if !IsDiskFull(err) {
		t.Fatalf("append on full disk: got %v, want a disk-full error", err)
	}
	var ferr *Error
	if !errors.As(err, &ferr) || ferr.Op != "write" || !strings.HasSuffix(ferr.Path, ActiveSuffix) {
		t.Fatalf("error %v does not name the write and the file", err)
	}
	if err := w.Append([]byte("after")); err != nil {
		t.Fatalf("append after space returned: %v", err)
	}
	w.Close()
	if got := strings.Join(streamLines(t, filepath.Join(dir, "api")), ","); got != "first,after" {
		t.Fatalf("lines %q: the failed line must be cut back whole", got)
	}
}

func TestFailedSyncAbandonsFile(t *testing.T) {
	w, fs, dir := openOnFaults(t, Options{Sync: SyncAlways}, "a")
	fs.set(0, 1)
	if err := w.Append([]byte("b")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("append with failing fsync: got %v, want EIO", err)
	}
	// After a failed fsync the file is not trusted: the next line goes to a
	// new file and the old one is sealed.
	if err := w.Append([]byte("c")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	files := readStream(t, filepath.Join(dir, "api"))
	if len(files) != 2 || string(files[1].data) != "c\n" {
		t.Fatalf("files %v: want the abandoned file and a new one holding c", files)
	}
	if w.Stats().Errors == 0 {
		t.Error("sync failure not counted")
	}
}

func TestIntervalWriterKeepsAcknowledgedLinesThroughFailures(t *testing.T) {
	fs := &faultFS{}
	dir := t.TempDir()
	var hookErrs []error
	var mu sync.Mutex
	w := mustOpen(t, Options{Dir: dir, Stream: "api", fs: fs, Hooks: Hooks{OnError: func(err error) {
		mu.Lock()
		hookErrs = append(hookErrs, err)
		mu.Unlock()
	}}})
	fs.set(3, 0)
	// Appends are acknowledged until the first write fails; then they fail
	// fast while the stuck batch is retried, and succeed once it is written.
	var acked []string
	var rejected int
	eventually(t, 10*time.Second, func() bool {
		line := fmt.Sprintf("line-%d", len(acked))
		err := w.Append([]byte(line))
		if err != nil {
			rejected++
			if !IsDiskFull(err) {
				t.Fatalf("stuck writer returned %v", err)
			}
			return false
		}
		acked = append(acked, line)
		return rejected > 0
	}, "writer rejects, then recovers")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(streamLines(t, filepath.Join(dir, "api")), ","), strings.Join(acked, ","); got != want {
		t.Fatalf("stored %q, want every acknowledged line once in order %q", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(hookErrs) < 3 {
		t.Errorf("OnError saw %d errors, want 3", len(hookErrs))
	}
}

// mountTmpfs mounts a small tmpfs for real disk-full and read-only tests.
// Mounting needs root; elsewhere the fault-injection tests above cover the
// same paths.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

func TestDiskFullAndRecovery(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncAlways, SyncInterval} {
		t.Run(policy.String(), func(t *testing.T) {
			dir := mountTmpfs(t, "512k")
			stream := filepath.Join(dir, "api")
			w := mustOpen(t, Options{Dir: dir, Stream: "api", Sync: policy, MaxBytes: 64 << 10})
			pad := strings.Repeat("d", 1000)
			acked := map[string]bool{}
			var fullErr error
			i := 0
			for ; i < 10000; i++ {
				line := fmt.Sprintf("%05d %s", i, pad)
				if err := w.Append([]byte(line)); err != nil {
					fullErr = err
					break
				}
				acked[line[:5]] = true
			}
			if !IsDiskFull(fullErr) {
				t.Fatalf("filling 512k: got %v after %d lines, want a disk-full error", fullErr, i)
			}
			t.Logf("disk full after %d lines: %v", i, fullErr)

			// A reader consumes sealed files, so space returns; with
			// SyncInterval more lines were acknowledged than fit, so the
			// writer needs several rounds of that to catch up.
			removed := map[string]bool{}
			consume := func() {
				for _, f := range readStream(t, stream) {
					if f.info.Active {
						continue
					}
					for _, l := range strings.Split(strings.TrimSuffix(string(f.data), "\n"), "\n") {
						removed[l[:5]] = true
					}
					if err := os.Remove(filepath.Join(stream, f.name)); err != nil {
						t.Fatal(err)
					}
				}
			}
			line := fmt.Sprintf("%05d %s", i, pad)
			eventually(t, 10*time.Second, func() bool {
				consume()
				return w.Append([]byte(line)) == nil
			}, "appends succeed once space returned")
			acked[line[:5]] = true
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			stored := map[string]int{}
			for _, l := range streamLines(t, stream) {
				stored[l[:5]]++
			}
			for k := range removed {
				stored[k]++
			}
			for k := range acked {
				if stored[k] != 1 {
					t.Errorf("acknowledged line %s stored %d times", k, stored[k])
				}
			}
			if policy == SyncAlways {
				for k := range stored {
					if !acked[k] {
						t.Errorf("line %s stored although its append failed", k)
					}
				}
			}
		})
	}
}

func TestReadOnlySpool(t *testing.T) {
	dir := mountTmpfs(t, "1m")
	if out, err := exec.Command("mount", "-o", "remount,ro", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount ro: %v: %s", err, out)
	}
	_, err := Open(Options{Dir: dir, Stream: "api"})
	if !IsPermission(err) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Open on read-only spool: got %v, want a permission error naming the path", err)
	}
}

func TestUnwritableDirFailsAppendThenRecovers(t *testing.T) {
	w, fs, dir := openOnFaults(t, Options{Sync: SyncAlways, MaxBytes: 10}, "before")
	fs.mu.Lock()
	fs.failCreate = syscall.EACCES
	fs.mu.Unlock()
	// The next line needs a new file (MaxBytes 10), which cannot be created.
	err := w.Append([]byte("during"))
	if !IsPermission(err) {
		t.Fatalf("append into unwritable dir: got %v, want a permission error", err)
	}
	fs.mu.Lock()
	fs.failCreate = nil
	fs.mu.Unlock()
	if err := w.Append([]byte("after")); err != nil {
		t.Fatalf("append after permission returned: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(streamLines(t, filepath.Join(dir, "api")), ","); got != "before,after" {
		t.Fatalf("lines %q", got)
	}
}

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
