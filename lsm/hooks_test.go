package lsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hookCall is one OnApply call.
type hookCall struct {
	key        string
	prev, curr Version
}

func (c hookCall) String() string { return fmt.Sprintf("%s:%v->%v", c.key, c.prev, c.curr) }

// hookRecorder records OnApply calls.
type hookRecorder struct {
	mu    sync.Mutex
	calls []hookCall
}

func (h *hookRecorder) onApply(key []byte, prev, cur Version) {
	h.mu.Lock()
	h.calls = append(h.calls, hookCall{string(key), prev, cur})
	h.mu.Unlock()
}

// take returns the calls recorded since the last take.
func (h *hookRecorder) take() []hookCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.calls
	h.calls = nil
	return c
}

// TestOnApply runs a sequence of operations and checks, right after each
// returns, the OnApply calls it made: exact prev and cur for puts and
// tombstones, whether the held version comes from the memtable, a table or a
// replayed WAL; for a batch, one call per record applied, in batch order;
// none for rejected Applies, flushes, compactions (also when they drop a
// tombstone) and WAL replay.
func TestOnApply(t *testing.T) {
	fs := NewMemFS()
	rec := &hookRecorder{}
	mod := func(o *Options) {
		o.OnApply = rec.onApply
		// Test versions have tiny counters: with a real clock every
		// tombstone is past its grace and a full compaction drops it.
		o.Now = time.Now
	}
	db := openMem(t, fs, mod)
	defer func() { db.Close() }()
	none := []hookCall(nil)
	one := func(k string, prev, cur uint64) []hookCall {
		var p Version
		if prev != 0 {
			p = v(prev)
		}
		return []hookCall{{k, p, v(cur)}}
	}
	apply := func(r Record) func() error {
		return func() error { _, _, err := db.Apply(r); return err }
	}
	batch := func(want int, recs ...Record) func() error {
		return func() error {
			if n, err := db.ApplyBatch(recs); err != nil || n != want {
				return fmt.Errorf("ApplyBatch = %d, %v; want %d", n, err, want)
			}
			return nil
		}
	}
	purge := func(k string, ver uint64, want bool) func() error {
		return func() error {
			if ok, err := db.Purge([]byte(k), v(ver)); err != nil || ok != want {
				return fmt.Errorf("Purge(%s, %d) = %v, %v; want %v", k, ver, ok, err, want)
			}
			return nil
		}
	}
	steps := []struct {
		name string
		op   func() error
		want []hookCall
	}{
		{"new key", apply(put("a", "1", v(1))), one("a", 0, 1)},
		{"same version rejected", apply(put("a", "1", v(1))), none},
		{"zero version rejected", apply(put("z", "1", Version{})), none},
		{"second key", apply(put("b", "1", v(2))), one("b", 0, 2)},
		{"tombstone", apply(del("a", v(3))), one("a", 1, 3)},
		{"older than tombstone rejected", apply(put("a", "x", v(2))), none},
		{"put over tombstone", apply(put("a", "2", v(4))), one("a", 3, 4)},
		{"flush", func() error { return db.Flush() }, none},
		{"batch: calls in batch order, prev from a table, newest of a key only", batch(3,
			put("f", "1", v(20)),
			put("b", "x", v(1)), // older than b's 2: rejected
			put("f", "0", v(19)),
			del("a", v(21)),
			put("g", "1", v(22)),
			put("g", "2", v(23)),
		), []hookCall{{"f", Version{}, v(20)}, {"a", v(4), v(21)}, {"g", Version{}, v(23)}}},
		{"batch of nothing newer", batch(0, put("f", "1", v(20)), put("g", "0", v(1))), none},
		{"held version read from a table", apply(put("b", "2", v(5))), one("b", 2, 5)},
		{"tombstone to be dropped", apply(del("c", v(7))), one("c", 0, 7)},
		{"flush again", func() error { return db.Flush() }, none},
		{"compaction drops the tombstone", func() error {
			if err := db.Compact(); err != nil {
				return err
			}
			if _, err := db.Get([]byte("c")); !errors.Is(err, ErrNotFound) {
				return fmt.Errorf("tombstone not dropped: Get(c) = %v", err)
			}
			return nil
		}, none},
		{"unflushed write", apply(put("d", "1", v(8))), one("d", 0, 8)},
		{"reopen replays the WAL", func() error {
			if err := db.Close(); err != nil {
				return err
			}
			db = openMem(t, fs, mod)
			return nil
		}, none},
		{"held version read from the replayed WAL", apply(put("d", "2", v(9))), one("d", 8, 9)},
		{"purge of another version", purge("d", 8, false), none},
		{"purge", purge("d", 9, true), []hookCall{{"d", v(9), Version{}}}},
		{"purge again", purge("d", 9, false), none},
		{"older version over a purge", apply(put("d", "3", v(2))), one("d", 0, 2)},
		{"tombstone", apply(del("e", v(10))), one("e", 0, 10)},
		{"purge of a tombstone", purge("e", 10, true), []hookCall{{"e", v(10), Version{}}}},
		{"flush the purge markers", func() error { return db.Flush() }, none},
		{"compaction drops the purge marker", func() error {
			if err := db.Compact(); err != nil {
				return err
			}
			if tableHolds(t, db, "e") {
				return errors.New("purge marker for e not dropped")
			}
			return nil
		}, none},
	}
	for _, s := range steps {
		if err := s.op(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := rec.take(); fmt.Sprint(got) != fmt.Sprint(s.want) {
			t.Fatalf("%s: OnApply calls %v, want %v", s.name, got, s.want)
		}
	}
}

// entryHash is the hash of one (key, version) entry of an anti-entropy
// tree. The zero version (no record) hashes to 0, so it drops out of XORs.
func entryHash(key []byte, ver Version) uint64 {
	if ver.IsZero() {
		return 0
	}
	h := fnv.New64a()
	h.Write(key)
	var b [12]byte
	binary.LittleEndian.PutUint64(b[:], ver.Counter)
	binary.LittleEndian.PutUint32(b[8:], ver.Node)
	h.Write(b[:])
	return h.Sum64()
}

// xorSnapshot is one ScanAt: the XOR of the OnApply deltas between the
// previous ScanAt's snapshot and its own, and the XOR over what it scanned.
type xorSnapshot struct {
	delta, scan uint64
}

// TestScanAtOrdersWithOnApply keeps a TicTac-style hash the way the node
// will: an OnApply hook XORs hash(key, cur) in and hash(key, prev) out of an
// accumulator, and atSnapshot hands the accumulator over and starts a fresh
// one. Writers race on a few keys (puts, tombstones, stale versions,
// purges, older versions applied over purges, batches of these) while
// two scanners take snapshots and memtables are flushed and compacted. For
// each snapshot, the previous snapshot's XOR plus the deltas handed over
// must equal the XOR of what it scanned, and the last one plus the deltas
// after it must equal a final scan. Every OnApply call's prev must be the
// previous call's cur for that key. The hook and atSnapshot share the
// accumulator without a lock of their own, relying on ScanAt's promise that
// they never run concurrently; -race checks that promise.
func TestScanAtOrdersWithOnApply(t *testing.T) {
	var (
		acc      uint64
		snaps    []*xorSnapshot
		last     = map[string]Version{}
		chainErr error
	)
	hook := func(key []byte, prev, cur Version) {
		if l := last[string(key)]; l != prev && chainErr == nil {
			chainErr = fmt.Errorf("OnApply(%s, %v, %v): the previous call left %v", key, prev, cur, l)
		}
		last[string(key)] = cur
		acc ^= entryHash(key, prev) ^ entryHash(key, cur)
	}
	db := openMem(t, NewMemFS(), func(o *Options) { o.OnApply = hook })
	defer db.Close()
	scanAt := func() (*xorSnapshot, error) {
		s := &xorSnapshot{}
		err := db.ScanAt(nil, nil, func() {
			s.delta, acc = acc, 0
			snaps = append(snaps, s)
		}, func(r Record) bool {
			s.scan ^= entryHash(r.Key, r.Version)
			return true
		})
		return s, err
	}

	const writers, opsPerWriter, keys = 4, 1000, 12
	var counter atomic.Uint64
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; i < opsPerWriter; i++ {
				k := fmt.Sprintf("k%02d", rng.IntN(keys))
				ver := Version{Counter: counter.Add(1), Node: uint32(w)}
				r := put(k, "v", ver)
				switch rng.IntN(9) {
				case 0:
					r = del(k, ver)
				case 1:
					r.Version.Counter = max(ver.Counter, 40) - 40 // most likely stale
				case 3:
					// A batch: puts, tombstones and stale versions of a few
					// keys, the same key more than once now and then.
					recs := make([]Record, 1+rng.IntN(6))
					for j := range recs {
						k := fmt.Sprintf("k%02d", rng.IntN(keys))
						ver := Version{Counter: counter.Add(1), Node: uint32(w)}
						switch rng.IntN(4) {
						case 0:
							recs[j] = del(k, ver)
						case 1:
							ver.Counter = max(ver.Counter, 40) - 40
							fallthrough
						default:
							recs[j] = put(k, "v", ver)
						}
					}
					if _, err := db.ApplyBatch(recs); err != nil {
						t.Error(err)
						return
					}
					continue
				case 2:
					// Purge what is held, unless a write gets in first.
					if got, err := db.Get([]byte(k)); err == nil {
						if _, err := db.Purge([]byte(k), got.Version); err != nil {
							t.Error(err)
							return
						}
					}
					continue
				}
				if _, _, err := db.Apply(r); err != nil {
					t.Error(err)
					return
				}
				if i%100 == 99 {
					if err := db.Flush(); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var scans atomic.Int64
	var swg sync.WaitGroup
	for s := 0; s < 2; s++ {
		swg.Add(1)
		go func() {
			defer swg.Done()
			for !isClosed(done) {
				if _, err := scanAt(); err != nil {
					t.Error(err)
					return
				}
				scans.Add(1)
			}
		}()
	}
	swg.Wait()
	final, err := scanAt()
	if err != nil {
		t.Fatal(err)
	}
	scans.Add(1)
	if chainErr != nil {
		t.Fatal(chainErr)
	}
	if int64(len(snaps)) != scans.Load() {
		t.Fatalf("%d ScanAt calls made %d atSnapshot calls", scans.Load(), len(snaps))
	}
	var x uint64 // the XOR the hook deltas say the previous snapshot held
	for i, s := range snaps {
		if x^s.delta != s.scan {
			t.Fatalf("snapshot %d of %d: previous snapshot %#x ^ deltas %#x = %#x, scanned %#x", i, len(snaps), x, s.delta, x^s.delta, s.scan)
		}
		x = s.scan
	}
	// The final scan ran after the last write: it is the last snapshot, and
	// nothing may have changed since.
	if snaps[len(snaps)-1] != final || acc != 0 {
		t.Fatalf("OnApply deltas %#x after the final snapshot", acc)
	}
	st := db.Stats()
	t.Logf("%d snapshots; %d applied, %d rejected, %d purged, %d flushes, %d compactions",
		len(snaps), st.Applies, st.Rejected, st.Purges, st.Flushes, st.Compactions)
	if st.Compactions == 0 || st.Rejected == 0 || st.Purges == 0 {
		t.Fatalf("the test did not exercise compactions (%d), rejections (%d) or purges (%d)", st.Compactions, st.Rejected, st.Purges)
	}
}

// TestScanAtClosed: on a closed DB, ScanAt takes no snapshot and so does
// not call atSnapshot.
func TestScanAtClosed(t *testing.T) {
	db := openMem(t, NewMemFS(), nil)
	db.Close()
	called := false
	err := db.ScanAt(nil, nil, func() { called = true }, func(Record) bool { return true })
	if !errors.Is(err, ErrClosed) || called {
		t.Fatalf("ScanAt on a closed DB = %v, atSnapshot called: %v", err, called)
	}
}
