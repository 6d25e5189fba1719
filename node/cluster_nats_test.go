package node

import (
	"bytes"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kvs-db/kvs/bus"
	"github.com/kvs-db/kvs/lsm"
)

// natsProc is one node of an in-process cluster over real embedded NATS: its
// bus, its lsm.DB replica store and the node.
type natsProc struct {
	b  *bus.Bus
	db *lsm.DB
	n  *Node
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestNATSCluster runs three nodes, each with its own embedded NATS server
// routed to the others and its own lsm.DB, stops one, writes through the
// others, restarts it on the same data directories and checks that it
// catches up through hinted handoff.
func TestNATSCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three embedded NATS servers")
	}
	ids := []string{"n1", "n2", "n3"}
	var seeds []string
	ports := map[string]int{}
	for _, id := range ids {
		ports[id] = freePort(t)
		seeds = append(seeds, fmt.Sprintf("127.0.0.1:%d", ports[id]))
	}
	root := t.TempDir()
	var mu sync.Mutex
	procs := map[string]*natsProc{}
	start := func(id string) *natsProc {
		t.Helper()
		b, err := bus.Start(bus.Config{
			NodeID: id, Cluster: "nodetest", Host: "127.0.0.1",
			ClientPort: -1, ClusterPort: ports[id], Seeds: seeds,
			PingInterval: 250 * time.Millisecond,
		})
		if err != nil {
			t.Fatalf("bus %s: %v", id, err)
		}
		db, err := lsm.Open(lsm.Options{Dir: filepath.Join(root, id, "data")})
		if err != nil {
			b.Close()
			t.Fatalf("store %s: %v", id, err)
		}
		n, err := New(Config{
			ID: id, Cluster: "nodetest", HTTPAddr: "http://" + id,
			GossipInterval: 50 * time.Millisecond, DownAfter: 400 * time.Millisecond,
			RequestTimeout: 2 * time.Second, NeedPeers: 2,
			DataDir: filepath.Join(root, id, "node"), Store: db,
			Transport: NewNATSTransport(b), Logger: testLogger(t).With("node", id),
		})
		if err == nil {
			err = n.Start(ctxT(t))
		}
		if err != nil {
			db.Close()
			b.Close()
			t.Fatalf("node %s: %v", id, err)
		}
		p := &natsProc{b: b, db: db, n: n}
		mu.Lock()
		procs[id] = p
		mu.Unlock()
		return p
	}
	stop := func(id string) {
		mu.Lock()
		p := procs[id]
		delete(procs, id)
		mu.Unlock()
		if p == nil {
			return
		}
		if err := p.n.Close(); err != nil {
			t.Errorf("close node %s: %v", id, err)
		}
		if err := p.b.Close(); err != nil {
			t.Errorf("close bus %s: %v", id, err)
		}
		if err := p.db.Close(); err != nil {
			t.Errorf("close store %s: %v", id, err)
		}
	}
	t.Cleanup(func() {
		for _, id := range ids {
			stop(id)
		}
	})
	node := func(id string) *Node {
		mu.Lock()
		defer mu.Unlock()
		return procs[id].n
	}
	for _, id := range ids {
		start(id)
	}
	converged := func(up ...string) func() bool {
		return func() bool {
			for _, id := range up {
				n := node(id)
				if n.Ready() != nil || n.mem.ring().Len() != 3 {
					return false
				}
				for _, m := range n.Status().Members {
					want := false
					for _, u := range up {
						want = want || u == m.ID
					}
					if m.Alive != want {
						return false
					}
				}
			}
			return true
		}
	}
	waitFor(t, 20*time.Second, "NATS cluster converged", converged(ids...))
	ctx := ctxT(t)

	if _, err := node("n1").Put(ctx, []byte("greeting"), []byte("hello"), WriteOptions{}); err != nil {
		t.Fatalf("put via n1: %v", err)
	}
	for _, id := range []string{"n2", "n3"} {
		rec, err := node(id).Get(ctx, []byte("greeting"), ReadOptions{})
		if err != nil || string(rec.Value) != "hello" {
			t.Fatalf("get via %s = %q, %v", id, rec.Value, err)
		}
	}

	// Stop n2: writes through n1 and n3 still succeed, before and after
	// gossip notices.
	stop("n2")
	written := map[string]lsm.Version{}
	write := func(i int) {
		t.Helper()
		key := fmt.Sprintf("k%03d", i)
		coord := []string{"n1", "n3"}[i%2]
		begin := time.Now()
		v, err := node(coord).Put(ctx, []byte(key), []byte(key), WriteOptions{})
		if err != nil {
			t.Fatalf("put %s via %s with n2 stopped: %v", key, coord, err)
		}
		if d := time.Since(begin); d > time.Second {
			t.Errorf("put %s took %v", key, d)
		}
		written[key] = v
	}
	for i := range 20 {
		write(i)
	}
	waitFor(t, 10*time.Second, "n2 seen down", converged("n1", "n3"))
	for i := 20; i < 40; i++ {
		write(i)
	}
	for key := range written {
		rec, err := node("n3").Get(ctx, []byte(key), ReadOptions{})
		if err != nil || string(rec.Value) != key {
			t.Fatalf("get %s via n3 with n2 stopped = %q, %v", key, rec.Value, err)
		}
	}

	// Bring n2 back on the same data directories: ready at once from its
	// persisted ring, and caught up by hinted handoff.
	n2 := start("n2").n
	if err := n2.Ready(); err != nil {
		t.Errorf("restarted n2 not ready: %v", err)
	}
	waitFor(t, 20*time.Second, "n2 caught up", func() bool {
		for key, v := range written {
			rec, err := n2.LocalGet([]byte(key))
			if err != nil || rec.Version != v || !bytes.Equal(rec.Value, []byte(key)) {
				return false
			}
		}
		return true
	})
	waitFor(t, 10*time.Second, "hints drained", func() bool {
		return node("n1").hints.total()+node("n3").hints.total() == 0
	})
	waitFor(t, 20*time.Second, "NATS cluster converged again", converged(ids...))
	if _, err := n2.Put(ctx, []byte("all"), []byte("three"), WriteOptions{W: 3}); err != nil {
		t.Errorf("put W=3 after n2's return: %v", err)
	}
}
