package node

import (
	"errors"
	"fmt"
	"testing"

	"github.com/kvs-db/kvs/lsm"
)

// TestApplyStreamed: a streamed page goes to the store as one batch, each
// record applied only if newer (of one key, the newest); the records this
// node refuses (a version too far ahead, a tombstone with a value) are
// skipped rather than failing the page.
func TestApplyStreamed(t *testing.T) {
	c := newTestCluster(t, []string{"n1"}, nil)
	n := c.node("n1")
	c.mu.Lock()
	db := c.stores["n1"]
	c.mu.Unlock()
	now := uint64(c.clock.Now().UnixMilli()) << 16
	at := func(counter uint64) lsm.Version { return lsm.Version{Counter: counter, Node: 2} }
	if _, _, err := db.Apply(lsm.Record{Key: []byte("held"), Value: []byte("new"), Version: at(now + 10)}); err != nil {
		t.Fatal(err)
	}
	far := uint64(c.clock.Now().Add(2*MaxClockAhead).UnixMilli()) << 16
	recs := []lsm.Record{
		{Key: []byte("a"), Value: []byte("1"), Version: at(now)},
		{Key: []byte("far"), Value: []byte("x"), Version: at(far)},
		{Key: []byte("held"), Value: []byte("old"), Version: at(now)},
		{Key: []byte("b"), Value: []byte("v"), Version: at(now), Tombstone: true},
		{Key: []byte("c"), Value: []byte("2"), Version: at(now + 1)},
		{Key: []byte("c"), Value: []byte("1"), Version: at(now)},
	}
	before := db.Stats()
	if err := n.applyStreamed(recs); err != nil {
		t.Fatal(err)
	}
	after := db.Stats()
	for k, want := range map[string]string{"a": "1", "held": "new", "c": "2", "far": "", "b": ""} {
		got, err := db.Get([]byte(k))
		switch {
		case want == "" && !errors.Is(err, lsm.ErrNotFound):
			t.Errorf("refused record %s stored: %q, %v", k, got.Value, err)
		case want != "" && (err != nil || string(got.Value) != want):
			t.Errorf("%s = %q, %v; want %q", k, got.Value, err, want)
		}
	}
	if a, r, g := after.Applies-before.Applies, after.Rejected-before.Rejected, after.CommitGroups-before.CommitGroups; a != 2 || r != 2 || g != 1 {
		t.Fatalf("%d applied, %d rejected in %d commits; want 2, 2 in 1", a, r, g)
	}
}

// A large batch goes to the store in commits of applyBatchRecords, so that
// a client write never waits behind a whole stream page's fsync.
func TestApplyBatchChunks(t *testing.T) {
	c := newTestCluster(t, []string{"n1"}, nil)
	n := c.node("n1")
	c.mu.Lock()
	db := c.stores["n1"]
	c.mu.Unlock()
	var recs []lsm.Record
	for i := range 2*applyBatchRecords + 10 {
		recs = append(recs, lsm.Record{Key: fmt.Appendf(nil, "k%04d", i), Value: []byte("v"), Version: lsm.Version{Counter: 1, Node: 1}})
	}
	before := db.Stats()
	if err := n.applyBatch(recs); err != nil {
		t.Fatal(err)
	}
	after := db.Stats()
	if a, g := after.Applies-before.Applies, after.CommitGroups-before.CommitGroups; a != uint64(len(recs)) || g != 3 {
		t.Fatalf("%d applied in %d commits; want %d in 3", a, g, len(recs))
	}
}
