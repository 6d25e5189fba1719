package lsm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"
)

func TestPickCompaction(t *testing.T) {
	const K, M = 1 << 10, 1 << 20
	tests := []struct {
		name   string
		sizes  []int64
		i, j   int
		wantOK bool
	}{
		{"none", nil, 0, 0, false},
		{"three small", []int64{K, K, K}, 0, 0, false},
		{"four small", []int64{K, 2 * K, K, 900 * K}, 0, 4, true},
		{"run of similar among big", []int64{4 * M, 4 * M, 5 * M, 4 * M, 64 * M}, 0, 4, true},
		{"dissimilar", []int64{2 * M, 9 * M, 40 * M, 170 * M}, 0, 0, false},
		{"older run", []int64{2 * M, 20 * M, 20 * M, 21 * M, 22 * M, 500 * M}, 1, 5, true},
		{"too many tables", []int64{2 * M, 9 * M, 40 * M, 170 * M, 700 * M, 3000 * M, 2 * M, 9 * M, 40 * M, 170 * M, 700 * M, 3000 * M, 12000 * M}, 0, 5, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i, j, ok := pickCompaction(tt.sizes)
			if ok != tt.wantOK || ok && (i != tt.i || j != tt.j) {
				t.Fatalf("pickCompaction = [%d,%d) %v, want [%d,%d) %v", i, j, ok, tt.i, tt.j, tt.wantOK)
			}
		})
	}
}

// hlc returns a version whose counter reads as wall-clock time t.
func hlc(t time.Time, n uint64) Version {
	return Version{Counter: uint64(t.UnixMilli())<<16 | n, Node: 1}
}

// TestCompactionTombstones: a compaction drops a tombstone only past its
// grace period, only when the merge reaches the oldest table, and, with
// Options.TombstoneHorizon, only below the horizon, which it reads once per
// compaction that reaches the oldest table, not per record.
func TestCompactionTombstones(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const grace = 240 * time.Hour
	// Both tombstones have counters within [tomb, tomb+1].
	tomb := hlc(t0, 4).Counter
	tests := []struct {
		name      string
		now       time.Duration // since t0
		run       [2]int        // tables to merge, -1: through the oldest
		horizon   uint64        // 0: no TombstoneHorizon
		wantTomb  bool          // the tombstones survive
		wantCalls int           // TombstoneHorizon calls
	}{
		{"within grace, full merge", grace - time.Minute, [2]int{0, -1}, 0, true, 0},
		{"past grace, full merge", grace + time.Minute, [2]int{0, -1}, 0, false, 0},
		{"past grace, oldest table not in the merge", grace + time.Minute, [2]int{0, 2}, 0, true, 0},
		{"past grace, below the horizon", grace + time.Minute, [2]int{0, -1}, tomb + 2, false, 1},
		{"past grace, at the horizon", grace + time.Minute, [2]int{0, -1}, tomb, true, 1},
		{"past grace, above the horizon", grace + time.Minute, [2]int{0, -1}, hlc(t0, 0).Counter, true, 1},
		{"within grace, below the horizon", grace - time.Minute, [2]int{0, -1}, tomb + 2, true, 1},
		{"below the horizon, oldest table not in the merge", grace + time.Minute, [2]int{0, 2}, tomb + 2, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var now atomic.Int64
			now.Store(t0.UnixMilli())
			var calls atomic.Int64
			fs := NewMemFS()
			opts := func(o *Options) {
				o.Now = func() time.Time { return time.UnixMilli(now.Load()) }
				o.TombstoneGrace = grace
				if tt.horizon != 0 {
					o.TombstoneHorizon = func() uint64 { calls.Add(1); return tt.horizon }
				}
			}
			db := openMem(t, fs, opts)
			defer db.Close()
			// Oldest table: the values the tombstones shadow.
			mustApply(t, db, put("gone", "v", hlc(t0, 1)))
			mustApply(t, db, put("gone2", "v", hlc(t0, 1)))
			mustApply(t, db, put("stay", "v1", hlc(t0, 2)))
			db.Flush()
			mustApply(t, db, put("stay", "v2", hlc(t0, 3)))
			db.Flush()
			mustApply(t, db, del("gone", hlc(t0, 4)))
			mustApply(t, db, del("gone2", hlc(t0, 5)))
			db.Flush()
			if st := db.Stats(); st.Tables != 3 {
				t.Fatalf("%d tables", st.Tables)
			}
			now.Store(t0.Add(tt.now).UnixMilli())
			if err := db.compact(tt.run[0], tt.run[1]); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"gone", "gone2"} {
				got, err := db.Get([]byte(k))
				if tt.wantTomb {
					if err != nil || !got.Tombstone {
						t.Fatalf("Get(%s) = %+v, %v; want the tombstone", k, got, err)
					}
				} else if !errors.Is(err, ErrNotFound) {
					t.Fatalf("Get(%s) = %+v, %v; want ErrNotFound", k, got, err)
				}
			}
			got, err := db.Get([]byte("stay"))
			if err != nil || string(got.Value) != "v2" {
				t.Fatalf("Get(stay) = %+v, %v", got, err)
			}
			st := db.Stats()
			if st.Compactions != 1 {
				t.Fatalf("%d compactions", st.Compactions)
			}
			if tt.run[1] < 0 && st.Tables != 1 {
				t.Fatalf("%d tables after a full compaction", st.Tables)
			}
			if n := calls.Load(); n != int64(tt.wantCalls) {
				t.Fatalf("TombstoneHorizon called %d times, want %d", n, tt.wantCalls)
			}
		})
	}
}

// TestCompactionKeepsNewest writes many versions of a set of keys across many
// tables and checks, after background and full compactions and a reopen,
// that each key holds its newest version.
func TestCompactionKeepsNewest(t *testing.T) {
	fs := NewMemFS()
	mod := func(o *Options) { o.MemtableBytes = 2048 }
	db := openMem(t, fs, mod)
	rng := rand.New(rand.NewPCG(1, 2))
	want := map[string]Record{}
	for i := 0; i < 5000; i++ {
		k := fmt.Sprintf("k%03d", rng.IntN(300))
		rec := put(k, fmt.Sprint(i), v(uint64(i+1)))
		if rng.IntN(5) == 0 {
			rec = del(k, v(uint64(i+1)))
		}
		mustApply(t, db, rec)
		want[k] = rec
	}
	check := func(db *DB) {
		t.Helper()
		for k, w := range want {
			got, err := db.Get([]byte(k))
			w.Key = []byte(k)
			if err != nil || !recEqual(got, w) {
				t.Fatalf("Get(%s) = %+v, %v; want %+v", k, got, err, w)
			}
		}
		if n := countKeys(t, db); n != len(want) {
			t.Fatalf("scan: %d keys, want %d", n, len(want))
		}
	}
	check(db)
	st := db.Stats()
	t.Logf("before full compaction: %d tables %v, %d flushes, %d compactions", st.Tables, st.TableSizes, st.Flushes, st.Compactions)
	if st.Compactions == 0 {
		t.Fatal("no background compaction ran")
	}
	if err := db.Compact(); err != nil {
		t.Fatal(err)
	}
	check(db)
	db.Close()
	db = openMem(t, fs, mod)
	defer db.Close()
	check(db)
}

func TestBloomFalsePositiveRate(t *testing.T) {
	const n, probes = 10000, 100000
	hashes := make([]uint64, n)
	for i := range hashes {
		hashes[i] = bloomHash([]byte(fmt.Sprintf("present-%d", i)))
	}
	f := buildBloom(hashes)
	for _, h := range hashes {
		if !f.mayContain(h) {
			t.Fatal("false negative")
		}
	}
	fp := 0
	for i := 0; i < probes; i++ {
		if f.mayContain(bloomHash([]byte(fmt.Sprintf("absent-%d", i)))) {
			fp++
		}
	}
	rate := float64(fp) / probes
	t.Logf("bloom: %d bits/key, k=%d: false-positive rate %.3f%%", bloomBitsPerKey, bloomK, 100*rate)
	if rate > 0.015 {
		t.Fatalf("false-positive rate %.3f%% is too high", 100*rate)
	}
}
