package node

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node/stream"
)

// gatedStore is a Store whose Scans wait, while the gate is shut, until it
// opens.
type gatedStore struct {
	Store
	mu      sync.Mutex
	gate    chan struct{} // nil: open
	waiting atomic.Int32
}

func (s *gatedStore) shut() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate = make(chan struct{})
}

func (s *gatedStore) open() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate != nil {
		close(s.gate)
		s.gate = nil
	}
}

func (s *gatedStore) Scan(start, end []byte, fn func(lsm.Record) bool) error {
	s.mu.Lock()
	g := s.gate
	s.mu.Unlock()
	if g != nil {
		s.waiting.Add(1)
		<-g
		s.waiting.Add(-1)
	}
	return s.Store.Scan(start, end, fn)
}

// With its MaxScanRequests slots held by scans that do not finish, a node
// refuses every further leaves, keys and stream request at once as
// overloaded, and counts it; an anti-entropy round that needs its leaves
// fails as overloaded; roots still answer. Once the scans finish, the same
// requests succeed.
func TestScanRequestsBounded(t *testing.T) {
	gs := &gatedStore{}
	c := newTestCluster(t, three, func(cfg *Config) {
		cfg.MaxScanRequests = 2
		cfg.AntiEntropyInterval = -1 // rounds run only when the test says
		if cfg.ID == "n1" {
			gs.Store = cfg.Store
			cfg.Store = gs
		}
	})
	ctx := ctxT(t)
	n1, n2 := c.node("n1"), c.node("n2")
	waitFor(t, 10*time.Second, "hash trees built", func() bool { return n1.Ready() == nil && n2.Ready() == nil && treesReady(n1, n2) })
	ts, err := n1.readyTrees()
	if err != nil {
		t.Fatal(err)
	}
	toks := sharedTokens(n1.view(), "n1", "n2")
	cells := cellSet{}
	cells.add(toks[0], 0)
	keysReq := encodeKeys(ts.epoch, "n2", nil, cells)

	gs.shut()
	t.Cleanup(gs.open) // a failed test does not leave scans waiting
	held := make(chan []byte, 2)
	for range 2 {
		go func() { held <- n1.handleKeys(keysReq) }()
	}
	waitFor(t, 10*time.Second, "both slots held by waiting scans", func() bool { return len(n1.scans) == 2 && gs.waiting.Load() >= 2 })

	for _, tc := range []struct {
		op   string
		call func() []byte
	}{
		{OpKeys, func() []byte { return n1.handleKeys(keysReq) }},
		{OpLeaves, func() []byte { return n1.handleLeaves(encodeLeaves(ts.epoch, "n2", toks[:1])) }},
		{OpStream, func() []byte {
			req := stream.Request{Epoch: ts.epoch, Gainer: "n2", Loser: "n3", MaxBytes: 1 << 10}
			return n1.handleStream(req.Encode())
		}},
	} {
		if err := replyError(tc.call()); !errors.Is(err, ErrOverloaded) {
			t.Errorf("%s with every slot held: %v, want ErrOverloaded", tc.op, err)
		}
		if got := counterValue(t, n1.met.scansRefused.WithLabelValues(tc.op)); got != 1 {
			t.Errorf("scan_requests_refused_total{op=%s} = %v, want 1", tc.op, got)
		}
	}
	if diff, err := decodeRootsReply(n1.handleRoots(encodeRoots(ts.epoch, "n2", toks, ts.trees.Roots(toks)))); err != nil || len(diff) != 0 {
		t.Errorf("roots with every slot held: %v %v, want an answer with no difference", diff, err)
	}
	// n2 holds a record n1 lacks: its round needs n1's leaves and fails as
	// overloaded, over the transport.
	rec := lsm.Record{Key: []byte("only-on-n2"), Value: []byte("v"), Version: lsm.Version{Counter: n2.clock.now(), Node: 7}}
	if _, _, err := n2.LocalApply(rec); err != nil {
		t.Fatal(err)
	}
	if _, err := n2.antiEntropyRound(ctx, "n1"); !errors.Is(err, ErrOverloaded) {
		t.Errorf("anti-entropy round with n1 overloaded: %v, want ErrOverloaded", err)
	}

	gs.open()
	for range 2 {
		if _, _, _, err := decodeKeysReply(<-held); err != nil {
			t.Errorf("a scan that held a slot: %v", err)
		}
	}
	if len(n1.scans) != 0 {
		t.Errorf("%d slots still held after the scans ended", len(n1.scans))
	}
	if _, _, _, err := decodeKeysReply(n1.handleKeys(keysReq)); err != nil {
		t.Errorf("keys once slots are free: %v", err)
	}
	st, err := n2.antiEntropyRound(ctx, "n1")
	if err != nil || st.Pushed != 1 {
		t.Errorf("anti-entropy round once slots are free: %+v, %v; want one record pushed", st, err)
	}
	if _, err := n1.LocalGet(rec.Key); err != nil {
		t.Errorf("n1 after the round: %v", err)
	}
}

func treesReady(ns ...*Node) bool {
	for _, n := range ns {
		if _, err := n.readyTrees(); err != nil {
			return false
		}
	}
	return true
}
