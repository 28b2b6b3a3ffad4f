package rotatefile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"
)

// benchLine is a 2 KB offline line (newline included), the size the spec's
// reference API writes.
var benchLine = func() []byte {
	head := []byte(`{"table":"raw_item","row":{"project_id":1,"timestamp":1574948156,"version":2,"billable":1,"uuid":"bad3a155-585f-47cb-bc3e-51767d52c2a2","body":"`)
	tail := []byte(`"},"counter":356}` + "\n")
	body := bytes.Repeat([]byte("eJyN"), (2048-len(head)-len(tail))/4)
	line := append(append(head, body...), tail...)
	for len(line) < 2048 {
		line = append(line[:len(line)-1], ' ', '\n')
	}
	return line
}()

// parallel runs fn on about n goroutines (RunParallel multiplies by GOMAXPROCS).
func parallel(b *testing.B, n int, fn func()) {
	b.SetParallelism(max(1, n/runtime.GOMAXPROCS(0)))
	b.SetBytes(int64(len(benchLine)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			fn()
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

func benchWriter(b *testing.B, goroutines int, policy SyncPolicy) {
	w, err := Open(Options{Dir: b.TempDir(), Stream: "api", Sync: policy})
	if err != nil {
		b.Fatal(err)
	}
	parallel(b, goroutines, func() {
		if err := w.Append(benchLine); err != nil {
			b.Error(err)
		}
	})
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	if st := w.Stats(); st.Syncs > 0 {
		b.ReportMetric(float64(st.Lines)/float64(st.Syncs), "appends/fsync")
		b.ReportMetric(float64(st.SyncTime.Microseconds())/float64(st.Syncs), "µs/fsync")
	}
}

func benchLumberjack(b *testing.B, goroutines int) {
	l := &lumberjack.Logger{Filename: filepath.Join(b.TempDir(), "api.log"), MaxSize: 64}
	parallel(b, goroutines, func() {
		if _, err := l.Write(benchLine); err != nil {
			b.Error(err)
		}
	})
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
}

// The two comparisons: 16 writers with interval sync against
// lumberjack (which never syncs), and 64 writers with every append synced.
func BenchmarkAppend16Interval(b *testing.B)    { benchWriter(b, 16, SyncInterval) }
func BenchmarkAppend16None(b *testing.B)        { benchWriter(b, 16, SyncNone) }
func BenchmarkLumberjack16(b *testing.B)        { benchLumberjack(b, 16) }
func BenchmarkAppend64Always(b *testing.B)      { benchWriter(b, 64, SyncAlways) }
func BenchmarkLumberjack64(b *testing.B)        { benchLumberjack(b, 64) }
func BenchmarkAppend1Interval(b *testing.B)     { benchWriter(b, 1, SyncInterval) }
func BenchmarkAppend16AlwaysSmall(b *testing.B) { benchWriter(b, 16, SyncAlways) }

// The bound benchmarks are not the writer: they do the ideal thing with bare
// system calls — one goroutine, 1 MiB of whole 2 KB lines per write call,
// 64 MiB files — so the writer's figures can be read against what this
// machine allows, in the same run.
//
// BoundPageCache never syncs: the limit of any writer of one file, whose
// buffered writes the kernel serialises on the file's inode lock. BoundSealed
// also seals every file as the spec requires (fdatasync, rename, directory
// sync) before the next one exists, while a second goroutine fdatasyncs the
// active file back to back so the seal finds little left: the limit of any
// writer that keeps one active file and syncs it, whatever its policy.
func BenchmarkBoundPageCache(b *testing.B) { benchBound(b, false) }
func BenchmarkBoundSealed(b *testing.B)    { benchBound(b, true) }

func benchBound(b *testing.B, seal bool) {
	dir := b.TempDir()
	const perWrite = 512 // lines per write call: 1 MiB
	chunk := bytes.Repeat(benchLine, perWrite)
	var (
		cur  atomic.Pointer[os.File]
		seq  int
		size int
	)
	create := func() {
		seq++
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("%016d.ndjson.open", seq)), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o640)
		if err != nil {
			b.Fatal(err)
		}
		if seal {
			if err := (osFS{}).SyncDir(dir); err != nil {
				b.Fatal(err)
			}
		}
		cur.Store(f)
	}
	sealFile := func(f *os.File) {
		if seal {
			if err := syscall.Fdatasync(int(f.Fd())); err != nil {
				b.Fatal(err)
			}
		}
		f.Close()
		if err := os.Rename(f.Name(), strings.TrimSuffix(f.Name(), ActiveSuffix)); err != nil {
			b.Fatal(err)
		}
		if seal {
			if err := (osFS{}).SyncDir(dir); err != nil {
				b.Fatal(err)
			}
		}
	}
	create()
	stop := make(chan struct{})
	var syncer sync.WaitGroup
	if seal {
		syncer.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				f := cur.Load()
				syscall.Fdatasync(int(f.Fd())) // may race with the seal's close: EBADF is harmless here
			}
		})
	}
	b.SetBytes(int64(len(benchLine)))
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		if i%perWrite != 0 && i != b.N {
			continue
		}
		n := i % perWrite
		if n == 0 {
			n = perWrite
		}
		f := cur.Load()
		if _, err := f.Write(chunk[:n*len(benchLine)]); err != nil {
			b.Fatal(err)
		}
		if size += n * len(benchLine); size >= DefaultMaxBytes {
			sealFile(f)
			create()
			size = 0
		}
	}
	b.StopTimer()
	close(stop)
	syncer.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
	sealFile(cur.Load())
}

// BenchmarkBoundAlways64 is the limit of SyncAlways for 64 appenders: each
// has one line in flight, so an fsync covers at most 64 lines, and here
// nothing else costs time — one write of 64 lines, one fdatasync, again.
func BenchmarkBoundAlways64(b *testing.B) {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "bound.ndjson.open"), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o640)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	const group = 64
	chunk := bytes.Repeat(benchLine, group)
	var syncs int
	var syncTime time.Duration
	b.SetBytes(int64(len(benchLine)))
	b.ResetTimer()
	for i := 0; i < b.N; i += group {
		n := min(group, b.N-i)
		if _, err := f.Write(chunk[:n*len(benchLine)]); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
		syncTime += time.Since(start)
		syncs++
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
	b.ReportMetric(float64(syncTime.Microseconds())/float64(syncs), "µs/fsync")
}
