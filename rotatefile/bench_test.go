package rotatefile

import (
	"bytes"
	"path/filepath"
	"runtime"
	"testing"

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
