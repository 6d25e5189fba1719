package node

import (
	"errors"
	"testing"
	"time"
)

// skewedClock reads a manual clock shifted by a fixed offset: a node whose
// wall clock is wrong.
type skewedClock struct {
	c   *manualClock
	off time.Duration
}

func (s skewedClock) Now() time.Time { return s.c.Now().Add(s.off) }

// A node whose wall clock runs more than MaxClockAhead ahead has its writes
// refused. A correct node that reads or writes a key such a node holds must
// not take that node's far-future version into its own clock: if it did,
// every write it coordinates afterwards would be stamped beyond what its
// correct peers accept, and it could no longer reach W.
func TestClusterSkewedPeerDoesNotDragClock(t *testing.T) {
	c := newTestCluster(t, three, func(cfg *Config) {
		if cfg.ID == "n1" {
			cfg.Clock = skewedClock{cfg.Clock.(*manualClock), 2 * time.Hour}
		}
	})
	ctx := ctxT(t)
	// n1's write is refused by n2 and n3, but n1's own replica keeps it.
	// The refusals can settle the quorum before n1's own (synced) apply
	// returns, so wait for that apply rather than expect it done.
	if _, err := c.node("n1").Put(ctx, []byte("k"), []byte("from the future"), WriteOptions{}); !errors.Is(err, ErrQuorum) {
		t.Fatalf("put via the skewed n1: err = %v, want ErrQuorum", err)
	}
	waitFor(t, 5*time.Second, "n1's own replica to hold its refused write", func() bool {
		rec, err := c.node("n1").LocalGet([]byte("k"))
		return err == nil && string(rec.Value) == "from the future"
	})
	// n2 reads the key from every replica and then writes it.
	_, _ = c.node("n2").Get(ctx, []byte("k"), ReadOptions{R: 3})
	v, err := c.node("n2").Put(ctx, []byte("k"), []byte("now"), WriteOptions{})
	if err != nil {
		t.Fatalf("put via n2: %v", err)
	}
	limit := uint64(c.clock.Now().Add(MaxClockAhead).UnixMilli()) << 16
	if v.Counter > limit {
		t.Errorf("n2 stamped %v, beyond MaxClockAhead of its own clock", v)
	}
	// The skewed node is taken out; n2 and n3 carry on.
	c.stop("n1")
	c.markDown("n1")
	for _, id := range []string{"n2", "n3"} {
		if _, err := c.node(id).Put(ctx, []byte("other"), []byte(id), WriteOptions{}); err != nil {
			t.Errorf("put via %s with n1 out: %v", id, err)
		}
		if rec, err := c.node(id).Get(ctx, []byte("k"), ReadOptions{}); err != nil || string(rec.Value) != "now" {
			t.Errorf("get k via %s = %q, %v; want the acknowledged \"now\"", id, rec.Value, err)
		}
	}
}
