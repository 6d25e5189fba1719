package node

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kvs-db/kvs/lsm"
)

var three = []string{"n1", "n2", "n3"}

func TestClusterPutGetDelete(t *testing.T) {
	c := newTestCluster(t, three, nil)
	ctx := ctxT(t)
	key, val := []byte("user:42"), []byte("hello")

	v, err := c.node("n1").Put(ctx, key, val, WriteOptions{})
	if err != nil {
		t.Fatalf("put via n1: %v", err)
	}
	if v.Node != NodeHash("n1") {
		t.Errorf("version node = %d, want NodeHash(n1) = %d", v.Node, NodeHash("n1"))
	}
	for _, id := range []string{"n2", "n3", "n1"} {
		rec, err := c.node(id).Get(ctx, key, ReadOptions{})
		if err != nil {
			t.Fatalf("get via %s: %v", id, err)
		}
		if !bytes.Equal(rec.Value, val) || rec.Version != v {
			t.Errorf("get via %s = %q %v, want %q %v", id, rec.Value, rec.Version, val, v)
		}
	}

	dv, err := c.node("n2").Delete(ctx, key, WriteOptions{})
	if err != nil {
		t.Fatalf("delete via n2: %v", err)
	}
	if !v.Less(dv) {
		t.Errorf("delete version %v not after put version %v", dv, v)
	}
	for _, id := range three {
		if _, err := c.node(id).Get(ctx, key, ReadOptions{}); !errors.Is(err, ErrNotFound) {
			t.Errorf("get via %s after delete: err = %v, want ErrNotFound", id, err)
		}
	}
	// Every replica ends up holding the tombstone.
	waitFor(t, 5*time.Second, "tombstone on every replica", func() bool {
		for _, id := range three {
			rec, err := c.node(id).LocalGet(key)
			if err != nil || !rec.Tombstone || rec.Version != dv {
				return false
			}
		}
		return true
	})
	if _, err := c.node("n3").Get(ctx, []byte("never-written"), ReadOptions{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("get of a missing key: err = %v, want ErrNotFound", err)
	}
	// Accepted writes are on the change feed.
	var ops []string
	for _, e := range c.net.Events() {
		ops = append(ops, e.Op)
	}
	if fmt.Sprint(ops) != "[put delete]" {
		t.Errorf("events = %v, want [put delete]", ops)
	}
}

// The change feed carries every key exactly: key_b64 always, key as text
// only when it is valid UTF-8 (encoding/json would replace the invalid
// bytes with U+FFFD, so that two keys could show as one).
func TestChangeFeedKeys(t *testing.T) {
	c := newTestCluster(t, three, nil)
	ctx := ctxT(t)
	keys := [][]byte{[]byte("user:42"), {0xff, 0xfe, 'k'}, []byte("caf\xc3\xa9"), {'a', 0, 0x80}}
	for _, k := range keys {
		if _, err := c.node("n1").Put(ctx, k, []byte("v"), WriteOptions{}); err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
	}
	evs := c.net.Events()
	if len(evs) != len(keys) {
		t.Fatalf("%d events, want %d", len(evs), len(keys))
	}
	for i, e := range evs {
		var got map[string]any
		if err := json.Unmarshal(e.Msg, &got); err != nil {
			t.Fatalf("event %s: %v", e.Msg, err)
		}
		b, err := base64.StdEncoding.DecodeString(fmt.Sprint(got["key_b64"]))
		if err != nil || !bytes.Equal(b, keys[i]) {
			t.Errorf("event %s: key_b64 decodes to %q (%v), want %q", e.Msg, b, err, keys[i])
		}
		text, hasText := got["key"]
		if utf8.Valid(keys[i]) != hasText || (hasText && text != string(keys[i])) {
			t.Errorf("event %s: key = %q (present %v) for key %q", e.Msg, text, hasText, keys[i])
		}
		if got["op"] != "put" || got["node"] != "n1" || got["version"] == "" {
			t.Errorf("event %s: op, node or version missing", e.Msg)
		}
	}
}

// A client writes one key 1000 times in sequence, each time through the next
// node, and reads back its last value through yet another node after every
// write. The manual clock never moves, so only the HLC and the re-stamp rule
// order the writes.
func TestClusterSequentialWritesThroughEveryNode(t *testing.T) {
	c := newTestCluster(t, three, nil)
	ctx := ctxT(t)
	key := []byte("counter")
	var last lsm.Version
	for i := range 1000 {
		val := fmt.Appendf(nil, "v%d", i)
		v, err := c.node(three[i%3]).Put(ctx, key, val, WriteOptions{})
		if err != nil {
			t.Fatalf("write %d via %s: %v", i, three[i%3], err)
		}
		if !last.Less(v) {
			t.Fatalf("write %d got version %v, not after the previous %v", i, v, last)
		}
		last = v
		reader := three[(i+1)%3]
		rec, err := c.node(reader).Get(ctx, key, ReadOptions{})
		if err != nil || !bytes.Equal(rec.Value, val) {
			t.Fatalf("after write %d, get via %s = %q, %v; want %q", i, reader, rec.Value, err, val)
		}
	}
	for _, id := range three {
		rec, err := c.node(id).Get(ctx, key, ReadOptions{})
		if err != nil || string(rec.Value) != "v999" {
			t.Errorf("final get via %s = %q, %v; want v999", id, rec.Value, err)
		}
	}
}

func TestClusterNodeDownAndHandoff(t *testing.T) {
	for _, mode := range []string{"stopped", "paused"} {
		t.Run(mode, func(t *testing.T) {
			c := newTestCluster(t, three, nil)
			ctx := ctxT(t)
			if mode == "stopped" {
				c.stop("n2")
			} else {
				// A stalled process: requests to it hang until they time out.
				c.net.Pause("n2")
			}
			c.markDown("n2")
			sent := c.net.Requests("n2")
			budget := c.node("n1").cfg.RequestTimeout / 4

			var keys [][]byte
			var versions []lsm.Version
			for i := range 300 {
				coord := []string{"n1", "n3"}[i%2]
				key := fmt.Appendf(nil, "k%03d", i)
				start := time.Now()
				v, err := c.node(coord).Put(ctx, key, key, WriteOptions{W: 2})
				if err != nil {
					t.Fatalf("put %s via %s with n2 down: %v", key, coord, err)
				}
				if d := time.Since(start); d > budget {
					t.Errorf("put %s took %v, want well under RequestTimeout", key, d)
				}
				start = time.Now()
				rec, err := c.node(coord).Get(ctx, key, ReadOptions{R: 2})
				if err != nil || !bytes.Equal(rec.Value, key) {
					t.Fatalf("get %s via %s with n2 down = %q, %v", key, coord, rec.Value, err)
				}
				if d := time.Since(start); d > budget {
					t.Errorf("get %s took %v, want well under RequestTimeout", key, d)
				}
				keys, versions = append(keys, key), append(versions, v)
			}
			if got := c.net.Requests("n2"); got != sent {
				t.Errorf("%d requests sent to n2 while gossip showed it down, want 0", got-sent)
			}
			// Hints: in a 3-node cluster the coordinator keeps them.
			waitFor(t, 5*time.Second, "hints stored", func() bool {
				return c.node("n1").hints.pendingByTarget()["n2"]+c.node("n3").hints.pendingByTarget()["n2"] == len(keys)
			})
			st := c.node("n1").Status()
			if m := st.Members[1]; m.ID != "n2" || m.Alive || m.HintsPending != 150 {
				t.Errorf("n1's status of n2 = %+v, want down with 150 hints", m)
			}

			// W = 3 cannot be met with n2 down: a fast ErrQuorum.
			start := time.Now()
			_, err := c.node("n1").Put(ctx, []byte("w3"), []byte("x"), WriteOptions{W: 3})
			if !errors.Is(err, ErrQuorum) {
				t.Errorf("put W=3 with n2 down: err = %v, want ErrQuorum", err)
			}
			if _, err := c.node("n1").Get(ctx, []byte("k000"), ReadOptions{R: 3}); !errors.Is(err, ErrQuorum) {
				t.Errorf("get R=3 with n2 down: err = %v, want ErrQuorum", err)
			}
			if d := time.Since(start); d > budget {
				t.Errorf("W=3/R=3 failures took %v, want fast", d)
			}

			// Bring n2 back: it catches up from the hints.
			if mode == "stopped" {
				c.start("n2")
			} else {
				c.net.Resume("n2")
			}
			c.waitConverged()
			waitFor(t, 10*time.Second, "n2 caught up by handoff", func() bool {
				for i, key := range keys {
					rec, err := c.node("n2").LocalGet(key)
					if err != nil || rec.Version != versions[i] {
						return false
					}
				}
				return true
			})
			waitFor(t, 5*time.Second, "hints deleted after delivery", func() bool {
				return c.node("n1").hints.total()+c.node("n3").hints.total() == 0
			})
			// And the cluster works at W = 3 again.
			if _, err := c.node("n2").Put(ctx, []byte("w3"), []byte("x"), WriteOptions{W: 3}); err != nil {
				t.Errorf("put W=3 after n2's return: %v", err)
			}
		})
	}
}

// A replica that fails a request (not yet seen down by gossip) gets a hint.
func TestClusterFailedReplicaGetsHint(t *testing.T) {
	c := newTestCluster(t, three, nil)
	ctx := ctxT(t)
	c.net.Stop("n3") // n3 still looks alive to gossip: requests fail at once
	if _, err := c.node("n1").Put(ctx, []byte("k"), []byte("v"), WriteOptions{}); err != nil {
		t.Fatalf("put: %v", err)
	}
	waitFor(t, 5*time.Second, "hint for n3", func() bool { return c.node("n1").hints.pendingByTarget()["n3"] == 1 })
	c.net.Start("n3")
	waitFor(t, 5*time.Second, "n3 has the key", func() bool {
		rec, err := c.node("n3").LocalGet([]byte("k"))
		return err == nil && string(rec.Value) == "v"
	})
	waitFor(t, 5*time.Second, "hint deleted", func() bool { return c.node("n1").hints.total() == 0 })
}

// With a fourth node, the hint for a down replica goes to the next healthy
// node past the key's preference list, which hands it over later.
func TestClusterSloppyHintOnNextNode(t *testing.T) {
	ids := []string{"n1", "n2", "n3", "n4"}
	c := newTestCluster(t, ids, nil)
	ctx := ctxT(t)
	r := c.node("n1").view().place.Current
	key := []byte("sloppy")
	all := r.PreferenceList(key, 4)
	target, holder := all[1], all[3] // a replica to take down, the node past the list
	coord := all[0]
	c.stop(target)
	c.markDown(target)
	if _, err := c.node(coord).Put(ctx, key, []byte("v"), WriteOptions{}); err != nil {
		t.Fatalf("put: %v", err)
	}
	waitFor(t, 5*time.Second, "hint on "+holder, func() bool {
		return c.node(holder).hints.pendingByTarget()[target] == 1
	})
	if n := c.node(coord).hints.total(); n != 0 {
		t.Errorf("coordinator %s keeps %d hints, want 0 (forwarded)", coord, n)
	}
	c.start(target)
	c.waitConverged()
	waitFor(t, 5*time.Second, target+" has the key", func() bool {
		rec, err := c.node(target).LocalGet(key)
		return err == nil && string(rec.Value) == "v"
	})
	waitFor(t, 5*time.Second, "hint deleted", func() bool { return c.node(holder).hints.total() == 0 })
}

func TestClusterReadRepair(t *testing.T) {
	c := newTestCluster(t, three, nil)
	ctx := ctxT(t)
	key := []byte("rr")
	if _, err := c.node("n1").Put(ctx, key, []byte("old"), WriteOptions{W: 3}); err != nil {
		t.Fatal(err)
	}
	// n1 and n2 get a newer write that n3 misses; a second key is missing on
	// n3 altogether.
	newer := lsm.Record{Key: key, Value: []byte("new"), Version: lsm.Version{Counter: c.node("n1").clock.now(), Node: NodeHash("n1")}}
	missing := lsm.Record{Key: []byte("rr-missing"), Value: []byte("m"), Version: newer.Version}
	for _, id := range []string{"n1", "n2"} {
		for _, rec := range []lsm.Record{newer, missing} {
			if _, applied, err := c.node(id).LocalApply(rec); err != nil || !applied {
				t.Fatalf("local apply on %s: %v %v", id, applied, err)
			}
		}
	}
	for _, k := range [][]byte{key, missing.Key} {
		rec, err := c.node("n3").Get(ctx, k, ReadOptions{R: 3})
		if err != nil || rec.Version != newer.Version {
			t.Fatalf("get %s = %v, %v; want version %v", k, rec.Version, err, newer.Version)
		}
	}
	waitFor(t, 5*time.Second, "n3 repaired", func() bool {
		a, err1 := c.node("n3").LocalGet(key)
		b, err2 := c.node("n3").LocalGet(missing.Key)
		return err1 == nil && err2 == nil && string(a.Value) == "new" && string(b.Value) == "m"
	})
}

func TestClusterBadRequests(t *testing.T) {
	c := newTestCluster(t, three, nil)
	ctx := ctxT(t)
	n := c.node("n1")
	for _, tc := range []struct {
		name string
		err  error
		do   func() error
	}{
		{"empty key", ErrInvalidKey, func() error { _, err := n.Put(ctx, nil, []byte("v"), WriteOptions{}); return err }},
		{"long key", ErrInvalidKey, func() error {
			_, err := n.Put(ctx, make([]byte, MaxKeyBytes+1), nil, WriteOptions{})
			return err
		}},
		{"long key get", ErrInvalidKey, func() error { _, err := n.Get(ctx, make([]byte, MaxKeyBytes+1), ReadOptions{}); return err }},
		{"empty key delete", ErrInvalidKey, func() error { _, err := n.Delete(ctx, []byte{}, WriteOptions{}); return err }},
		{"value too large", ErrValueTooLarge, func() error {
			_, err := n.Put(ctx, []byte("k"), make([]byte, DefaultMaxValueBytes+1), WriteOptions{})
			return err
		}},
		{"W too large", ErrInvalidQuorum, func() error { _, err := n.Put(ctx, []byte("k"), nil, WriteOptions{W: 4}); return err }},
		{"W negative", ErrInvalidQuorum, func() error { _, err := n.Delete(ctx, []byte("k"), WriteOptions{W: -1}); return err }},
		{"R too large", ErrInvalidQuorum, func() error { _, err := n.Get(ctx, []byte("k"), ReadOptions{R: 4}); return err }},
		{"local apply zero version", ErrMalformed, func() error { _, _, err := n.LocalApply(lsm.Record{Key: []byte("k")}); return err }},
	} {
		if err := tc.do(); !errors.Is(err, tc.err) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.err)
		}
	}
	// Largest key and value are fine.
	if _, err := n.Put(ctx, bytes.Repeat([]byte("k"), MaxKeyBytes), make([]byte, DefaultMaxValueBytes), WriteOptions{}); err != nil {
		t.Errorf("put of the largest key and value: %v", err)
	}
}

// A malformed internal message gets an error reply and changes nothing.
func TestReplicaMalformedMessage(t *testing.T) {
	c := newTestCluster(t, three, nil)
	ctx := ctxT(t)
	peer := c.net.Transport("prober")
	// A version 1<<30 ticks (about 16 s of wall clock) ahead of n1's clock:
	// accepted, and n1's clock moves past it.
	good := lsm.Record{Key: []byte("k"), Value: []byte("v"), Version: lsm.Version{Counter: c.node("n1").clock.now() + 1<<30, Node: 7}}
	put := encodePut(c.node("n1").epoch(), &good)
	for _, tc := range []struct {
		name, op string
		req      []byte
	}{
		{"empty", OpPut, nil},
		{"garbage", OpPut, []byte("garbage")},
		{"truncated", OpPut, put[:len(put)-1]},
		{"trailing", OpPut, append(bytes.Clone(put), 0)},
		{"wrong type", OpPut, encodeGet(1, []byte("k"))},
		{"tombstone with value", OpPut, encodePut(1, &lsm.Record{Key: []byte("k"), Value: []byte("v"), Version: good.Version, Tombstone: true})},
		{"zero version", OpPut, encodePut(1, &lsm.Record{Key: []byte("k"), Value: []byte("v")})},
		{"long key", OpPut, encodePut(1, &lsm.Record{Key: make([]byte, MaxKeyBytes+1), Version: good.Version})},
		{"huge value", OpPut, encodePut(1, &lsm.Record{Key: []byte("k"), Value: make([]byte, DefaultMaxValueBytes+1), Version: good.Version})},
		{"version from the future", OpPut, encodePut(1, &lsm.Record{Key: []byte("k"), Version: lsm.Version{Counter: math.MaxUint64}})},
		{"get garbage", OpGet, []byte{msgGet, 0xff}},
		{"get empty key", OpGet, []byte{msgGet, 1, 0}},
		{"hint garbage", OpHint, []byte{msgHint, 5, 'x'}},
		{"hint bad target", OpHint, encodeHint("a.b", &good)},
		{"hint for a stranger", OpHint, encodeHint("stranger", &good)},
		{"roots garbage", OpRoots, []byte{msgRoots, 2, 'n', '2', 1}},
		{"roots bad from", OpRoots, encodeRoots(1, "a b", nil, nil)},
		{"roots unshared range", OpRoots, encodeRoots(1, "n2", []uint64{12345}, []uint64{0})},
		{"leaves garbage", OpLeaves, []byte{msgLeaves}},
		{"keys garbage", OpKeys, []byte{msgKeys, 1}},
		{"stream garbage", OpStream, []byte{0x06, 1}},
		{"batch garbage", OpBatch, []byte{msgBatch, 5, 1}},
		{"batch of none", OpBatch, []byte{msgBatch, 0}},
		{"batch with an empty message", OpBatch, []byte{msgBatch, 2, 1, msgOK, 0}},
		{"batch count past the end", OpBatch, []byte{msgBatch, 3, 1, msgOK}},
		{"batch trailing", OpBatch, append(encodeBatch([][]byte{put, put}), 0)},
		{"batch reply as request", OpBatch, encodeBatchReply([][]byte{put})},
	} {
		rep, err := peer.Request(ctx, "n1", tc.op, tc.req)
		if err != nil {
			t.Fatalf("%s: request: %v", tc.name, err)
		}
		if len(rep) == 0 || rep[0] != msgError {
			t.Errorf("%s: reply %x, want an error reply", tc.name, rep)
		}
	}
	if _, err := c.node("n1").LocalGet([]byte("k")); !errors.Is(err, ErrNotFound) {
		t.Errorf("after malformed puts, n1 holds k: err = %v", err)
	}
	if n := c.node("n1").hints.total(); n != 0 {
		t.Errorf("after malformed hints, n1 holds %d hints", n)
	}
	// The well-formed request works.
	rep, err := peer.Request(ctx, "n1", OpPut, put)
	if err != nil {
		t.Fatal(err)
	}
	if held, applied, err := decodeAck(rep); err != nil || !applied || held != good.Version {
		t.Errorf("good put: ack %v %v %v", held, applied, err)
	}
	// A record seen on the wire advances the clock past it.
	if c := c.node("n1").clock.now(); c <= good.Version.Counter {
		t.Errorf("clock %d not past the observed %d", c, good.Version.Counter)
	}
}

// A batch is served request by request: each gets the reply it would get
// alone, in order, and one request's refusal (stale epoch, malformed,
// nested batch) does not touch its neighbours.
func TestReplicaBatch(t *testing.T) {
	c := newTestCluster(t, three, nil)
	ctx := ctxT(t)
	n1 := c.node("n1")
	peer := c.net.Transport("prober")
	epoch := n1.epoch()
	if epoch == 0 {
		t.Fatal("n1 has no epoch")
	}
	rec := func(k string) lsm.Record {
		return lsm.Record{Key: []byte(k), Value: []byte("v-" + k), Version: lsm.Version{Counter: n1.clock.now(), Node: 7}}
	}
	aOlder := rec("a")
	aOlder.Value = []byte("older")
	a, b, old := rec("a"), rec("b"), rec("old")
	a.Version.Counter++
	c1, c2 := rec("c"), rec("c")
	c2.Version.Counter++
	if _, _, err := n1.LocalApply(a); err != nil {
		t.Fatal(err)
	}
	msgs := [][]byte{
		encodePut(epoch, &b),          // applied
		encodePut(epoch-1, &old),      // stale: refused
		encodeGet(epoch, []byte("a")), // found
		encodePut(epoch, &lsm.Record{Key: []byte("z"), Value: []byte("v")}), // zero version: refused
		encodeBatch([][]byte{encodeGet(epoch, []byte("a"))}),                // nested batch: refused
		encodeGet(epoch, []byte("none")),                                    // not found
		encodeHint("stranger", &b),                                          // not a member: refused
		encodePut(epoch, &aOlder),                                           // older than a, held: not applied, acked with a's version
		encodePut(epoch, &c1),                                               // loses to c2 in the same batch: acked with c2's version
		encodePut(epoch, &c2),                                               // applied
	}
	rep, err := peer.Request(ctx, "n1", OpBatch, encodeBatch(msgs))
	if err != nil {
		t.Fatal(err)
	}
	reps, err := decodeBatchReply(rep, len(msgs))
	if err != nil {
		t.Fatalf("batch reply: %v", err)
	}
	if held, applied, err := decodeAck(reps[0]); err != nil || !applied || held != b.Version {
		t.Errorf("put b: ack %v %v %v", held, applied, err)
	}
	var se *StaleError
	if _, _, err := decodeAck(reps[1]); !errors.As(err, &se) || se.Epoch != epoch {
		t.Errorf("stale put: %v, want a stale refusal at epoch %d", err, epoch)
	}
	if got, found, err := decodeGetReply(reps[2]); err != nil || !found || !sameRecord(got, a) {
		t.Errorf("get a: %+v %v %v", got, found, err)
	}
	var re *RemoteError
	for _, i := range []int{3, 4, 6} {
		if _, _, err := decodeAck(reps[i]); !errors.As(err, &re) {
			t.Errorf("request %d: reply %x, want an error reply", i, reps[i])
		}
	}
	if _, found, err := decodeGetReply(reps[5]); err != nil || found {
		t.Errorf("get none: found %v, %v", found, err)
	}
	if held, applied, err := decodeAck(reps[7]); err != nil || applied || held != a.Version {
		t.Errorf("put of a older than held: ack %v %v %v, want a's %v, not applied", held, applied, err, a.Version)
	}
	if held, applied, err := decodeAck(reps[8]); err != nil || applied || held != c2.Version {
		t.Errorf("put c1, older than c2 in the same batch: ack %v %v %v, want c2's %v, not applied", held, applied, err, c2.Version)
	}
	if held, applied, err := decodeAck(reps[9]); err != nil || !applied || held != c2.Version {
		t.Errorf("put c2: ack %v %v %v", held, applied, err)
	}
	if got, err := n1.LocalGet([]byte("c")); err != nil || !sameRecord(got, c2) {
		t.Errorf("n1's c = %+v, %v; want c2", got, err)
	}
	if got, err := n1.LocalGet([]byte("a")); err != nil || !sameRecord(got, a) {
		t.Errorf("n1's a = %+v, %v; want a, not the older put", got, err)
	}
	if got, err := n1.LocalGet([]byte("b")); err != nil || !sameRecord(got, b) {
		t.Errorf("n1's b = %+v, %v", got, err)
	}
	for _, k := range []string{"old", "z"} {
		if _, err := n1.LocalGet([]byte(k)); !errors.Is(err, ErrNotFound) {
			t.Errorf("refused %s stored: %v", k, err)
		}
	}
}

// A coordinator whose clock is behind a write it never saw re-stamps its own
// write once, so that the later write wins.
func TestClusterRestampWhenClockBehind(t *testing.T) {
	c := newTestCluster(t, three, nil)
	ctx := ctxT(t)
	key := []byte("race")
	// n1 writes while cut off from n3, so n3's clock never sees n1's
	// versions; many writes move n1's counter well ahead.
	c.net.Partition("n1", "n3")
	var v1 lsm.Version
	for i := range 20 {
		var err error
		if v1, err = c.node("n1").Put(ctx, fmt.Appendf(nil, "other%d", i), []byte("x"), WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.node("n1").Put(ctx, key, []byte("first"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if c.node("n3").clock.now() > v1.Counter {
		t.Skip("n3's clock already past n1's writes; the scenario did not arise")
	}
	// n3 now writes the key: its first stamp is below "first"'s; n2 reports
	// the newer version, and n3 re-stamps above it.
	v2, err := c.node("n3").Put(ctx, key, []byte("second"), WriteOptions{})
	if err != nil {
		t.Fatalf("put via n3: %v", err)
	}
	if v2.Counter <= v1.Counter {
		t.Errorf("re-stamped version %v not above n1's %v", v2, v1)
	}
	if got := counterValue(t, c.node("n3").met.restamps); got != 1 {
		t.Errorf("restamps = %v, want 1", got)
	}
	c.net.Heal("n1", "n3")
	for _, id := range three {
		rec, err := c.node(id).Get(ctx, key, ReadOptions{})
		if err != nil || string(rec.Value) != "second" {
			t.Errorf("get via %s = %q, %v; want second", id, rec.Value, err)
		}
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// Acknowledged writes survive: one node is killed mid-stream and restarted,
// then all three lose power at once. Every write that was acknowledged is
// read back from every node, and every replica ends up holding it.
func TestClusterPowerLossKeepsAcknowledgedWrites(t *testing.T) {
	c := newTestCluster(t, three, nil)
	ctx := ctxT(t)
	type ack struct {
		key []byte
		v   lsm.Version
	}
	var mu sync.Mutex
	var acked []ack
	writers := func(from, to int) {
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := from; i < to; i++ {
					key := fmt.Appendf(nil, "w%d-%03d", w, i)
					coord := c.node(three[(w+i)%3])
					if coord == nil {
						continue // that node is down: the client tries another one next time
					}
					v, err := coord.Put(ctx, key, key, WriteOptions{})
					if err != nil {
						continue // not acknowledged: no promise made
					}
					mu.Lock()
					acked = append(acked, ack{key, v})
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	writers(0, 25)
	c.crash("n2")
	writers(25, 50)
	c.start("n2")
	c.waitConverged()
	writers(50, 75)
	for _, id := range three {
		c.crash(id)
	}
	for _, id := range three {
		c.start(id)
	}
	c.waitConverged()
	if len(acked) < 200 {
		t.Fatalf("only %d of 300 writes acknowledged", len(acked))
	}
	for _, id := range three {
		for _, a := range acked {
			rec, err := c.node(id).Get(ctx, a.key, ReadOptions{})
			if err != nil || rec.Version != a.v {
				t.Fatalf("acknowledged %s %v: get via %s = %v, %v", a.key, a.v, id, rec.Version, err)
			}
		}
	}
	waitFor(t, 10*time.Second, "every replica holds every acknowledged write", func() bool {
		for _, id := range three {
			for _, a := range acked {
				if rec, err := c.node(id).LocalGet(a.key); err != nil || rec.Version != a.v {
					return false
				}
			}
		}
		return true
	})
}

// Concurrent writers of one key through every node: the replicas converge on
// one version, the newest acknowledged, and every node reads it.
func TestClusterConcurrentWritersConverge(t *testing.T) {
	c := newTestCluster(t, three, nil)
	ctx := ctxT(t)
	key := []byte("contended")
	var mu sync.Mutex
	var newest lsm.Version
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				v, err := c.node(three[(w+i)%3]).Put(ctx, key, fmt.Appendf(nil, "w%d-%d", w, i), WriteOptions{})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if newest.Less(v) {
					newest = v
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	waitFor(t, 5*time.Second, "replicas converged on the newest acknowledged version", func() bool {
		for _, id := range three {
			if rec, err := c.node(id).LocalGet(key); err != nil || rec.Version != newest {
				return false
			}
		}
		return true
	})
	for _, id := range three {
		if rec, err := c.node(id).Get(ctx, key, ReadOptions{}); err != nil || rec.Version != newest {
			t.Errorf("get via %s = %v, %v; want %v", id, rec.Version, err, newest)
		}
	}
}

// An asymmetric partition: n1 cannot reach n2, n3 can. Writes through either
// succeed; n1 keeps hints for n2 and hands them over when the link heals.
func TestClusterPartitionedReplica(t *testing.T) {
	c := newTestCluster(t, three, nil)
	ctx := ctxT(t)
	c.net.Partition("n1", "n2")
	c.clock.Advance(2 * time.Second)
	waitFor(t, 10*time.Second, "n1 sees n2 down, n3 sees it up", func() bool {
		if c.node("n1").mem.alive("n2") {
			c.clock.Advance(2 * time.Second)
			return false
		}
		return c.node("n1").mem.alive("n3") && c.node("n3").mem.alive("n2") && c.node("n3").mem.alive("n1")
	})
	for i := range 20 {
		coord := []string{"n1", "n3"}[i%2]
		if _, err := c.node(coord).Put(ctx, fmt.Appendf(nil, "p%02d", i), []byte("v"), WriteOptions{}); err != nil {
			t.Fatalf("put via %s: %v", coord, err)
		}
	}
	// Hints are stored in the background of the writes.
	waitFor(t, 5*time.Second, "n1 holds hints for n2", func() bool {
		return c.node("n1").hints.pendingByTarget()["n2"] == 10
	})
	c.net.Heal("n1", "n2")
	waitFor(t, 10*time.Second, "n2 has every key", func() bool {
		for i := range 20 {
			if _, err := c.node("n2").LocalGet(fmt.Appendf(nil, "p%02d", i)); err != nil {
				return false
			}
		}
		return c.node("n1").hints.total() == 0
	})
}

// Sloppy quorum: with two of a key's three replicas down, a write fails
// with ErrQuorum at W = 2 even though a fourth node is up and takes the
// hints; only real replicas' acks count toward W.
func TestClusterHintHolderDoesNotCountTowardW(t *testing.T) {
	ids := []string{"n1", "n2", "n3", "n4"}
	c := newTestCluster(t, ids, nil)
	ctx := ctxT(t)
	key := []byte("sloppy-w")
	all := c.node("n1").view().place.Current.PreferenceList(key, 4)
	coord, holder := all[0], all[3]
	c.stop(all[1])
	c.stop(all[2])
	c.markDown(all[1], all[2])
	if _, err := c.node(coord).Put(ctx, key, []byte("v"), WriteOptions{}); !errors.Is(err, ErrQuorum) {
		t.Fatalf("put with two of three replicas down: err = %v, want ErrQuorum", err)
	}
	if _, err := c.node(coord).Put(ctx, key, []byte("v"), WriteOptions{W: 1}); err != nil {
		t.Fatalf("put at W=1: %v", err)
	}
	waitFor(t, 5*time.Second, "hints on "+holder, func() bool {
		p := c.node(holder).hints.pendingByTarget()
		return p[all[1]] == 1 && p[all[2]] == 1
	})
}
