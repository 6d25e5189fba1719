package node

import (
	"errors"
	"math"
	"path/filepath"
	"testing"

	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node/topology"
)

func openTestHints(t *testing.T, dir string, clock *manualClock) *hintStore {
	t.Helper()
	db, err := openHintDB(dir, clock, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	h, err := newHintStore(db, newHLC(clock), NodeHash("holder"))
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
	if err := h.remove(batch[0].hk, "n2", batch[0].version); err != nil {
		t.Fatal(err)
	}
	if err := h.remove(batch[1].hk, "n2", batch[1].version); err != nil {
		t.Fatal(err)
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
	if err := h.remove(left[0].hk, "n2", left[0].version); err != nil {
		t.Fatal(err)
	}
	if got := h.pendingByTarget()["n2"]; got != 0 {
		t.Errorf("pending n2 after the last remove = %d", got)
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

func (nopStore) Apply(lsm.Record) (lsm.Version, bool, error)                { return lsm.Version{}, false, nil }
func (nopStore) ApplyBatch([]lsm.Record) (int, error)                       { return 0, nil }
func (nopStore) Get([]byte) (lsm.Record, error)                             { return lsm.Record{}, lsm.ErrNotFound }
func (nopStore) Scan([]byte, []byte, func(lsm.Record) bool) error           { return nil }
func (nopStore) Purge([]byte, lsm.Version) (bool, error)                    { return false, nil }
func (nopStore) ScanAt([]byte, []byte, func(), func(lsm.Record) bool) error { return nil }
