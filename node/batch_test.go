package node

import (
	"errors"
	"testing"

	"github.com/kvs-db/kvs/lsm"
)

// TestApplyStreamed: each record of a streamed page is applied only if
// newer; the records this node refuses (a version too far ahead, a
// tombstone with a value) are skipped.
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
	if err := n.applyStreamed(recs); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"a": "1", "held": "new", "c": "2", "far": "", "b": ""} {
		got, err := db.Get([]byte(k))
		switch {
		case want == "" && !errors.Is(err, lsm.ErrNotFound):
			t.Errorf("refused record %s stored: %q, %v", k, got.Value, err)
		case want != "" && (err != nil || string(got.Value) != want):
			t.Errorf("%s = %q, %v; want %q", k, got.Value, err, want)
		}
	}
}
