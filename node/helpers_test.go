package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node/topology"
)

// manualClock is a Clock that moves only when told.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func newManualClock() *manualClock {
	return &manualClock{t: time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)}
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("KVS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// testCluster is an in-process cluster on a MemNetwork with a manual clock.
// Each node's replica store is an lsm.DB on its own MemFS (kept across
// restarts); its DataDir (ring, hints) is on disk.
type testCluster struct {
	t     testing.TB
	net   *MemNetwork
	topo  *topology.MemStore // the cluster's topology store
	clock *manualClock
	ids   []string
	tune  func(*Config)

	mu     sync.Mutex
	root   string
	nodes  map[string]*Node
	stores map[string]*lsm.DB
	fs     map[string]*lsm.MemFS
	dirs   map[string]string
}

// addDirs gives a new node id its store's file system and its data dir.
func (c *testCluster) addDirs(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fs[id] = lsm.NewMemFS()
	c.dirs[id] = filepath.Join(c.root, id)
}

const testGossip = 10 * time.Millisecond

func newTestCluster(t testing.TB, ids []string, tune func(*Config)) *testCluster {
	c := &testCluster{
		t:      t,
		net:    NewMemNetwork(),
		topo:   topology.NewMemStore(),
		clock:  newManualClock(),
		ids:    ids,
		tune:   tune,
		nodes:  map[string]*Node{},
		stores: map[string]*lsm.DB{},
		fs:     map[string]*lsm.MemFS{},
		dirs:   map[string]string{},
	}
	c.root = t.TempDir()
	for _, id := range ids {
		c.addDirs(id)
	}
	t.Cleanup(c.closeAll)
	for _, id := range ids {
		c.start(id)
	}
	c.waitConverged()
	return c
}

// config is id's configuration with store and hooks, after tune (which
// may wrap the store).
func (c *testCluster) config(id string, store Store, hooks *StoreHooks) Config {
	cfg := Config{
		Store:          store,
		Hooks:          hooks,
		ID:             id,
		HTTPAddr:       "http://" + id,
		GossipInterval: testGossip,
		DownAfter:      time.Second, // of the manual clock: moves only when advanced
		RequestTimeout: 2 * time.Second,
		NeedPeers:      len(c.ids) - 1,
		DataDir:        c.dirs[id],
		Transport:      c.net.Transport(id),
		Topology:       c.topo,
		Clock:          c.clock,
		Logger:         testLogger(c.t).With("test", c.t.Name()),
	}
	if c.tune != nil {
		c.tune(&cfg)
	}
	return cfg
}

// start opens id's store and starts its node (again after stop).
func (c *testCluster) start(id string) *Node {
	c.t.Helper()
	c.mu.Lock()
	fs := c.fs[id]
	c.mu.Unlock()
	hooks := &StoreHooks{}
	db, err := lsm.Open(lsm.Options{Dir: "/db", FS: fs, Now: c.clock.Now,
		OnApply: hooks.OnApply, TombstoneHorizon: hooks.TombstoneHorizon})
	if err != nil {
		c.t.Fatalf("open store %s: %v", id, err)
	}
	cfg := c.config(id, db, hooks)
	n, err := New(cfg)
	if err != nil {
		c.t.Fatalf("new %s: %v", id, err)
	}
	if err := n.Start(context.Background()); err != nil {
		c.t.Fatalf("start %s: %v", id, err)
	}
	c.net.Start(id)
	c.mu.Lock()
	c.nodes[id], c.stores[id] = n, db
	c.mu.Unlock()
	return n
}

// detach makes id unreachable, closes its node and forgets it, and returns
// its store for the caller to close or crash.
func (c *testCluster) detach(id string) *lsm.DB {
	c.t.Helper()
	c.net.Stop(id)
	c.mu.Lock()
	n, db := c.nodes[id], c.stores[id]
	delete(c.nodes, id)
	delete(c.stores, id)
	c.mu.Unlock()
	if err := n.Close(); err != nil {
		c.t.Errorf("close %s: %v", id, err)
	}
	return db
}

// stop closes id's node and store and makes it unreachable, as a killed
// process.
func (c *testCluster) stop(id string) {
	c.t.Helper()
	db := c.detach(id)
	if err := db.Close(); err != nil {
		c.t.Errorf("close store %s: %v", id, err)
	}
}

func (c *testCluster) node(id string) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

func (c *testCluster) closeAll() {
	c.mu.Lock()
	ids := make([]string, 0, len(c.nodes))
	for id := range c.nodes {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	for _, id := range ids {
		c.stop(id)
	}
}

// waitConverged waits until every running node is ready, acts on the
// stored topology and sees every running node alive.
func (c *testCluster) waitConverged() {
	c.t.Helper()
	waitFor(c.t, 10*time.Second, "cluster converged", func() bool {
		_, rev, err := c.topo.Load(context.Background())
		if err != nil {
			return false
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, n := range c.nodes {
			if n.Ready() != nil || n.view().rev != rev {
				return false
			}
			for id := range c.nodes {
				if !n.mem.alive(id) {
					return false
				}
			}
		}
		return true
	})
}

// members returns the IDs of the stored topology's members in the states.
func (c *testCluster) members(states ...topology.State) []string {
	t, _, err := c.topo.Load(context.Background())
	if err != nil {
		c.t.Fatalf("load topology: %v", err)
	}
	return t.IDs(states...)
}

// markDown advances the clock past DownAfter and waits until every running
// node sees the ids down and the other running nodes alive.
func (c *testCluster) markDown(ids ...string) {
	c.t.Helper()
	c.clock.Advance(2 * time.Second)
	waitFor(c.t, 10*time.Second, fmt.Sprintf("%v seen down", ids), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for nid, n := range c.nodes {
			if slices.Contains(ids, nid) {
				continue // a paused node sees nothing
			}
			for _, id := range ids {
				if n.mem.alive(id) {
					// A heartbeat in flight when the node stopped can land
					// after the clock moved: let more time pass.
					c.clock.Advance(2 * time.Second)
					return false
				}
			}
			for id := range c.nodes {
				if !slices.Contains(ids, id) && !n.mem.alive(id) {
					return false
				}
			}
		}
		return true
	})
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// crash kills id like a power cut: it stops answering, its node is closed
// without its store being closed cleanly, and the store's file system drops
// everything that was not synced.
func (c *testCluster) crash(id string) {
	c.t.Helper()
	db := c.detach(id)
	c.fs[id].Crash()
	_ = db.Close() // fails on the crashed files; releases its goroutines
}
