package node

import (
	"fmt"
	"sync/atomic"
	"testing"
)

// Benchmarks of the coordinator over MemNetwork and lsm on MemFS: the cost
// of the node itself (fan-out, quorum, codec, clock), without NATS or fsync.

func BenchmarkClusterPut(b *testing.B) {
	c := newTestCluster(b, three, nil)
	ctx := ctxT(b)
	val := make([]byte, 128)
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			if _, err := c.node(three[i%3]).Put(ctx, fmt.Appendf(nil, "k%d", i%10000), val, WriteOptions{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkClusterGet(b *testing.B) {
	c := newTestCluster(b, three, nil)
	ctx := ctxT(b)
	for i := range 1000 {
		if _, err := c.node("n1").Put(ctx, fmt.Appendf(nil, "k%d", i), make([]byte, 128), WriteOptions{W: 3}); err != nil {
			b.Fatal(err)
		}
	}
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			if _, err := c.node(three[i%3]).Get(ctx, fmt.Appendf(nil, "k%d", i%1000), ReadOptions{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
