package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node/stream"
	"github.com/kvs-db/kvs/node/topology"
)

// add starts a new node id, as an operator starting a fresh machine with
// --seeds: it finds the stored topology and joins.
func (c *testCluster) add(id string) *Node {
	c.t.Helper()
	c.addDirs(id)
	return c.start(id)
}

// waitTopology waits until the stored topology satisfies cond with no change
// pending and every running node acts on it.
func (c *testCluster) waitTopology(what string, cond func(topology.Topology) bool) topology.Topology {
	c.t.Helper()
	var last topology.Topology
	waitFor(c.t, 60*time.Second, what, func() bool {
		t, rev, err := c.topo.Load(context.Background())
		if err != nil || t.Change != nil || !cond(t) {
			return false
		}
		last = t
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, n := range c.nodes {
			if v := n.view(); v == nil || v.rev != rev {
				return false
			}
		}
		return true
	})
	return last
}

// ack is one acknowledged write.
type ack struct {
	key []byte
	v   lsm.Version
}

// load writes unique keys through the running nodes from several clients
// until stopped, and keeps every acknowledged write.
type load struct {
	c     *testCluster
	stop  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	acked []ack
	fails int
}

func startLoad(c *testCluster, clients int) *load {
	l := &load{c: c, stop: make(chan struct{})}
	for w := range clients {
		l.wg.Add(1)
		go l.client(w)
	}
	return l
}

func (l *load) client(w int) {
	defer l.wg.Done()
	rng := rand.New(rand.NewPCG(uint64(w), 7))
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return
		default:
		}
		l.c.mu.Lock()
		var coords []*Node
		for _, n := range l.c.nodes {
			coords = append(coords, n)
		}
		l.c.mu.Unlock()
		if len(coords) == 0 {
			continue
		}
		coord := coords[rng.IntN(len(coords))]
		key := fmt.Appendf(nil, "c%d-%05d", w, i)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		v, err := coord.Put(ctx, key, key, WriteOptions{})
		cancel()
		l.mu.Lock()
		if err == nil {
			l.acked = append(l.acked, ack{key, v})
		} else {
			l.fails++
			if l.fails <= 5 {
				l.c.t.Logf("write %s failed: %v", key, err)
			}
		}
		l.mu.Unlock()
		if i%50 == 0 {
			time.Sleep(time.Millisecond) // let the change's own traffic through
		}
	}
}

// snapshot returns the writes acknowledged so far.
func (l *load) snapshot() []ack {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.acked)
}

func (l *load) end() []ack {
	close(l.stop)
	l.wg.Wait()
	return l.snapshot()
}

// checkHeldByW checks, on the replicas themselves, that every write in
// acked is held by at least W of its replicas in topology t.
func (c *testCluster) checkHeldByW(t topology.Topology, acked []ack, w int) {
	c.t.Helper()
	p, err := t.Placement()
	if err != nil {
		c.t.Fatal(err)
	}
	short := 0
	for _, a := range acked {
		held := 0
		for _, id := range p.Replicas(nil, p.Current.Hash(a.key)) {
			n := c.node(id)
			if n == nil {
				continue
			}
			if rec, err := n.LocalGet(a.key); err == nil && !rec.Version.Less(a.v) {
				held++
			}
		}
		if held < w {
			if short < 5 {
				c.t.Errorf("epoch %d: %s %v held by %d of its replicas %v, want at least %d",
					t.Epoch, a.key, a.v, held, p.Replicas(nil, p.Current.Hash(a.key)), w)
			}
			short++
		}
	}
	if short > 0 {
		c.t.Fatalf("epoch %d: %d of %d acknowledged writes on fewer than W replicas", t.Epoch, short, len(acked))
	}
}

// noMovement is the test config of the topology tests: anti-entropy, hints
// and read repair off, so that nothing but a change's streaming moves data
// between replicas.
func noMovement(cfg *Config) {
	cfg.AntiEntropyInterval = -1
	cfg.DisableHints = true
	cfg.DisableReadRepair = true
	cfg.StreamFallbackAfter = 300 * time.Millisecond
}

// A five-node cluster under writes grows to six, shrinks by a decommission,
// and loses a node that is then removed. After each change, every write
// acknowledged so far is on at least W of its new replicas, checked on the
// replicas themselves before any read; at the end every acknowledged write
// reads back from every node.
func TestTopologyChangesUnderLoad(t *testing.T) {
	ids := []string{"n1", "n2", "n3", "n4", "n5"}
	c := newTestCluster(t, ids, noMovement)
	ctx := ctxT(t)
	l := startLoad(c, 4)
	waitFor(t, 10*time.Second, "writes before the first change", func() bool { return len(l.snapshot()) > 300 })

	c.add("n6")
	topo := c.waitTopology("n6 joined", func(t topology.Topology) bool {
		m, _ := t.Member("n6")
		return m.State == topology.Normal
	})
	c.checkHeldByW(topo, l.snapshot(), 2)
	if n := len(topo.IDs(topology.Normal)); n != 6 {
		t.Fatalf("%d normal members after the join", n)
	}

	if err := c.node("n2").Decommission(ctx); err != nil {
		t.Fatalf("decommission n2: %v", err)
	}
	select {
	case <-c.node("n2").Left():
	case <-time.After(60 * time.Second):
		t.Fatal("n2 never left")
	}
	c.stop("n2")
	topo = c.waitTopology("n2 removed", func(t topology.Topology) bool {
		m, _ := t.Member("n2")
		return m.State == topology.Removed
	})
	c.checkHeldByW(topo, l.snapshot(), 2)

	c.crash("n4")
	c.markDown("n4")
	err := c.node("n1").RemoveNode(ctx, "n4", false)
	if err != nil {
		t.Fatalf("removenode n4: %v", err)
	}
	topo = c.waitTopology("n4 removed", func(t topology.Topology) bool {
		m, _ := t.Member("n4")
		return m.State == topology.Removed
	})
	acked := l.end()
	c.checkHeldByW(topo, acked, 2)
	t.Logf("%d writes acknowledged, %d failed, through three changes; final ring %v at epoch %d",
		len(acked), l.fails, topo.IDs(topology.Normal), topo.Epoch)
	for _, id := range topo.IDs(topology.Normal) {
		for _, a := range acked {
			rec, err := c.node(id).Get(ctx, a.key, ReadOptions{R: 2})
			if err != nil || rec.Version != a.v {
				t.Fatalf("acknowledged %s %v: get via %s = %v, %v", a.key, a.v, id, rec.Version, err)
			}
		}
	}
	// Cleanup drops what a node no longer replicates: every record a
	// running node holds is one of its ranges.
	waitFor(t, 30*time.Second, "cleanup", func() bool {
		p, _ := topo.Placement()
		for _, id := range topo.IDs(topology.Normal) {
			stray := 0
			_ = c.stores[id].Scan(nil, nil, func(r lsm.Record) bool {
				if !p.Holds(id, p.Current.Hash(r.Key)) {
					stray++
				}
				return true
			})
			if stray > 0 {
				return false
			}
		}
		return true
	})
}

// A joining node killed mid-stream resumes where it was when it restarts,
// and the join completes.
func TestJoinResumesAfterRestart(t *testing.T) {
	c := newTestCluster(t, three, func(cfg *Config) {
		noMovement(cfg)
		cfg.StreamThroughput = 64 << 10
	})
	pre := preload(t, c, 3000)
	c.add("n4")
	var before stream.State
	waitFor(t, 30*time.Second, "n4 streamed some keys", func() bool {
		st, err := stream.LoadState(c.dirs["n4"])
		if err != nil {
			return false
		}
		before = st
		return received(st) > 200
	})
	c.crash("n4")
	n4 := c.start("n4")
	topo := c.waitTopology("n4 joined", func(t topology.Topology) bool {
		m, _ := t.Member("n4")
		return m.State == topology.Normal
	})
	// It did not start over: it received fewer keys after the restart than
	// the join moved in all.
	total := received(before) + uint64(counterValue(t, n4.met.streamKeys))
	if got := uint64(counterValue(t, n4.met.streamKeys)); got >= total || got == 0 {
		t.Errorf("after the restart n4 received %d keys of %d: not a resume", got, total)
	}
	c.checkHeldByW(topo, pre, 2)
}

// When a source dies mid-stream, the join completes from the other
// replicas.
func TestJoinSourceDies(t *testing.T) {
	c := newTestCluster(t, []string{"n1", "n2", "n3", "n4"}, func(cfg *Config) {
		noMovement(cfg)
		cfg.StreamThroughput = 64 << 10
	})
	pre := preload(t, c, 3000)
	c.add("n5")
	waitFor(t, 30*time.Second, "n5 streaming", func() bool {
		st, err := stream.LoadState(c.dirs["n5"])
		return err == nil && received(st) > 100
	})
	c.crash("n3")
	c.markDown("n3")
	topo := c.waitTopology("n5 joined", func(t topology.Topology) bool {
		m, _ := t.Member("n5")
		return m.State == topology.Normal
	})
	// n3 is down but still a member: every preloaded key is on W of its
	// replicas that are up.
	c.checkHeldByW(topo, pre, 2)
}

// Two changes proposed at once: one begins, the other is refused as busy;
// nodes that want to join wait their turn. Every node ends with the same
// ring and no change is half applied.
func TestConcurrentTopologyChanges(t *testing.T) {
	c := newTestCluster(t, []string{"n1", "n2", "n3", "n4"}, noMovement)
	ctx := ctxT(t)
	type result struct {
		id  string
		err error
	}
	results := make(chan result, 2)
	for _, id := range []string{"n1", "n2"} {
		go func() { results <- result{id, c.node(id).Decommission(ctx)} }()
	}
	r1, r2 := <-results, <-results
	if (r1.err == nil) == (r2.err == nil) || !(errors.Is(r1.err, topology.ErrBusy) || errors.Is(r2.err, topology.ErrBusy)) {
		t.Fatalf("two decommissions at once: %s %v and %s %v; want one begun, one busy", r1.id, r1.err, r2.id, r2.err)
	}
	leaver, stayer := r1.id, r2.id
	if r1.err != nil {
		leaver, stayer = r2.id, r1.id
	}
	// The begun one is leaving, or already removed: with no data to
	// stream, its gainers may finish it before this line. The busy one
	// changed nothing.
	if got := c.members(topology.Leaving, topology.Removed); !slices.Equal(got, []string{leaver}) {
		t.Fatalf("leaving or removed: %v, want [%s]", got, leaver)
	}
	if !slices.Contains(c.members(topology.Normal), stayer) {
		t.Fatalf("%s, refused as busy, is not normal: %v", stayer, c.members(topology.Normal))
	}
	// Meanwhile two new nodes start: they join one after the other.
	c.add("n5")
	c.add("n6")
	<-c.node(leaver).Left()
	c.stop(leaver)
	topo := c.waitTopology("both joined", func(t topology.Topology) bool {
		return len(t.IDs(topology.Normal)) == 5
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, n := range c.nodes {
		if v := n.view(); v.topo.Epoch != topo.Epoch || fmt.Sprint(v.topo.Members) != fmt.Sprint(topo.Members) {
			t.Errorf("%s acts on epoch %d %v, the store holds %d %v", id, v.topo.Epoch, v.topo.Members, topo.Epoch, topo.Members)
		}
	}
}

// A decommission that would leave fewer than N members is refused, and so
// is a removenode of a live member without force; nothing changes.
func TestTopologyRefusals(t *testing.T) {
	c := newTestCluster(t, three, nil)
	ctx := ctxT(t)
	_, rev, _ := c.topo.Load(ctx)
	if err := c.node("n1").Decommission(ctx); !errors.Is(err, topology.ErrTooFew) {
		t.Errorf("decommission of one of three: %v, want ErrTooFew", err)
	}
	if err := c.node("n1").RemoveNode(ctx, "n2", false); !errors.Is(err, ErrAlive) {
		t.Errorf("removenode of a live member: %v, want ErrAlive", err)
	}
	if err := c.node("n1").RemoveNode(ctx, "zz", true); !errors.Is(err, topology.ErrNotMember) {
		t.Errorf("removenode of a stranger: %v, want ErrNotMember", err)
	}
	if _, now, _ := c.topo.Load(ctx); now != rev {
		t.Errorf("refused commands changed the store: revision %d -> %d", rev, now)
	}
}

// A heartbeat names only its sender, and one from a stranger changes no
// membership: not the old 25 KB one listing 2000 made-up members (dropped
// as oversized), nor small ones from made-up senders, nor one that claims
// another cluster. Each is counted.
func TestForgedHeartbeatsChangeNoMembership(t *testing.T) {
	c := newTestCluster(t, three, nil)
	ctx := ctxT(t)
	evil := c.net.Transport("evil")
	var fake []string
	for i := range 2000 {
		fake = append(fake, fmt.Sprintf("fake%04d", i))
	}
	big, _ := json.Marshal(map[string]any{"id": "fake0000", "cluster": "kvs", "members": fake, "ts_ms": 1, "ready": true})
	if len(big) < 20000 {
		t.Fatalf("forged heartbeat of %d bytes", len(big))
	}
	_ = evil.Broadcast(big)
	for i := range 100 {
		hb, _ := json.Marshal(heartbeat{ID: fmt.Sprintf("fake%04d", i), Cluster: "kvs", Ready: true, Epoch: 99})
		_ = evil.Broadcast(hb)
	}
	other, _ := json.Marshal(heartbeat{ID: "n9", Cluster: "elsewhere"})
	_ = evil.Broadcast(other)
	_ = evil.Broadcast([]byte("{not json"))
	n1 := c.node("n1")
	for _, reason := range []string{dropOversized, dropNotMember, dropForeign, dropMalformed} {
		if v := counterValue(t, n1.met.gossipDropped.WithLabelValues(reason)); v < 1 {
			t.Errorf("no heartbeat counted as dropped for %s", reason)
		}
	}
	if got := c.members(topology.Normal, topology.Joining, topology.Leaving); fmt.Sprint(got) != "[n1 n2 n3]" {
		t.Fatalf("members after forged heartbeats: %v", got)
	}
	if st := n1.Status(); len(st.Members) != 3 {
		t.Fatalf("status lists %d members", len(st.Members))
	}
	if len(n1.mem.cands) > maxCandidates {
		t.Errorf("%d candidates remembered, cap %d", len(n1.mem.cands), maxCandidates)
	}
	for i := range 5 {
		key := fmt.Appendf(nil, "k%d", i)
		if _, err := n1.Put(ctx, key, key, WriteOptions{}); err != nil {
			t.Fatalf("put after forged heartbeats: %v", err)
		}
		if _, err := c.node("n2").Get(ctx, key, ReadOptions{}); err != nil {
			t.Fatalf("get after forged heartbeats: %v", err)
		}
	}
}

// A replica refuses a request planned at an older epoch, and the
// coordinator that sent it catches up and succeeds.
func TestStaleCoordinatorIsFenced(t *testing.T) {
	c := newTestCluster(t, []string{"n1", "n2", "n3", "n4"}, noMovement)
	ctx := ctxT(t)
	n1 := c.node("n1")
	old := n1.view()
	rec := lsm.Record{Key: []byte("k"), Value: []byte("v"), Version: lsm.Version{Counter: n1.clock.now(), Node: n1.selfV}}
	// Move the cluster on by one epoch behind n1's back: abort a join.
	if _, _, err := topology.Propose(ctx, c.topo, topology.Command{Op: topology.OpJoin, Node: "ghost"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "n2 at the new epoch", func() bool { return c.node("n2").epoch() > old.topo.Epoch })
	rep, err := c.net.Transport("n1").Request(ctx, "n2", OpPut, encodePut(old.topo.Epoch, &rec))
	if err != nil {
		t.Fatal(err)
	}
	var se *StaleError
	if _, _, err := decodeAck(rep); !errors.As(err, &se) || se.Epoch <= old.topo.Epoch {
		t.Fatalf("put at an old epoch: %v, want a StaleError", err)
	}
	if _, err := c.node("n2").LocalGet(rec.Key); !errors.Is(err, ErrNotFound) {
		t.Errorf("the refused put was applied: %v", err)
	}
	if _, _, err := topology.Propose(ctx, c.topo, topology.Command{Op: topology.OpAbort}); err != nil {
		t.Fatal(err)
	}
	c.waitConverged()
	if _, err := n1.Put(ctx, []byte("k2"), []byte("v"), WriteOptions{}); err != nil {
		t.Fatalf("put after the cluster moved on: %v", err)
	}
}

// A node started alone (NeedPeers 0) with the topology store unavailable,
// as a lone node's JetStream is, founds a cluster of one and serves at once;
// when the store answers it publishes its topology there.
func TestLoneNodeFoundsAndPublishes(t *testing.T) {
	c := &testCluster{t: t, net: NewMemNetwork(), topo: topology.NewMemStore(), clock: newManualClock(),
		ids: []string{"solo"}, nodes: map[string]*Node{}, stores: map[string]*lsm.DB{}, fs: map[string]*lsm.MemFS{},
		dirs: map[string]string{}, root: t.TempDir(), tune: func(cfg *Config) { cfg.NeedPeers = 0 }}
	t.Cleanup(c.closeAll)
	c.topo.SetUnavailable(true)
	c.addDirs("solo")
	n := c.start("solo")
	waitFor(t, 10*time.Second, "lone node ready", func() bool { return n.Ready() == nil })
	if v := n.view(); v.rev != 0 || fmt.Sprint(v.topo.IDs(topology.Normal)) != "[solo]" {
		t.Fatalf("lone topology rev %d members %v", v.rev, v.topo.IDs(topology.Normal))
	}
	if _, err := n.Put(ctxT(t), []byte("k"), []byte("v"), WriteOptions{}); err != nil {
		t.Fatalf("put on a lone node: %v", err)
	}
	c.topo.SetUnavailable(false)
	waitFor(t, 10*time.Second, "topology published", func() bool { return n.view().rev > 0 })
	if got := c.members(topology.Normal); fmt.Sprint(got) != "[solo]" {
		t.Fatalf("published members %v", got)
	}
}

// Nodes started together with each other as seeds found one cluster of all
// of them; a node is not ready before it hears the peers it needs.
func TestFoundClusterFromSeeds(t *testing.T) {
	c := &testCluster{t: t, net: NewMemNetwork(), topo: topology.NewMemStore(), clock: newManualClock(),
		ids: three, nodes: map[string]*Node{}, stores: map[string]*lsm.DB{}, fs: map[string]*lsm.MemFS{},
		dirs: map[string]string{}, root: t.TempDir()}
	t.Cleanup(c.closeAll)
	c.addDirs("n1")
	n1 := c.start("n1")
	time.Sleep(5 * testGossip) // a few rounds alone: it must not found a cluster of one
	if err := n1.Ready(); !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "heard from 0 of the 2") {
		t.Fatalf("n1 alone: Ready = %v", err)
	}
	if _, _, err := c.topo.Load(ctxT(t)); !errors.Is(err, topology.ErrNotFound) {
		t.Fatalf("n1 alone founded a cluster: %v", err)
	}
	c.addDirs("n2")
	c.addDirs("n3")
	c.start("n2")
	c.start("n3")
	c.waitConverged()
	if got := c.members(topology.Normal); fmt.Sprint(got) != "[n1 n2 n3]" {
		t.Fatalf("founded with %v", got)
	}
}

// A node restarted with its topology file serves at once, even with the
// store unavailable; a removed node refuses to start with its old data.
func TestRestartWithLocalTopology(t *testing.T) {
	c := newTestCluster(t, three, nil)
	ctx := ctxT(t)
	if _, err := c.node("n1").Put(ctx, []byte("k"), []byte("v"), WriteOptions{W: 3}); err != nil {
		t.Fatal(err)
	}
	for _, id := range three {
		c.stop(id)
	}
	c.topo.SetUnavailable(true)
	n1 := c.start("n1")
	if err := n1.Ready(); err != nil {
		t.Fatalf("restarted n1 not ready: %v", err)
	}
	if got := n1.view().topo.IDs(topology.Normal); fmt.Sprint(got) != "[n1 n2 n3]" {
		t.Errorf("restarted topology = %v", got)
	}
	if rec, err := n1.LocalGet([]byte("k")); err != nil || string(rec.Value) != "v" {
		t.Errorf("restarted n1 local get = %q, %v", rec.Value, err)
	}
	// Its peers are presumed up until DownAfter passes unheard.
	if st := n1.Status(); !st.Members[1].Alive || st.N != 3 {
		t.Errorf("status after restart = %+v", st)
	}
}

// preload writes keys p00000.. of 100 bytes with W=3 through n1, 32 at a
// time, and returns them.
func preload(t *testing.T, c *testCluster, n int) []ack {
	t.Helper()
	ctx := ctxT(t)
	val := make([]byte, 100)
	out := make([]ack, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	errs := make(chan error, n)
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			key := fmt.Appendf(nil, "p%05d", i)
			v, err := c.node("n1").Put(ctx, key, val, WriteOptions{W: 3})
			if err != nil {
				errs <- err
			}
			out[i] = ack{key, v}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatalf("preload: %v", err)
	}
	return out
}

func received(st stream.State) uint64 {
	var k uint64
	for _, tr := range st.Transfers {
		k += tr.Keys
	}
	return k
}

// A node restarted under its old ID with a new, empty data directory well
// after the cluster was founded serves nothing (it would be a replica that
// lost what it acknowledged); once removed from another node it joins
// again and streams its ranges back.
func TestWipedNodeRejoins(t *testing.T) {
	c := newTestCluster(t, three, noMovement)
	ctx := ctxT(t)
	pre := preload(t, c, 300)
	// The cluster moves past its first epoch (a join abandoned).
	if _, _, err := topology.Propose(ctx, c.topo, topology.Command{Op: topology.OpJoin, Node: "ghost"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := topology.Propose(ctx, c.topo, topology.Command{Op: topology.OpAbort}); err != nil {
		t.Fatal(err)
	}
	c.waitConverged()
	c.stop("n3")
	c.addDirs("n3") // a new disk
	if err := os.RemoveAll(c.dirs["n3"]); err != nil {
		t.Fatal(err)
	}
	n3 := c.start("n3")
	waitFor(t, 10*time.Second, "n3 refuses to serve", func() bool {
		err := n3.Ready()
		return err != nil && strings.Contains(err.Error(), "data directory is new")
	})
	rep, err := c.net.Transport("n1").Request(ctx, "n3", OpGet, encodeGet(n3.epoch(), pre[0].key))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := decodeGetReply(rep); err == nil {
		t.Fatal("a node that lost its data answered a read")
	}
	if err := c.node("n1").RemoveNode(ctx, "n3", true); err != nil {
		t.Fatal(err)
	}
	topo := c.waitTopology("n3 joined again", func(t topology.Topology) bool {
		m, _ := t.Member("n3")
		return m.State == topology.Normal && t.Epoch > 5
	})
	c.checkHeldByW(topo, pre, 3)
}

// A joining node whose stream state file is damaged starts its pull over
// and completes the join, rather than staying joining for good.
func TestJoinWithDamagedStreamState(t *testing.T) {
	c := newTestCluster(t, three, noMovement)
	pre := preload(t, c, 200)
	c.addDirs("n4")
	if err := os.MkdirAll(c.dirs["n4"], 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dirs["n4"], "stream.json"), []byte("{damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.start("n4")
	topo := c.waitTopology("n4 joined", func(t topology.Topology) bool {
		m, _ := t.Member("n4")
		return m.State == topology.Normal
	})
	c.checkHeldByW(topo, pre, 3)
}
