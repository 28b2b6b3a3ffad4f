//go:build !linux

package schema

import "testing"

// Per-thread CPU time (RUSAGE_THREAD) is Linux's: elsewhere the benchmarks
// report wall time only.
type cpuClock struct{}

func startCPU() cpuClock           { return cpuClock{} }
func (cpuClock) report(*testing.B) {}
