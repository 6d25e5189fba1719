package node

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node/topology"
	"github.com/kvs-db/kvs/node/wire"
)

func openTestHints(t *testing.T, dir string, clock *manualClock) *hintStore {
	t.Helper()
	return openTestHintsCapped(t, dir, clock, -1, -1)
}

func openTestHintsCapped(t *testing.T, dir string, clock *manualClock, maxTarget, maxTotal int64) *hintStore {
	t.Helper()
	db, err := openHintDB(dir, clock, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	h, err := newHintStore(db, newHLC(clock), NodeHash("holder"), maxTarget, maxTotal)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestDeleteVersion(t *testing.T) {
	for _, v := range []lsm.Version{{Counter: 5, Node: 1}, {Counter: 5, Node: math.MaxUint32}, {Counter: 5}} {
		d := deleteVersion(v)
		if !v.Less(d) {
			t.Errorf("deleteVersion(%v) = %v, not after it", v, d)
		}
		// Every later reading of the same node's clock (counter+1) still wins.
		if later := (lsm.Version{Counter: v.Counter + 1, Node: v.Node}); !d.Less(later) {
			t.Errorf("deleteVersion(%v) = %v, not before the next hint %v", v, d, later)
		}
	}
}

func TestHintStore(t *testing.T) {
	clock := newManualClock()
	dir := filepath.Join(t.TempDir(), "hints")
	h := openTestHints(t, dir, clock)
	rec := func(key string, c uint64) lsm.Record {
		return lsm.Record{Key: []byte(key), Value: []byte(key), Version: lsm.Version{Counter: c, Node: 1}}
	}
	mustAdd := func(target string, r lsm.Record, want bool) {
		t.Helper()
		stored, err := h.add(target, r)
		if err != nil || stored != want {
			t.Fatalf("add %s %s %v: stored %v, %v; want %v", target, r.Key, r.Version, stored, err, want)
		}
	}
	mustAdd("n2", rec("a", 10), true)
	mustAdd("n2", rec("b", 10), true)
	mustAdd("n3", rec("a", 10), true)
	mustAdd("n2", rec("a", 5), false)  // older than the held hint: kept as is
	mustAdd("n2", rec("a", 10), false) // the same: nothing to do
	if got := h.pendingByTarget(); got["n2"] != 2 || got["n3"] != 1 || h.total() != 3 {
		t.Fatalf("pending = %v", got)
	}

	batch, err := h.batch("n2", nil, 10)
	if err != nil || len(batch) != 2 || string(batch[0].rec.Key) != "a" || string(batch[1].rec.Key) != "b" {
		t.Fatalf("batch = %+v, %v", batch, err)
	}
	// A newer hint for a replaces the one just read; removing the old one
	// must not delete it.
	mustAdd("n2", rec("a", 20), true)
	if removed, err := h.remove(batch[0], "n2"); err != nil || removed {
		t.Fatalf("remove of a replaced hint: removed %v, %v", removed, err)
	}
	if removed, err := h.remove(batch[1], "n2"); err != nil || !removed {
		t.Fatalf("remove: removed %v, %v", removed, err)
	}
	left, err := h.batch("n2", nil, 10)
	if err != nil || len(left) != 1 || left[0].rec.Version.Counter != 20 {
		t.Fatalf("after removes: %+v, %v", left, err)
	}
	if got := h.pendingByTarget()["n2"]; got != 1 {
		t.Errorf("pending n2 = %d, want 1", got)
	}
	// Paging: after the last key there is nothing.
	if more, err := h.batch("n2", left[0].hk, 10); err != nil || len(more) != 0 {
		t.Errorf("batch after the last = %+v, %v", more, err)
	}

	// Hints survive a restart; the counts are rebuilt and the clock is past
	// every stored hint.
	if err := h.close(); err != nil {
		t.Fatal(err)
	}
	h = openTestHints(t, dir, clock)
	defer h.close()
	if got := h.pendingByTarget(); got["n2"] != 1 || got["n3"] != 1 {
		t.Errorf("after reopen, pending = %v", got)
	}
	if h.clock.now() <= left[0].version.Counter {
		t.Error("clock not past the stored hints after reopen")
	}
	if _, err := h.remove(left[0], "n2"); err != nil {
		t.Fatal(err)
	}
	if got := h.pendingByTarget()["n2"]; got != 0 {
		t.Errorf("pending n2 after the last remove = %d", got)
	}
}

// The store counts its hints in bytes per target and in all, refuses a
// hint that would pass a cap (keeping what it holds, also the older hint a
// refused replacement was for), and rebuilds the counts at open.
func TestHintStoreCaps(t *testing.T) {
	clock := newManualClock()
	dir := filepath.Join(t.TempDir(), "hints")
	rec := func(key string, c uint64, size int) lsm.Record {
		return lsm.Record{Key: []byte(key), Value: make([]byte, size), Version: lsm.Version{Counter: c, Node: 1}}
	}
	size := func(target string, r lsm.Record) int64 {
		return hintBytes(hintKey(target, r.Key), wire.AppendRecord(nil, &r))
	}
	one := size("n2", rec("k00", 1, 100)) // every hint below: a 3-byte key, 100 bytes of value
	h := openTestHintsCapped(t, dir, clock, 5*one, 8*one)
	add := func(target string, r lsm.Record) error {
		t.Helper()
		stored, err := h.add(target, r)
		if err == nil && !stored {
			t.Fatalf("add %s %s: not stored, no error", target, r.Key)
		}
		return err
	}
	check := func(what string, n2, n3 int64) {
		t.Helper()
		if got := h.targetBytes("n2"); got != n2 {
			t.Errorf("%s: n2 holds %d bytes, want %d", what, got, n2)
		}
		if got := h.targetBytes("n3"); got != n3 {
			t.Errorf("%s: n3 holds %d bytes, want %d", what, got, n3)
		}
		if got := h.totalBytes(); got != n2+n3 {
			t.Errorf("%s: %d bytes in all, want %d", what, got, n2+n3)
		}
	}
	for i := range 5 {
		if err := add("n2", rec(fmt.Sprintf("k%02d", i), 1, 100)); err != nil {
			t.Fatalf("hint %d of 5 for n2: %v", i, err)
		}
	}
	check("n2 at its cap", 5*one, 0)
	if err := add("n2", rec("k05", 1, 100)); !errors.Is(err, errHintsFull) {
		t.Fatalf("sixth hint for n2: err = %v, want errHintsFull", err)
	}
	// A newer record of a held key that does not grow the hint replaces it;
	// one that grows it past the cap is refused, and the held one stays.
	if err := add("n2", rec("k00", 2, 100)); err != nil {
		t.Fatalf("same-size replacement at the cap: %v", err)
	}
	if err := add("n2", rec("k01", 2, 101)); !errors.Is(err, errHintsFull) {
		t.Fatalf("growing replacement at the cap: err = %v, want errHintsFull", err)
	}
	if b, _ := h.batch("n2", hintKey("n2", []byte("k00")), 1); len(b) != 1 || b[0].rec.Version.Counter != 1 || len(b[0].rec.Value) != 100 {
		t.Fatalf("k01 after a refused replacement = %+v, want the held hint", b)
	}
	check("after replacements", 5*one, 0)
	// The total cap: n3 gets what is left of it.
	for i := range 3 {
		if err := add("n3", rec(fmt.Sprintf("k%02d", i), 1, 100)); err != nil {
			t.Fatalf("hint %d of 3 for n3: %v", i, err)
		}
	}
	if err := add("n3", rec("k03", 1, 100)); !errors.Is(err, errHintsFull) {
		t.Fatalf("hint past the total cap: err = %v, want errHintsFull", err)
	}
	check("at the total cap", 5*one, 3*one)
	// Removing frees room; removing the same hint twice frees it once.
	b, err := h.batch("n2", nil, 1)
	if err != nil || len(b) != 1 {
		t.Fatal(b, err)
	}
	for i, want := range []bool{true, false} {
		if removed, err := h.remove(b[0], "n2"); err != nil || removed != want {
			t.Fatalf("remove #%d: %v, %v; want %v", i+1, removed, err, want)
		}
	}
	check("after a remove", 4*one, 3*one)
	if err := add("n3", rec("k03", 1, 100)); err != nil {
		t.Fatalf("hint after a remove freed room: %v", err)
	}
	check("after the room was used", 4*one, 4*one)

	if err := h.close(); err != nil {
		t.Fatal(err)
	}
	h = openTestHintsCapped(t, dir, clock, 5*one, 8*one)
	defer h.close()
	check("after reopen", 4*one, 4*one)
	if got := h.pendingByTarget(); got["n2"] != 4 || got["n3"] != 4 {
		t.Errorf("after reopen, pending = %v", got)
	}
	if err := add("n3", rec("k04", 1, 100)); !errors.Is(err, errHintsFull) {
		t.Errorf("after reopen, hint past the total cap: err = %v, want errHintsFull", err)
	}
}

func TestSplitHintKey(t *testing.T) {
	target, key, ok := splitHintKey(hintKey("n2", []byte("a\x00b")))
	if !ok || target != "n2" || string(key) != "a\x00b" {
		t.Errorf("split = %q %q %v", target, key, ok)
	}
	for _, bad := range []string{"", "\x00k", "n2\x00", "n2"} {
		if _, _, ok := splitHintKey([]byte(bad)); ok {
			t.Errorf("split(%q) ok", bad)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	base := func() Config {
		return Config{ID: "n1", DataDir: t.TempDir(), Store: nopStore{}, Transport: NewMemNetwork().Transport("n1"),
			Topology: topology.NewMemStore()}
	}
	c := base()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Cluster != "kvs" || c.N != 3 || c.W != 2 || c.R != 2 || c.VNodes != 100 ||
		c.GossipInterval != DefaultGossipInterval || c.DownAfter != 3*DefaultGossipInterval ||
		c.RequestTimeout != DefaultRequestTimeout || c.MaxValueBytes != DefaultMaxValueBytes ||
		c.Clock == nil || c.Logger == nil {
		t.Errorf("defaults = %+v", c)
	}
	if c.MaxHintBytesPerTarget != 64<<20 || c.MaxHintBytes != 256<<20 || c.HintWindow != 3*time.Hour || c.MaxScanRequests != 4 {
		t.Errorf("bounds: %d bytes of hints per target, %d in all, window %v, %d scans; want 64 MiB, 256 MiB, 3h, 4",
			c.MaxHintBytesPerTarget, c.MaxHintBytes, c.HintWindow, c.MaxScanRequests)
	}
	single := base()
	single.N = 1
	if err := single.Validate(); err != nil || single.W != 1 || single.R != 1 {
		t.Errorf("N=1: W=%d R=%d err=%v", single.W, single.R, err)
	}
	for name, mod := range map[string]func(*Config){
		"no ID":          func(c *Config) { c.ID = "" },
		"ID with dot":    func(c *Config) { c.ID = "a.b" },
		"ID with space":  func(c *Config) { c.ID = "a b" },
		"cluster with >": func(c *Config) { c.Cluster = "a>" },
		"N too big":      func(c *Config) { c.N = 17 },
		"W over N":       func(c *Config) { c.N, c.W = 3, 4 },
		"R negative":     func(c *Config) { c.R = -1 },
		"VNodes":         func(c *Config) { c.VNodes = -1 },
		"DownAfter":      func(c *Config) { c.GossipInterval, c.DownAfter = 10, 5 },
		"MaxValueBytes":  func(c *Config) { c.MaxValueBytes = DefaultMaxValueBytes + 1 },
		"NeedPeers":      func(c *Config) { c.NeedPeers = -1 },
		"no DataDir":     func(c *Config) { c.DataDir = "" },
		"no Store":       func(c *Config) { c.Store = nil },
		"no Transport":   func(c *Config) { c.Transport = nil },
		"no Topology":    func(c *Config) { c.Topology = nil },
		"StreamFallback": func(c *Config) { c.StreamFallbackAfter = -1 },
	} {
		c := base()
		mod(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", name, err)
		}
	}
}

type nopStore struct{}

func (nopStore) Apply(lsm.Record) (lsm.Version, bool, error)                    { return lsm.Version{}, false, nil }
func (nopStore) ApplyBatch([]lsm.Record) (int, error)                           { return 0, nil }
func (nopStore) ApplyBatchResults([]lsm.Record, []lsm.ApplyResult) (int, error) { return 0, nil }
func (nopStore) Get([]byte) (lsm.Record, error)                                 { return lsm.Record{}, lsm.ErrNotFound }
func (nopStore) Scan([]byte, []byte, func(lsm.Record) bool) error               { return nil }
func (nopStore) Purge([]byte, lsm.Version) (bool, error)                        { return false, nil }
func (nopStore) ScanAt([]byte, []byte, func(), func(lsm.Record) bool) error     { return nil }

// dropped returns n's count of hints dropped for reason.
func dropped(t *testing.T, n *Node, reason string) float64 {
	t.Helper()
	return counterValue(t, n.met.hintsDropped.WithLabelValues(reason))
}

// waitAlive waits until every pair of ids sees each other alive (after the
// manual clock jumped, until the next heartbeats land).
func (c *testCluster) waitAlive(ids ...string) {
	c.t.Helper()
	waitFor(c.t, 10*time.Second, fmt.Sprintf("%v alive", ids), func() bool {
		for _, a := range ids {
			for _, b := range ids {
				if !c.node(a).mem.alive(b) {
					return false
				}
			}
		}
		return true
	})
}

// A flood of hints, from a peer or from anyone who can publish on the bus,
// stops at the caps: per target, then in all. Hints over a cap are refused
// and counted, and those already held are delivered once their targets
// return.
func TestHintFloodStopsAtCap(t *testing.T) {
	const perTarget, total = 16 << 10, 24 << 10
	c := newTestCluster(t, three, func(cfg *Config) { cfg.MaxHintBytesPerTarget, cfg.MaxHintBytes = perTarget, total })
	ctx := ctxT(t)
	n1 := c.node("n1")
	prober := c.net.Transport("prober")
	flood := func(target string, count int) (kept, refused int) {
		t.Helper()
		for i := range count {
			r := lsm.Record{Key: fmt.Appendf(nil, "flood-%s-%04d", target, i), Value: make([]byte, 1000),
				Version: lsm.Version{Counter: n1.clock.now(), Node: 7}}
			rep, err := prober.Request(ctx, "n1", OpHint, encodeHint(target, &r))
			if err != nil {
				t.Fatal(err)
			}
			if err := decodeOK(rep); err == nil {
				kept++
			} else if !strings.Contains(err.Error(), errHintsFull.Error()) {
				t.Fatalf("hint %d for %s: %v, want a full store", i, target, err)
			} else {
				refused++
			}
		}
		return kept, refused
	}
	const one = 1000 + 40 // about: the value, the key twice, the target, the framing

	// n2 is down: n1 keeps its hints, up to the per-target cap.
	c.stop("n2")
	c.markDown("n2")
	kept, refused := flood("n2", 100)
	if b := n1.hints.targetBytes("n2"); b > perTarget || b < perTarget-one || kept < perTarget/one-1 || kept+refused != 100 {
		t.Fatalf("n2 flood: kept %d (%d bytes), refused %d; want about %d bytes, at most %d", kept, b, refused, perTarget, perTarget)
	}
	if got := dropped(t, n1, hintDropCap); got != float64(refused) {
		t.Errorf("dropped{cap} = %v, want %d", got, refused)
	}
	// A client write still succeeds (W=2 of n1 and n3); its hint for n2
	// is dropped at the cap too.
	if _, err := n1.Put(ctx, []byte("after-cap"), make([]byte, 2*one), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the write's hint dropped", func() bool { return dropped(t, n1, hintDropCap) == float64(refused+1) })

	// n3 down too: it gets what the total cap leaves.
	c.stop("n3")
	c.markDown("n2", "n3")
	kept3, refused3 := flood("n3", 100)
	if b := n1.hints.totalBytes(); b > total || b < total-one || kept3 == 0 || n1.hints.targetBytes("n3") > total-perTarget+one {
		t.Fatalf("n3 flood: kept %d, %d bytes in all; want about %d, at most %d", kept3, b, total, total)
	}
	if got := dropped(t, n1, hintDropCap); got != float64(refused+1+refused3) {
		t.Errorf("dropped{cap} = %v, want %d", got, refused+1+refused3)
	}
	// A hint for a node that is not a member is refused and counted.
	stranger := lsm.Record{Key: []byte("k"), Value: []byte("v"), Version: lsm.Version{Counter: n1.clock.now(), Node: 7}}
	if rep, err := prober.Request(ctx, "n1", OpHint, encodeHint("stranger", &stranger)); err != nil || decodeOK(rep) == nil {
		t.Errorf("hint for a stranger: %x %v, want an error reply", rep, err)
	}
	if got := dropped(t, n1, hintDropNotMember); got != 1 {
		t.Errorf("dropped{not_member} = %v, want 1", got)
	}

	// Both come back: what was kept is delivered, and the store is empty.
	c.start("n2")
	c.start("n3")
	waitFor(t, 10*time.Second, "hints delivered", func() bool { return n1.hints.total() == 0 })
	if b := n1.hints.totalBytes(); b != 0 {
		t.Errorf("%d bytes of hints pending after delivery, want 0", b)
	}
	if got := counterValue(t, n1.met.hintsDelivered); got != float64(kept+kept3) {
		t.Errorf("delivered %v hints, want %d", got, kept+kept3)
	}
	if _, err := c.node("n2").LocalGet([]byte("flood-n2-0000")); err != nil {
		t.Errorf("n2 lacks a delivered hint: %v", err)
	}
}

// Hints live for the hint window: one older than it is dropped at handoff
// instead of delivered; a target down for longer than it gets no new
// hints; the hints within it are delivered as usual.
func TestHintWindow(t *testing.T) {
	const window = time.Hour
	c := newTestCluster(t, three, func(cfg *Config) {
		cfg.HintWindow = window
		cfg.AntiEntropyInterval, cfg.DisableReadRepair = -1, true // n2 gets only what hints bring
	})
	ctx := ctxT(t)
	n1 := c.node("n1")
	put := func(prefix string) {
		t.Helper()
		for i := range 5 {
			if _, err := n1.Put(ctx, fmt.Appendf(nil, "%s-%d", prefix, i), []byte(prefix), WriteOptions{}); err != nil {
				t.Fatalf("put %s-%d: %v", prefix, i, err)
			}
		}
	}
	c.stop("n2")
	c.markDown("n2")
	put("old") // stored at t0: expired by the time n2 returns
	waitFor(t, 5*time.Second, "old hints", func() bool { return n1.hints.pendingByTarget()["n2"] == 5 })

	c.clock.Advance(50 * time.Minute)
	c.waitAlive("n1", "n3")
	put("mid") // n2 down for 50 min: kept, and young enough when it returns
	waitFor(t, 5*time.Second, "mid hints", func() bool { return n1.hints.pendingByTarget()["n2"] == 10 })

	c.clock.Advance(20 * time.Minute)
	c.waitAlive("n1", "n3")
	put("late") // n2 down for 70 min, past the window: no hints
	waitFor(t, 5*time.Second, "late hints refused", func() bool { return dropped(t, n1, hintDropDown) == 5 })
	if got := n1.hints.pendingByTarget()["n2"]; got != 10 {
		t.Errorf("n1 holds %d hints for n2, want 10 (none for the late writes)", got)
	}

	c.start("n2")
	waitFor(t, 10*time.Second, "hints handed off or dropped", func() bool { return n1.hints.total() == 0 })
	if got := dropped(t, n1, hintDropExpired); got != 5 {
		t.Errorf("dropped{expired} = %v, want 5", got)
	}
	if got := counterValue(t, n1.met.hintsDelivered); got != 5 {
		t.Errorf("delivered %v hints, want 5", got)
	}
	n2 := c.node("n2")
	for i := range 5 {
		if _, err := n2.LocalGet(fmt.Appendf(nil, "mid-%d", i)); err != nil {
			t.Errorf("mid-%d not delivered: %v", i, err)
		}
		for _, p := range []string{"old", "late"} {
			if _, err := n2.LocalGet(fmt.Appendf(nil, "%s-%d", p, i)); !errors.Is(err, ErrNotFound) {
				t.Errorf("%s-%d on n2: err = %v, want not found (left to anti-entropy)", p, i, err)
			}
		}
	}
}

// The hints of a target that stays down expire where they are: once even
// the newest is past the window, the handoff loop drops them all.
func TestHintsOfADownTargetExpire(t *testing.T) {
	c := newTestCluster(t, three, func(cfg *Config) { cfg.HintWindow = time.Hour })
	ctx := ctxT(t)
	n1 := c.node("n1")
	c.stop("n2")
	c.markDown("n2")
	for i := range 3 {
		if _, err := n1.Put(ctx, fmt.Appendf(nil, "k%d", i), []byte("v"), WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "hints", func() bool { return n1.hints.pendingByTarget()["n2"] == 3 })
	c.clock.Advance(59 * time.Minute)
	c.waitAlive("n1", "n3")
	if got := n1.hints.total(); got != 3 {
		t.Fatalf("n1 holds %d hints within the window, want 3", got)
	}
	c.clock.Advance(2 * time.Minute)
	waitFor(t, 5*time.Second, "expired hints dropped", func() bool { return n1.hints.total() == 0 && n1.hints.totalBytes() == 0 })
	if got := dropped(t, n1, hintDropExpired); got != 3 {
		t.Errorf("dropped{expired} = %v, want 3", got)
	}
}
