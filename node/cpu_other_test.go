//go:build !unix

package node

import "testing"

// reportCPU reports no CPU time where getrusage is missing: benchmarks
// report cpu-us/op on unix only.
func reportCPU(b *testing.B) func() {
	b.Helper()
	b.ResetTimer()
	return b.StopTimer
}
