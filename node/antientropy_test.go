package node

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node/aae"
	"github.com/kvs-db/kvs/node/topology"
)

func TestAntiEntropyWire(t *testing.T) {
	toks, roots := []uint64{3, 9, math.MaxUint64}, []uint64{7, 0, 42}
	e, from, t2, r2, err := decodeRoots(encodeRoots(5, "n1", toks, roots))
	if err != nil || e != 5 || from != "n1" || !slices.Equal(t2, toks) || !slices.Equal(r2, roots) {
		t.Errorf("roots round trip: %d %q %v %v %v", e, from, t2, r2, err)
	}
	if d, err := decodeRootsReply(encodeRootsReply(toks[:2])); err != nil || !slices.Equal(d, toks[:2]) {
		t.Errorf("roots reply round trip: %v %v", d, err)
	}
	if e, from, t2, err := decodeLeaves(encodeLeaves(6, "n2", toks)); err != nil || e != 6 || from != "n2" || !slices.Equal(t2, toks) {
		t.Errorf("leaves round trip: %v %v", t2, err)
	}
	leaves := [][]uint64{make([]uint64, aae.Segments), make([]uint64, aae.Segments)}
	leaves[1][1023] = 99
	if l2, err := decodeLeavesReply(encodeLeavesReply(leaves), 2); err != nil || l2[1][1023] != 99 {
		t.Errorf("leaves reply round trip: %v", err)
	}
	cells := cellSet{}
	cells.add(3, 0)
	cells.add(3, 1023)
	cells.add(9, 500)
	e, from, after, c2, err := decodeKeys(encodeKeys(7, "n3", []byte("k1"), cells))
	if err != nil || e != 7 || from != "n3" || string(after) != "k1" || !c2.has(3, 1023) || !c2.has(9, 500) || c2.has(9, 501) || len(c2) != 2 {
		t.Errorf("keys round trip: %v", err)
	}
	entries := []aeEntry{{key: []byte("a"), v: lsm.Version{Counter: 1, Node: 2}}, {key: []byte("b"), v: lsm.Version{Counter: 3}}}
	es, next, more, err := decodeKeysReply(encodeKeysReply(entries, []byte("c"), true))
	if err != nil || !more || string(next) != "c" || len(es) != 2 || es[0].v != entries[0].v {
		t.Errorf("keys reply round trip: %+v %q %v %v", es, next, more, err)
	}
	for name, b := range map[string][]byte{
		"roots truncated":      encodeRoots(5, "n1", toks, roots)[:20],
		"roots unordered":      encodeRoots(5, "n1", []uint64{9, 3}, []uint64{0, 0}),
		"roots bad from":       encodeRoots(5, "a.b", toks, roots),
		"roots huge count":     {msgRoots, 1, 2, 'n', '1', 0xff, 0xff, 0xff, 0xff, 0x0f},
		"leaves too many":      encodeLeaves(1, "n1", make([]uint64, aeLeavesPerRequest+1)),
		"leaves reply short":   encodeLeavesReply(leaves)[:100],
		"keys twice":           append(encodeKeys(7, "n3", nil, cellSet{3: cells[3]}), encodeKeys(7, "n3", nil, cellSet{3: cells[3]})[7:]...),
		"keys reply unordered": encodeKeysReply([]aeEntry{entries[1], entries[0]}, nil, false),
		"keys reply next back": encodeKeysReply(entries, []byte("a"), true),
		"keys reply count":     {msgKeysReply, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		var err error
		switch b[0] {
		case msgRoots:
			_, _, _, _, err = decodeRoots(b)
		case msgLeaves:
			_, _, _, err = decodeLeaves(b)
		case msgLeavesReply:
			_, err = decodeLeavesReply(b, 2)
		case msgKeys:
			_, _, _, _, err = decodeKeys(b)
		case msgKeysReply:
			_, _, _, err = decodeKeysReply(b)
		}
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzDecodeAntiEntropy(f *testing.F) {
	f.Add(encodeRoots(5, "n1", []uint64{1, 2}, []uint64{3, 4}))
	f.Add(encodeRootsReply([]uint64{1}))
	f.Add(encodeLeaves(1, "n1", []uint64{8}))
	cells := cellSet{}
	cells.add(8, 9)
	f.Add(encodeKeys(2, "n2", []byte("after"), cells))
	f.Add(encodeKeysReply([]aeEntry{{key: []byte("a"), v: lsm.Version{Counter: 1}}}, []byte("a"), true))
	f.Fuzz(func(t *testing.T, b []byte) {
		if e, from, toks, roots, err := decodeRoots(b); err == nil {
			if e2, f2, t2, r2, err := decodeRoots(encodeRoots(e, from, toks, roots)); err != nil || e2 != e || f2 != from ||
				!slices.Equal(t2, toks) || !slices.Equal(r2, roots) {
				t.Fatalf("roots re-encoding: %v", err)
			}
		}
		if d, err := decodeRootsReply(b); err == nil {
			if d2, err := decodeRootsReply(encodeRootsReply(d)); err != nil || !slices.Equal(d, d2) {
				t.Fatalf("roots reply re-encoding: %v", err)
			}
		}
		if e, from, toks, err := decodeLeaves(b); err == nil {
			if _, _, t2, err := decodeLeaves(encodeLeaves(e, from, toks)); err != nil || !slices.Equal(t2, toks) {
				t.Fatalf("leaves re-encoding: %v", err)
			}
		}
		_, _ = decodeLeavesReply(b, 1)
		if e, from, after, cells, err := decodeKeys(b); err == nil {
			if _, _, a2, c2, err := decodeKeys(encodeKeys(e, from, after, cells)); err != nil || !bytes.Equal(a2, after) || len(c2) != len(cells) {
				t.Fatalf("keys re-encoding: %v", err)
			}
		}
		if es, next, more, err := decodeKeysReply(b); err == nil {
			if e2, n2, m2, err := decodeKeysReply(encodeKeysReply(es, next, more)); err != nil || m2 != more || len(e2) != len(es) || !bytes.Equal(n2, next) {
				t.Fatalf("keys reply re-encoding: %v", err)
			}
		}
	})
}

// waitTrees waits until every node's hash trees of the current epoch are
// built.
func (c *testCluster) waitTrees() {
	c.t.Helper()
	waitFor(c.t, 10*time.Second, "hash trees built", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, n := range c.nodes {
			if _, err := n.readyTrees(); err != nil {
				return false
			}
		}
		return true
	})
}

// n3 misses writes that nobody reads and no hint covers, and holds one
// newer than the others; one round from n1 repairs both ways, only the
// differing ranges and segments move, and a round between replicas in
// agreement sends only the roots.
func TestAntiEntropyRound(t *testing.T) {
	c := newTestCluster(t, three, func(cfg *Config) { cfg.AntiEntropyInterval = -1 })
	ctx := ctxT(t)
	for i := range 300 {
		if _, err := c.node("n1").Put(ctx, fmt.Appendf(nil, "k%03d", i), []byte("old"), WriteOptions{W: 3}); err != nil {
			t.Fatal(err)
		}
	}
	c.waitTrees()
	st, err := c.node("n1").antiEntropyRound(ctx, "n3")
	if err != nil || st.RangesDiffering != 0 || st.Pushed+st.Pulled != 0 {
		t.Fatalf("round between agreeing replicas: %+v, %v", st, err)
	}
	if st.BytesSent > 16*st.Ranges+32 || st.Ranges == 0 {
		t.Errorf("an agreeing round sent %d bytes for %d ranges", st.BytesSent, st.Ranges)
	}
	var missed []lsm.Record
	for i := range 20 {
		v := lsm.Version{Counter: c.node("n1").clock.now(), Node: NodeHash("n1")}
		rec := lsm.Record{Key: fmt.Appendf(nil, "k%03d", i*15), Value: []byte("new"), Version: v}
		switch i % 3 {
		case 1:
			rec.Value, rec.Tombstone = nil, true
		case 2:
			rec.Key = fmt.Appendf(nil, "fresh%02d", i)
		}
		missed = append(missed, rec)
		for _, id := range []string{"n1", "n2"} {
			if _, _, err := c.node(id).LocalApply(rec); err != nil {
				t.Fatal(err)
			}
		}
	}
	// n3 holds something newer than n1 for one key: n1 pulls it.
	newest := lsm.Record{Key: []byte("k299"), Value: []byte("n3's"), Version: lsm.Version{Counter: c.node("n3").clock.now() + 1000, Node: NodeHash("n3")}}
	if _, _, err := c.node("n3").LocalApply(newest); err != nil {
		t.Fatal(err)
	}
	c.node("n3").aePageBytes = 100 // several key pages
	st, err = c.node("n1").antiEntropyRound(ctx, "n3")
	if err != nil || st.Pushed != len(missed) || st.Pulled != 1 {
		t.Fatalf("round: %+v, %v; want %d pushed and 1 pulled", st, err, len(missed))
	}
	if st.RangesDiffering == 0 || st.RangesDiffering > len(missed)+1 || st.Keys >= 300 {
		t.Errorf("round compared %d ranges and %d keys to repair %d records", st.RangesDiffering, st.Keys, len(missed)+1)
	}
	for _, rec := range append(missed, newest) {
		for _, id := range []string{"n1", "n3"} {
			got, err := c.node(id).LocalGet(rec.Key)
			if err != nil || got.Version != rec.Version || got.Tombstone != rec.Tombstone {
				t.Errorf("%s %s = %v %v, %v; want %v", id, rec.Key, got.Version, got.Tombstone, err, rec.Version)
			}
		}
	}
	if st, err := c.node("n1").antiEntropyRound(ctx, "n3"); err != nil || st.RangesDiffering != 0 {
		t.Errorf("second round: %+v, %v; want no difference", st, err)
	}
}

// A node that was down converges through the hash trees alone, with hints
// and read repair off, for keys nobody reads.
func TestAntiEntropyConvergesReturningNode(t *testing.T) {
	c := newTestCluster(t, three, func(cfg *Config) {
		cfg.AntiEntropyInterval = 20 * time.Millisecond
		cfg.DisableHints = true
		cfg.DisableReadRepair = true
	})
	ctx := ctxT(t)
	c.stop("n3")
	c.markDown("n3")
	var acked []ack
	for i := range 500 {
		key := fmt.Appendf(nil, "k%03d", i)
		v, err := c.node("n1").Put(ctx, key, key, WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, ack{key, v})
	}
	c.start("n3")
	c.waitConverged()
	waitFor(t, 30*time.Second, "n3 holds every write it missed", func() bool {
		for _, a := range acked {
			if rec, err := c.node("n3").LocalGet(a.key); err != nil || rec.Version != a.v {
				return false
			}
		}
		return true
	})
	if counterValue(t, c.node("n3").met.hintsDelivered) != 0 || counterValue(t, c.node("n1").met.hintsStored) != 0 {
		t.Error("hints moved data with hints off")
	}
}

// The trees a node keeps write by write equal trees rebuilt from its store,
// through writes, deletes, purges and a change of epoch. Writes use W=3 so
// that none is still landing on a replica when the trees are compared.
func TestTreesMatchStore(t *testing.T) {
	c := newTestCluster(t, []string{"n1", "n2", "n3", "n4"}, noMovement)
	ctx := ctxT(t)
	n1 := c.node("n1")
	for i := range 400 {
		key := fmt.Appendf(nil, "k%03d", i)
		var err error
		if i%7 == 0 {
			_, err = n1.Delete(ctx, key, WriteOptions{W: 3})
		} else {
			_, err = n1.Put(ctx, key, key, WriteOptions{W: 3})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	c.waitTrees()
	check := func(when string) {
		t.Helper()
		ts, err := n1.readyTrees()
		if err != nil {
			t.Fatal(err)
		}
		rebuilt, err := n1.rebuildTrees(ctx, n1.view())
		if err != nil {
			t.Fatal(err)
		}
		toks := n1.ownTokens(n1.view())
		if !slices.Equal(ts.trees.Roots(toks), rebuilt.trees.Roots(toks)) {
			t.Fatalf("%s: kept trees differ from rebuilt ones", when)
		}
	}
	check("after writes")
	if err := n1.Decommission(ctx); err != nil {
		t.Fatal(err)
	}
	<-n1.Left()
	c.stop("n1")
	n2 := c.node("n2")
	topo := c.waitTopology("n1 removed", func(t topology.Topology) bool { return !t.IsMember("n1") })
	c.waitTrees()
	waitFor(t, 10*time.Second, "n2's cleanup", func() bool { return n2.cleaned.Load() >= topo.Epoch })
	for _, a := range []string{"k001", "k002"} {
		if _, err := n2.Put(ctx, []byte(a), []byte("again"), WriteOptions{W: 3}); err != nil {
			t.Fatal(err)
		}
	}
	n1 = n2
	check("after a decommission, cleanup and more writes")
}

// The tombstone horizon stays at zero until a round with every peer has
// left nothing to repair, then follows the oldest such round.
func TestTombstoneHorizon(t *testing.T) {
	c := newTestCluster(t, three, func(cfg *Config) { cfg.AntiEntropyInterval = -1 })
	ctx := ctxT(t)
	c.waitTrees()
	n1 := c.node("n1")
	if h := n1.tombstoneHorizon(); h != 0 {
		t.Fatalf("horizon before any round: %d", h)
	}
	if _, err := n1.antiEntropyRound(ctx, "n2"); err != nil {
		t.Fatal(err)
	}
	if h := n1.tombstoneHorizon(); h != 0 {
		t.Fatalf("horizon after a round with n2 only: %d", h)
	}
	before := n1.clock.now()
	if _, err := n1.antiEntropyRound(ctx, "n3"); err != nil {
		t.Fatal(err)
	}
	h := n1.tombstoneHorizon()
	if h == 0 || h > before {
		t.Fatalf("horizon after rounds with both peers: %d, want the n2 round's start, below %d", h, before)
	}
}

// Repair runs a round with every peer the node shares ranges with and adds
// them up.
func TestRepairRunsEveryPeer(t *testing.T) {
	c := newTestCluster(t, []string{"n1", "n2", "n3", "n4"}, func(cfg *Config) { cfg.AntiEntropyInterval = -1 })
	ctx := ctxT(t)
	c.waitTrees()
	n1 := c.node("n1")
	key := []byte("only-on-n1")
	for i := 0; !n1.holds("n1", key); i++ { // a key n1 replicates
		key = fmt.Appendf(nil, "only-on-n1-%d", i)
	}
	rec := lsm.Record{Key: key, Value: []byte("v"), Version: lsm.Version{Counter: n1.clock.now(), Node: n1.selfV}}
	if _, _, err := n1.LocalApply(rec); err != nil {
		t.Fatal(err)
	}
	var peers []string
	pushed := 0
	total, err := n1.Repair(ctx, func(st RoundStats, err error) {
		if err != nil {
			t.Errorf("round with %s: %v", st.Peer, err)
		}
		peers = append(peers, st.Peer)
		pushed += st.Pushed
	})
	if err != nil || fmt.Sprint(peers) != "[n2 n3 n4]" || total.Pushed != pushed {
		t.Fatalf("repair: peers %v, total %+v, %v", peers, total, err)
	}
	v := n1.view()
	reps := v.place.Replicas(nil, v.place.Current.Hash(rec.Key))
	if pushed != len(reps)-1 {
		t.Errorf("pushed %d, want one per other replica of %v", pushed, reps)
	}
	for _, id := range reps {
		if got, err := c.node(id).LocalGet(rec.Key); err != nil || got.Version != rec.Version {
			t.Errorf("%s after repair: %v %v", id, got.Version, err)
		}
	}
}
