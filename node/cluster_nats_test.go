package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kvs-db/kvs/bus"
	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node/topology"
)

// natsCluster is an in-process cluster over real embedded NATS: every node
// has its own bus (routed to the others' fixed cluster ports), its own
// lsm.DB on disk and its node.
type natsCluster struct {
	t     testing.TB
	topo  topology.Store
	ids   []string
	ports map[string]int
	seeds []string
	root  string
	tune  func(*Config) // adjusts every node's configuration (nil: none)

	mu    sync.Mutex
	procs map[string]*natsProc
}

type natsProc struct {
	b  *bus.Bus
	db *lsm.DB
	n  *Node
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func newNATSCluster(t testing.TB, ids ...string) *natsCluster {
	return newNATSClusterTuned(t, nil, ids...)
}

// newNATSClusterTuned is newNATSCluster with tune applied to every node's
// configuration.
func newNATSClusterTuned(t testing.TB, tune func(*Config), ids ...string) *natsCluster {
	c := &natsCluster{t: t, ids: ids, procs: map[string]*natsProc{}, tune: tune}
	t.Cleanup(func() {
		for _, id := range ids {
			c.stop(id)
		}
	})
	// Each route port is free when picked, but another test binary may
	// bind it before the node's server does: the cluster then starts over,
	// on new ports and empty directories.
	for attempt := 1; ; attempt++ {
		c.topo, c.root, c.ports, c.seeds = topology.NewMemStore(), t.TempDir(), map[string]int{}, nil
		for _, id := range ids {
			c.ports[id] = freePort(t)
			c.seeds = append(c.seeds, fmt.Sprintf("127.0.0.1:%d", c.ports[id]))
		}
		var err error
		for _, id := range ids {
			if _, err = c.tryStart(id); err != nil {
				break
			}
		}
		if err == nil {
			break
		}
		for _, id := range ids {
			c.stop(id)
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("starting over on new ports: %v", err)
	}
	waitFor(t, 20*time.Second, "NATS cluster converged", c.converged(ids...))
	return c
}

// start starts node id (its bus, store and node) on its route port and
// directory, failing the test if it cannot.
func (c *natsCluster) start(id string) *Node {
	c.t.Helper()
	n, err := c.tryStart(id)
	if err != nil {
		c.t.Fatal(err)
	}
	return n
}

func (c *natsCluster) tryStart(id string) (*Node, error) {
	t := c.t
	b, err := bus.Start(bus.Config{
		NodeID: id, Cluster: "nodetest", Host: "127.0.0.1",
		ClientPort: -1, ClusterPort: c.ports[id], Seeds: c.seeds,
		PingInterval: 250 * time.Millisecond,
	})
	if err != nil {
		return nil, fmt.Errorf("bus %s: %w", id, err)
	}
	db, err := lsm.Open(lsm.Options{Dir: filepath.Join(c.root, id, "data")})
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("store %s: %w", id, err)
	}
	cfg := Config{
		ID: id, Cluster: "nodetest", HTTPAddr: "http://" + id,
		GossipInterval: 100 * time.Millisecond, DownAfter: time.Second,
		RequestTimeout: 2 * time.Second, NeedPeers: len(c.ids) - 1,
		DataDir: filepath.Join(c.root, id, "node"), Store: db,
		Transport: NewNATSTransport(b), Topology: c.topo, Logger: testLogger(t).With("node", id),
	}
	if c.tune != nil {
		c.tune(&cfg)
	}
	n, err := New(cfg)
	if err == nil {
		err = n.Start(ctxT(t))
	}
	if err != nil {
		db.Close()
		b.Close()
		return nil, fmt.Errorf("node %s: %w", id, err)
	}
	c.mu.Lock()
	c.procs[id] = &natsProc{b: b, db: db, n: n}
	c.mu.Unlock()
	return n, nil
}

// stop closes id's node, bus and store, like a process exit.
func (c *natsCluster) stop(id string) {
	c.mu.Lock()
	p := c.procs[id]
	delete(c.procs, id)
	c.mu.Unlock()
	if p == nil {
		return
	}
	if err := p.n.Close(); err != nil {
		c.t.Errorf("close node %s: %v", id, err)
	}
	if err := p.b.Close(); err != nil {
		c.t.Errorf("close bus %s: %v", id, err)
	}
	if err := p.db.Close(); err != nil {
		c.t.Errorf("close store %s: %v", id, err)
	}
}

func (c *natsCluster) node(id string) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[id].n
}

// converged says whether the up nodes are ready, know the whole ring and see
// exactly the up nodes alive.
func (c *natsCluster) converged(up ...string) func() bool {
	return func() bool {
		for _, id := range up {
			n := c.node(id)
			if n.Ready() != nil || len(n.Status().Members) != len(c.ids) {
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

// TestNATSCluster runs three nodes, each with its own embedded NATS server
// routed to the others and its own lsm.DB, stops one, writes through the
// others, restarts it on the same data directories and checks that it
// catches up through hinted handoff.
func TestNATSCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three embedded NATS servers")
	}
	c := newNATSCluster(t, "n1", "n2", "n3")
	ctx := ctxT(t)

	if _, err := c.node("n1").Put(ctx, []byte("greeting"), []byte("hello"), WriteOptions{}); err != nil {
		t.Fatalf("put via n1: %v", err)
	}
	for _, id := range []string{"n2", "n3"} {
		rec, err := c.node(id).Get(ctx, []byte("greeting"), ReadOptions{})
		if err != nil || string(rec.Value) != "hello" {
			t.Fatalf("get via %s = %q, %v", id, rec.Value, err)
		}
	}
	if _, err := c.node("n3").Delete(ctx, []byte("greeting"), WriteOptions{}); err != nil {
		t.Fatalf("delete via n3: %v", err)
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		if _, err := c.node(id).Get(ctx, []byte("greeting"), ReadOptions{}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("get via %s after delete: %v", id, err)
		}
	}

	// Stop n2: writes through n1 and n3 still succeed, before and after
	// gossip notices.
	c.stop("n2")
	written := map[string]lsm.Version{}
	write := func(i int) {
		t.Helper()
		key := fmt.Sprintf("k%03d", i)
		coord := []string{"n1", "n3"}[i%2]
		begin := time.Now()
		v, err := c.node(coord).Put(ctx, []byte(key), []byte(key), WriteOptions{})
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
	waitFor(t, 10*time.Second, "n2 seen down", c.converged("n1", "n3"))
	for i := 20; i < 40; i++ {
		write(i)
	}
	for key := range written {
		rec, err := c.node("n3").Get(ctx, []byte(key), ReadOptions{})
		if err != nil || string(rec.Value) != key {
			t.Fatalf("get %s via n3 with n2 stopped = %q, %v", key, rec.Value, err)
		}
	}

	// Bring n2 back on the same data directories: ready at once from its
	// persisted ring, and caught up by hinted handoff.
	n2 := c.start("n2")
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
		return c.node("n1").hints.total()+c.node("n3").hints.total() == 0
	})
	waitFor(t, 20*time.Second, "NATS cluster converged again", c.converged("n1", "n2", "n3"))
	if _, err := n2.Put(ctx, []byte("all"), []byte("three"), WriteOptions{W: 3}); err != nil {
		t.Errorf("put W=3 after n2's return: %v", err)
	}
}

// BenchmarkNATS runs puts and gets over real NATS and lsm.DB on disk with an
// fsync on every write (SyncAlways): 128-byte values, 64 requests in flight
// (32 per GOMAXPROCS on the 2-core machine the figures come from),
// coordinators in turn. cpu-us/op is the CPU time of the whole process
// (three nodes, their NATS servers and the clients) per request.
func BenchmarkNATS(b *testing.B) { benchNATS(b, nil) }

// BenchmarkNATSBatchInFlight is BenchmarkNATS at each BatchInFlight: -1 (no
// batching), 1, 2 (the default) and 4.
func BenchmarkNATSBatchInFlight(b *testing.B) {
	for _, k := range []int{-1, 1, 2, 4} {
		b.Run(fmt.Sprintf("k=%d", k), func(b *testing.B) {
			benchNATS(b, func(cfg *Config) { cfg.BatchInFlight = k })
		})
	}
}

func benchNATS(b *testing.B, tune func(*Config)) {
	c := newNATSClusterTuned(b, tune, "n1", "n2", "n3")
	ctx := ctxT(b)
	ids := []string{"n1", "n2", "n3"}
	val := make([]byte, 128)
	var seq atomic.Int64
	b.Run("Put", func(b *testing.B) {
		b.SetParallelism(32)
		defer reportCPU(b)()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := seq.Add(1)
				if _, err := c.node(ids[i%3]).Put(ctx, fmt.Appendf(nil, "k%d", i), val, WriteOptions{}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	for i := range 1000 {
		if _, err := c.node("n1").Put(ctx, fmt.Appendf(nil, "g%d", i), val, WriteOptions{W: 3}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("Get", func(b *testing.B) {
		b.SetParallelism(32)
		defer reportCPU(b)()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := seq.Add(1)
				if _, err := c.node(ids[i%3]).Get(ctx, fmt.Appendf(nil, "g%d", i%1000), ReadOptions{}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// The change feed reaches a client subscribed on another node's server once
// the coordinator's server has learnt of the subscription; a write made
// while nobody listens (no event is built) succeeds all the same.
func TestNATSChangeFeed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three embedded NATS servers")
	}
	c := newNATSCluster(t, "n1", "n2", "n3")
	ctx := ctxT(t)
	if _, err := c.node("n1").Put(ctx, []byte("unheard"), []byte("v"), WriteOptions{}); err != nil {
		t.Fatalf("put with no listener: %v", err)
	}
	c.mu.Lock()
	b1, b3 := c.procs["n1"].b, c.procs["n3"].b
	c.mu.Unlock()
	nc, err := nats.Connect(b3.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync(b3.Subjects().Events(">"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "n1 sees the listener on n3", func() bool { return b1.HasInterest(b1.Subjects().Events("put")) })
	if _, err := c.node("n1").Put(ctx, []byte("heard"), []byte("v"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no event for the write: %v", err)
	}
	var ev map[string]any
	if err := json.Unmarshal(msg.Data, &ev); err != nil || ev["key"] != "heard" || ev["node"] != "n1" || msg.Subject != b3.Subjects().Events("put") {
		t.Fatalf("event %s on %s (%v): want key heard from n1 on the put subject", msg.Data, msg.Subject, err)
	}
}
