package node

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kvs-db/kvs/lsm"
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

// BenchmarkAntiEntropyRound measures a round between two replicas in
// agreement, at 10k and 1M keys of 100 bytes on every replica: the CPU of
// both sides (MemNetwork serves the peer in the caller's goroutine) and the
// bytes sent. With hash trees kept write by write, neither grows with the
// data. Run the 1M case with -benchtime=100x; loading takes a minute.
func BenchmarkAntiEntropyRound(b *testing.B) {
	for _, keys := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			if keys > 10_000 && testing.Short() {
				b.Skip("loads a million keys")
			}
			c := newTestCluster(b, three, func(cfg *Config) { cfg.AntiEntropyInterval = -1 })
			loadDirect(b, c, keys)
			c.waitTrees()
			ctx := ctxT(b)
			n1 := c.node("n1")
			var sent, received int
			b.ResetTimer()
			for b.Loop() {
				st, err := n1.antiEntropyRound(ctx, "n2")
				if err != nil || st.RangesDiffering != 0 {
					b.Fatalf("round: %+v, %v", st, err)
				}
				sent, received = st.BytesSent, st.BytesReceived
			}
			b.ReportMetric(float64(sent), "bytes-sent/round")
			b.ReportMetric(float64(received), "bytes-received/round")
		})
	}
}

// loadDirect applies keys records of 100 bytes to every node's replica
// directly (no coordinator), many at a time.
func loadDirect(b *testing.B, c *testCluster, keys int) {
	b.Helper()
	val := make([]byte, 100)
	for _, id := range three {
		n := c.node(id)
		var wg sync.WaitGroup
		for w := range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < keys; i += 64 {
					rec := lsm.Record{Key: fmt.Appendf(nil, "key%08d", i), Value: val, Version: lsm.Version{Counter: uint64(i + 1), Node: 1}}
					if _, _, err := n.LocalApply(rec); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
}
