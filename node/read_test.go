package node

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kvs-db/kvs/lsm"
)

// readOrderOf is the order in which coordinator id asks key's replicas.
func readOrderOf(t *testing.T, n *Node, key []byte) []string {
	t.Helper()
	p, err := n.plan(key, 0, n.cfg.R, "R", false)
	if err != nil {
		t.Fatal(err)
	}
	return readOrder(p.live, n.self)
}

// seedLatency gives n a latency history of d for each peer, so that its
// reads speculate after about d (at most RequestTimeout/2) rather than
// speculateFirst: a loaded test machine may take longer than that.
func seedLatency(n *Node, d time.Duration, peers ...string) {
	for _, p := range peers {
		for range latencyMinSamples {
			n.rc.lat.observe(p, d)
		}
	}
}

func remoteRequests(c *testCluster) int {
	return c.net.Requests("n1") + c.net.Requests("n2") + c.net.Requests("n3")
}

// A read asks R replicas, its coordinator first, and when their replies
// agree it repairs nothing.
func TestClusterGetAsksR(t *testing.T) {
	c := newTestCluster(t, three, nil)
	ctx := ctxT(t)
	n1 := c.node("n1")
	key := []byte("k")
	if _, err := n1.Put(ctx, key, []byte("v"), WriteOptions{W: 3}); err != nil {
		t.Fatal(err)
	}
	if order := readOrderOf(t, n1, key); len(order) != 3 || order[0] != "n1" {
		t.Fatalf("read order %v, want n1 first of 3", order)
	}
	seedLatency(n1, time.Hour, "n1", "n2", "n3") // no speculative request
	for _, tc := range []struct{ r, remote int }{{1, 0}, {2, 1}, {3, 2}} {
		before := remoteRequests(c)
		rec, err := n1.Get(ctx, key, ReadOptions{R: tc.r})
		if err != nil || string(rec.Value) != "v" {
			t.Fatalf("R=%d: get = %q, %v", tc.r, rec.Value, err)
		}
		if got := remoteRequests(c) - before; got != tc.remote {
			t.Errorf("R=%d: %d requests to other nodes, want %d", tc.r, got, tc.remote)
		}
	}
	if got := counterValue(t, n1.met.readRepairs); got != 0 {
		t.Errorf("read repairs after agreeing reads = %v, want 0", got)
	}
	if got := counterValue(t, n1.met.speculativeReads); got != 0 {
		t.Errorf("speculative reads = %v, want 0", got)
	}
}

// A replica asked that does not answer (paused, not yet seen down) gets
// company: the read asks the next replica and answers with it, well before
// the request timeout; a replica that fails outright is replaced at once.
func TestClusterSpeculativeRead(t *testing.T) {
	for _, mode := range []string{"paused", "stopped"} {
		t.Run(mode, func(t *testing.T) {
			c := newTestCluster(t, three, nil)
			ctx := ctxT(t)
			n1 := c.node("n1")
			key := []byte("k")
			v, err := n1.Put(ctx, key, []byte("v"), WriteOptions{W: 3})
			if err != nil {
				t.Fatal(err)
			}
			order := readOrderOf(t, n1, key)
			slow := order[1]
			// The paused replica usually answers in a millisecond; the
			// stopped one is given an hour, so that only its failure
			// (at once) makes the read ask the third.
			if mode == "paused" {
				seedLatency(n1, time.Millisecond, "n1", slow)
			} else {
				seedLatency(n1, time.Hour, "n1", slow, order[2])
			}
			if mode == "paused" {
				c.net.Pause(slow)
				defer c.net.Resume(slow)
			} else {
				c.net.Stop(slow)
			}
			start := time.Now()
			rec, err := n1.Get(ctx, key, ReadOptions{R: 2})
			if err != nil || rec.Version != v {
				t.Fatalf("get with %s %s = %v, %v", slow, mode, rec.Version, err)
			}
			if d := time.Since(start); d > n1.cfg.RequestTimeout/4 {
				t.Errorf("get took %v with %s %s, want well under RequestTimeout", d, slow, mode)
			}
			want := 0.0
			if mode == "paused" {
				want = 1
			}
			if got := counterValue(t, n1.met.speculativeReads); got != want {
				t.Errorf("speculative reads = %v, want %v", got, want)
			}
		})
	}
}

// Replicas asked whose replies disagree are repaired: the one asked that
// holds an older version gets the newest.
func TestClusterReadRepairOnMismatch(t *testing.T) {
	c := newTestCluster(t, three, nil)
	ctx := ctxT(t)
	n1 := c.node("n1")
	key := []byte("k")
	if _, err := n1.Put(ctx, key, []byte("old"), WriteOptions{W: 3}); err != nil {
		t.Fatal(err)
	}
	second := readOrderOf(t, n1, key)[1]
	newer := lsm.Record{Key: key, Value: []byte("new"), Version: lsm.Version{Counter: n1.clock.now(), Node: NodeHash("n1")}}
	for _, id := range three {
		if id == second {
			continue
		}
		if _, applied, err := c.node(id).LocalApply(newer); err != nil || !applied {
			t.Fatalf("local apply on %s: %v %v", id, applied, err)
		}
	}
	rec, err := n1.Get(ctx, key, ReadOptions{R: 2})
	if err != nil || rec.Version != newer.Version {
		t.Fatalf("get = %v, %v; want %v", rec.Version, err, newer.Version)
	}
	waitFor(t, 5*time.Second, second+" repaired", func() bool {
		rec, err := c.node(second).LocalGet(key)
		return err == nil && rec.Version == newer.Version
	})
	if got := counterValue(t, n1.met.readRepairs); got != 1 {
		t.Errorf("read repairs = %v, want 1", got)
	}
	if _, err := n1.Get(ctx, []byte("none"), ReadOptions{R: 2}); !errors.Is(err, ErrNotFound) {
		t.Errorf("get of a key nobody holds: %v", err)
	}
	if got := counterValue(t, n1.met.readRepairs); got != 1 {
		t.Errorf("read repairs after a read all replicas agree on = %v, want 1", got)
	}
}

func TestLatenciesSpeculateAfter(t *testing.T) {
	var l latencies
	limit := time.Second
	if got := l.speculateAfter("n2", limit); got != speculateFirst {
		t.Errorf("no history: %v, want %v", got, speculateFirst)
	}
	if got := l.speculateAfter("n2", 10*time.Millisecond); got != 10*time.Millisecond {
		t.Errorf("no history, limit 10ms: %v", got)
	}
	for range latencyMinSamples - 1 {
		l.observe("n2", 2*time.Millisecond)
	}
	if got := l.speculateAfter("n2", limit); got != speculateFirst {
		t.Errorf("%d replies: %v, want %v until %d", latencyMinSamples-1, got, speculateFirst, latencyMinSamples)
	}
	// 99 replies in 2ms and one in 100ms of every hundred: the 99th
	// percentile is the 2ms bucket, whose bound is 2ms to 2.83ms.
	for i := range 1000 {
		d := 2 * time.Millisecond
		if i%100 == 0 {
			d = 100 * time.Millisecond
		}
		l.observe("n2", d)
	}
	if got := l.speculateAfter("n2", limit); got < 2*time.Millisecond || got > 2830*time.Microsecond {
		t.Errorf("2ms with 1%% at 100ms: %v, want 2-2.83ms", got)
	}
	// Two in a hundred slow: the 99th percentile is a slow one.
	for i := range 1000 {
		d := 2 * time.Millisecond
		if i%50 == 0 {
			d = 100 * time.Millisecond
		}
		l.observe("n3", d)
	}
	if got := l.speculateAfter("n3", limit); got < 100*time.Millisecond || got > 142*time.Millisecond {
		t.Errorf("2ms with 2%% at 100ms: %v, want 100-142ms", got)
	}
	if got := l.speculateAfter("n3", 20*time.Millisecond); got != 20*time.Millisecond {
		t.Errorf("limit 20ms: %v", got)
	}
	for range 1000 {
		l.observe("n4", 10*time.Microsecond)
	}
	if got := l.speculateAfter("n4", limit); got != speculateMin {
		t.Errorf("steady 10us: %v, want the floor %v", got, speculateMin)
	}
	// The histogram decays: after many fast replies the slow ones no
	// longer count.
	for range 4 * latencyDecay {
		l.observe("n3", 2*time.Millisecond)
	}
	if got := l.speculateAfter("n3", limit); got > 2830*time.Microsecond {
		t.Errorf("after %d fast replies: %v, want the 2ms bucket", 4*latencyDecay, got)
	}
	for _, d := range []time.Duration{0, latencyBase, latencyBase + 1, time.Millisecond, time.Hour} {
		if b := latencyBucket(d); d > latencyBound(b) && b < latencyBuckets-1 || b > 0 && d <= latencyBound(b-1) {
			t.Errorf("%v in bucket %d, bounds (%v, %v]", d, b, latencyBound(b-1), latencyBound(b))
		}
	}
}

// A read asks its coordinator first, then the other replicas in the cyclic
// order of IDs after the coordinator's, whatever the key's preference
// order: so in a three-node cluster each node sends all its remote reads
// to one peer (their requests share messages), and no two nodes send
// theirs to the same one.
func TestReadOrderCyclic(t *testing.T) {
	for _, tc := range []struct {
		live []string
		self string
		want []string
	}{
		{[]string{"n3", "n1", "n2"}, "n1", []string{"n1", "n2", "n3"}},
		{[]string{"n3", "n1", "n2"}, "n2", []string{"n2", "n3", "n1"}},
		{[]string{"n1", "n2", "n3"}, "n3", []string{"n3", "n1", "n2"}},
		{[]string{"n2", "n1"}, "n3", []string{"n1", "n2"}},                                              // not a replica, live IDs all before it
		{[]string{"n4", "n2", "n5"}, "n3", []string{"n4", "n5", "n2"}},                                  // not a replica
		{[]string{"b", "node10", "node2", "node1"}, "node2", []string{"node2", "b", "node1", "node10"}}, // IDs order as strings
		{[]string{"n2"}, "n2", []string{"n2"}},
		{nil, "n1", []string{}},
	} {
		got := readOrder(tc.live, tc.self)
		if !slices.Equal(got, tc.want) {
			t.Errorf("readOrder(%v, %s) = %v, want %v", tc.live, tc.self, got, tc.want)
		}
	}

	c := newTestCluster(t, three, nil)
	first := map[string]string{} // coordinator -> the peer its reads go to
	for _, id := range []string{"n1", "n2", "n3"} {
		for i := range 50 {
			order := readOrderOf(t, c.node(id), fmt.Appendf(nil, "key-%d", i))
			if len(order) != 3 || order[0] != id {
				t.Fatalf("%s: read order %v, want itself first of 3", id, order)
			}
			if prev, ok := first[id]; ok && order[1] != prev {
				t.Fatalf("%s asks %s first for one key and %s for another", id, prev, order[1])
			}
			first[id] = order[1]
		}
	}
	if first["n1"] == first["n2"] || first["n2"] == first["n3"] || first["n1"] == first["n3"] {
		t.Fatalf("remote reads go to %v: two nodes share a peer", first)
	}
}
