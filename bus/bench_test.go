package bus

import (
	"context"
	"runtime"
	"testing"

	"github.com/nats-io/nats.go"
)

// benchPair starts two routed nodes; n2 answers on its "echo" subject,
// either through Bus.Subscribe (a goroutine per message) or inline on the
// subscription's delivery goroutine (the baseline it is measured against).
func benchPair(b *testing.B, inline bool) (*Bus, string) {
	b.Helper()
	buses := startCluster(b, 2, nil)
	n1, n2 := buses[0], buses[1]
	subj := n2.Subjects().Node("n2", "echo")
	if inline {
		if _, err := n2.Conn().Subscribe(subj, func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
			b.Fatal(err)
		}
	} else {
		if _, err := n2.Subscribe(subj, func(d []byte) []byte { return d }); err != nil {
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
// a route, 128-byte payloads: one at a time, and 64 in flight.
func BenchmarkRequest(b *testing.B) {
	payload := make([]byte, 128)
	for _, mode := range []struct {
		name   string
		inline bool
	}{{"handler=goroutine", false}, {"handler=inline", true}} {
		b.Run("sequential/"+mode.name, func(b *testing.B) {
			n1, subj := benchPair(b, mode.inline)
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
			n1, subj := benchPair(b, mode.inline)
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
