package bus

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// benchPair starts two routed nodes; n2 answers on its "echo" subject,
// either through Bus.Subscribe (a goroutine per message) or inline on the
// subscription's delivery goroutine (the baseline it is measured against).
func benchPair(b *testing.B, inline bool, work time.Duration) (*Bus, string) {
	b.Helper()
	buses := startCluster(b, 2, nil)
	n1, n2 := buses[0], buses[1]
	subj := n2.Subjects().Node("n2", "echo")
	if inline {
		if _, err := n2.Conn().Subscribe(subj, func(m *nats.Msg) {
			if work > 0 {
				time.Sleep(work)
			}
			_ = m.Respond(m.Data)
		}); err != nil {
			b.Fatal(err)
		}
	} else {
		if _, err := n2.Subscribe(subj, func(d []byte) []byte {
			if work > 0 {
				time.Sleep(work)
			}
			return d
		}); err != nil {
			b.Fatal(err)
		}
	}
	waitFor(b, "n1 reaches n2", func() bool {
		_, err := n1.Request(context.Background(), subj, nil)
		return err == nil
	})
	return n1, subj
}

// BenchmarkRequest measures request/reply between two embedded nodes over
// a route, 128-byte payloads: one at a time, and 64 in flight. The
// handler=inline variants answer on the subscription's own goroutine, the
// baseline for Bus.Subscribe's goroutine per message; work=1ms stands for
// a handler that waits on the disk (a synced write), where handling one
// message at a time caps a node at 1000 requests/s.
func BenchmarkRequest(b *testing.B) {
	payload := make([]byte, 128)
	for _, mode := range []struct {
		name   string
		inline bool
		work   time.Duration
	}{
		{"handler=goroutine", false, 0},
		{"handler=inline", true, 0},
		{"handler=goroutine/work=1ms", false, time.Millisecond},
		{"handler=inline/work=1ms", true, time.Millisecond},
	} {
		b.Run("sequential/"+mode.name, func(b *testing.B) {
			n1, subj := benchPair(b, mode.inline, mode.work)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := n1.Request(ctx, subj, payload); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("parallel64/"+mode.name, func(b *testing.B) {
			n1, subj := benchPair(b, mode.inline, mode.work)
			ctx := context.Background()
			// RunParallel starts parallelism*GOMAXPROCS goroutines.
			b.SetParallelism((64 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := n1.Request(ctx, subj, payload); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
