package schema

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// cpuClock gives a cpu-ns/line metric: the benchmark goroutine's own CPU
// time per line, from the thread it is locked to. On a machine shared with
// other work wall time per op swings 2x between runs (runnable threads
// wait for a core); the thread's CPU time does not include that wait. It
// excludes GC work done by other threads, which B/op and allocs/op show.
type cpuClock struct{ start int64 }

// startCPU is called right before the benchmark loop, report right after.
func startCPU() cpuClock {
	runtime.LockOSThread()
	return cpuClock{threadCPU()}
}

func (c cpuClock) report(b *testing.B) {
	used := threadCPU() - c.start
	runtime.UnlockOSThread()
	if b.N > 0 && used > 0 {
		b.ReportMetric(float64(used)/float64(b.N), "cpu-ns/line")
	}
}

func threadCPU() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
