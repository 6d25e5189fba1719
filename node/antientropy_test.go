package node

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kvs-db/kvs/lsm"
)

func TestAntiEntropyWire(t *testing.T) {
	var d [aeBuckets]uint64
	for i := range d {
		d[i] = uint64(i) * 0x9e3779b97f4a7c15
	}
	from, got, err := decodeDigest(encodeDigest("n1", &d))
	if err != nil || from != "n1" || got != d {
		t.Errorf("digest round trip: %q %v", from, err)
	}
	buckets, err := decodeDigestReply(encodeDigestReply([]int{0, 7, 255}))
	if err != nil || fmt.Sprint(buckets) != "[0 7 255]" {
		t.Errorf("digest reply round trip: %v %v", buckets, err)
	}
	var set bucketSet
	set.add(3)
	set.add(200)
	f, s2, after, err := decodeSync(encodeSync("n2", &set, []byte("k")))
	if err != nil || f != "n2" || s2 != set || string(after) != "k" || !s2.has(200) || s2.has(4) {
		t.Errorf("sync round trip: %q %v %q %v", f, s2, after, err)
	}
	entries := []aeEntry{{key: []byte("a"), v: lsm.Version{Counter: 1, Node: 2}}, {key: []byte("b"), v: lsm.Version{Counter: 3}, tomb: true}}
	es, more, err := decodeSyncReply(encodeSyncReply(entries, true))
	if err != nil || !more || len(es) != 2 || string(es[1].key) != "b" || !es[1].tomb || es[0].v != entries[0].v {
		t.Errorf("sync reply round trip: %+v %v %v", es, more, err)
	}
	for name, b := range map[string][]byte{
		"digest truncated":     encodeDigest("n1", &d)[:100],
		"digest reply order":   {msgDigestReply, 2, 5, 5},
		"digest reply range":   {msgDigestReply, 1, 0x80, 0x02},
		"sync no set":          {msgSync, 1, 'n'},
		"sync reply unordered": encodeSyncReply([]aeEntry{entries[1], entries[0]}, false),
		"sync reply count":     {msgSyncReply, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		var err error
		switch b[0] {
		case msgDigest:
			_, _, err = decodeDigest(b)
		case msgDigestReply:
			_, err = decodeDigestReply(b)
		case msgSync:
			_, _, _, err = decodeSync(b)
		case msgSyncReply:
			_, _, err = decodeSyncReply(b)
		}
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzDecodeAntiEntropy(f *testing.F) {
	var d [aeBuckets]uint64
	f.Add(encodeDigest("n1", &d))
	f.Add(encodeDigestReply([]int{1, 2}))
	var set bucketSet
	set.add(9)
	f.Add(encodeSync("n1", &set, []byte("after")))
	f.Add(encodeSyncReply([]aeEntry{{key: []byte("a"), v: lsm.Version{Counter: 1}}}, true))
	f.Fuzz(func(t *testing.T, b []byte) {
		if from, d, err := decodeDigest(b); err == nil {
			if f2, d2, err := decodeDigest(encodeDigest(from, &d)); err != nil || f2 != from || d2 != d {
				t.Fatalf("digest re-encoding: %v", err)
			}
		}
		if bs, err := decodeDigestReply(b); err == nil {
			if b2, err := decodeDigestReply(encodeDigestReply(bs)); err != nil || fmt.Sprint(b2) != fmt.Sprint(bs) {
				t.Fatalf("digest reply re-encoding: %v", err)
			}
		}
		if from, set, after, err := decodeSync(b); err == nil {
			if f2, s2, a2, err := decodeSync(encodeSync(from, &set, after)); err != nil || f2 != from || s2 != set || !bytes.Equal(a2, after) {
				t.Fatalf("sync re-encoding: %v", err)
			}
		}
		if es, more, err := decodeSyncReply(b); err == nil {
			if e2, m2, err := decodeSyncReply(encodeSyncReply(es, more)); err != nil || m2 != more || len(e2) != len(es) {
				t.Fatalf("sync reply re-encoding: %v", err)
			}
		}
	})
}

// n3 misses writes that nobody reads and no hint covers; anti-entropy rounds
// bring it up to date, and a round between replicas in agreement pushes
// nothing.
func TestAntiEntropyRound(t *testing.T) {
	c := newTestCluster(t, three, func(cfg *Config) { cfg.AntiEntropyInterval = -1 })
	ctx := ctxT(t)
	// Keys on every replica, then newer versions and new keys only on n1
	// and n2 (as if n3 missed them and the hints were lost).
	for i := range 300 {
		if _, err := c.node("n1").Put(ctx, fmt.Appendf(nil, "k%03d", i), []byte("old"), WriteOptions{W: 3}); err != nil {
			t.Fatal(err)
		}
	}
	if pushed, err := c.node("n1").antiEntropyRound(ctx, "n3"); err != nil || pushed != 0 {
		t.Fatalf("round between agreeing replicas: pushed %d, %v", pushed, err)
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
	// n3 holds something newer than n1 for one key: n1 must not push over it.
	newest := lsm.Record{Key: []byte("k299"), Value: []byte("n3's"), Version: lsm.Version{Counter: c.node("n3").clock.now() + 1000, Node: NodeHash("n3")}}
	if _, _, err := c.node("n3").LocalApply(newest); err != nil {
		t.Fatal(err)
	}

	c.node("n3").aePageBytes = 200 // several sync pages
	pushed, err := c.node("n1").antiEntropyRound(ctx, "n3")
	if err != nil || pushed != len(missed) {
		t.Fatalf("round: pushed %d, %v; want %d", pushed, err, len(missed))
	}
	for _, rec := range missed {
		got, err := c.node("n3").LocalGet(rec.Key)
		if err != nil || got.Version != rec.Version || got.Tombstone != rec.Tombstone {
			t.Errorf("n3 %s = %v %v, %v; want %v", rec.Key, got.Version, got.Tombstone, err, rec.Version)
		}
	}
	if got, _ := c.node("n3").LocalGet(newest.Key); got.Version != newest.Version {
		t.Errorf("n3's newer record was overwritten: %v", got.Version)
	}
	if pushed, err := c.node("n1").antiEntropyRound(ctx, "n3"); err != nil || pushed != 0 {
		t.Errorf("second round: pushed %d, %v; want 0", pushed, err)
	}
	// n3 now pushes its newer record to n1 in its own round.
	if pushed, err := c.node("n3").antiEntropyRound(ctx, "n1"); err != nil || pushed != 1 {
		t.Errorf("n3's round: pushed %d, %v; want 1", pushed, err)
	}
}

// With a 4-node ring, anti-entropy moves only keys both nodes replicate.
func TestAntiEntropySharedKeysOnly(t *testing.T) {
	ids := []string{"n1", "n2", "n3", "n4"}
	c := newTestCluster(t, ids, func(cfg *Config) { cfg.AntiEntropyInterval = -1 })
	r := c.node("n1").mem.ring()
	shared, notShared := 0, 0
	for i := range 200 {
		key := fmt.Appendf(nil, "k%03d", i)
		rec := lsm.Record{Key: key, Value: []byte("v"), Version: lsm.Version{Counter: c.node("n1").clock.now(), Node: 1}}
		if _, _, err := c.node("n1").LocalApply(rec); err != nil {
			t.Fatal(err)
		}
		if shares(r.PreferenceList(key, 3), "n1", "n2") {
			shared++
		} else {
			notShared++
		}
	}
	if shared == 0 || notShared == 0 {
		t.Fatalf("shared %d, not shared %d: pick other keys", shared, notShared)
	}
	pushed, err := c.node("n1").antiEntropyRound(ctxT(t), "n2")
	if err != nil || pushed != shared {
		t.Errorf("pushed %d, %v; want the %d shared keys", pushed, err, shared)
	}
}

// The loop runs by itself and converges a replica.
func TestAntiEntropyLoop(t *testing.T) {
	c := newTestCluster(t, three, func(cfg *Config) { cfg.AntiEntropyInterval = 20 * time.Millisecond })
	rec := lsm.Record{Key: []byte("lonely"), Value: []byte("v"), Version: lsm.Version{Counter: c.node("n1").clock.now(), Node: NodeHash("n1")}}
	if _, _, err := c.node("n1").LocalApply(rec); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "every replica has the record", func() bool {
		for _, id := range three {
			if got, err := c.node(id).LocalGet(rec.Key); err != nil || got.Version != rec.Version {
				return false
			}
		}
		return true
	})
}
