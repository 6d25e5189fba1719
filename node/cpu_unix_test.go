//go:build unix

package node

import (
	"syscall"
	"testing"
	"time"
)

// reportCPU starts measuring the process's CPU time (user and system, every
// goroutine) and returns the function that stops it and reports it per
// operation as cpu-us/op: on a CPU-bound machine throughput is CPU per
// request, and ns/op alone hides what the other goroutines spent.
//
//	defer reportCPU(b)()
func reportCPU(b *testing.B) func() {
	b.Helper()
	start := processCPU(b)
	b.ResetTimer()
	return func() {
		b.StopTimer()
		if b.N > 0 {
			b.ReportMetric(float64((processCPU(b)-start).Microseconds())/float64(b.N), "cpu-us/op")
		}
	}
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
