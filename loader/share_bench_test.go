package loader

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// countSink acknowledges every batch at once and counts its records: the
// loader's own cost, with no sink behind it.
type countSink struct {
	name string
	n    atomic.Int64
}

func (s *countSink) Name() string { return s.name }

func (s *countSink) Submit(_ context.Context, b *Batch, ack func(error)) error {
	s.n.Add(int64(len(b.Records)))
	ack(nil)
	return nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLoaderSinks loads one sealed stream of ~2 KB lines (as
// scripts/bench-e2e generates) into one and two in-memory sinks that ack
// at once, and reports the process's CPU time per line: what reading and
// decoding each line once per stream, rather than once per sink, saves.
// No Kafka or PostgreSQL.
//
//	go test ./loader/ -run '^$' -bench LoaderSinks -benchtime 5x -count 3
func BenchmarkLoaderSinks(b *testing.B) {
	spool := b.TempDir()
	const n = 50000
	pad := strings.Repeat("p", 2000)
	var sb strings.Builder
	for i := range n {
		sb.WriteString(evLine(i%5000, i, pad[:1800+i%200]) + "\n")
	}
	writeStreamFile(b, spool, "api", firstFile, sb.String())
	for _, nsinks := range []int{1, 2} {
		b.Run(fmt.Sprintf("sinks=%d", nsinks), func(b *testing.B) {
			var cpu time.Duration
			for i := range b.N {
				var sinks []*countSink
				var specs []SinkSpec
				for k := range nsinks {
					s := &countSink{name: fmt.Sprintf("s%d", k)}
					sinks = append(sinks, s)
					specs = append(specs, SinkSpec{Sink: s, MaxInFlight: 4})
				}
				l, err := New(Config{Dir: spool, StateDir: filepath.Join(b.TempDir(), fmt.Sprint(i)), Schema: testSchema(b),
					PollInterval: 5 * time.Millisecond, Batch: BatchConfig{Linger: time.Millisecond}}, specs...)
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				start := cpuTime()
				go func() { done <- l.Run(ctx) }()
				deadline := time.Now().Add(2 * time.Minute)
				for _, s := range sinks {
					for s.n.Load() < n {
						if time.Now().After(deadline) {
							b.Fatalf("%s has %d of %d lines after 2 minutes", s.name, s.n.Load(), n)
						}
						time.Sleep(time.Millisecond) // polling for the end of a benchmark run, not synchronising the loader
					}
				}
				cpu += cpuTime() - start
				cancel()
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*n), "cpu-ns/line")
			b.SetBytes(int64(sb.Len()))
		})
	}
}
