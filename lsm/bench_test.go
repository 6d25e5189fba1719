package lsm

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkApplySynced: 16 concurrent writers, 100-byte values, every Apply
// durable (SyncAlways, group commit) on the OS file system.
func BenchmarkApplySynced(b *testing.B) {
	db, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	const writers = 16
	value := make([]byte, 100)
	var next atomic.Uint64
	b.SetBytes(100)
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := make([]byte, 0, 32)
			for {
				i := next.Add(1)
				if i > uint64(b.N) {
					return
				}
				key = fmt.Appendf(key[:0], "key%012d", i)
				if _, _, err := db.Apply(Record{Key: key, Value: value, Version: Version{Counter: i, Node: 1}}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	st := db.Stats()
	b.ReportMetric(float64(st.WALSyncs)/float64(b.N), "fsyncs/op")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkApplyBatch: one writer applying batches of new records with
// 100-byte values, every batch durable (SyncAlways) on the OS file system;
// an op is a record, to compare with BenchmarkApplySynced. 4000 records
// make about a 512 KiB stream page.
func BenchmarkApplyBatch(b *testing.B) {
	for _, size := range []int{1000, 4000} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			db, err := Open(Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			value := make([]byte, 100)
			recs := make([]Record, 0, size)
			b.SetBytes(100)
			b.ResetTimer()
			for i := 0; i < b.N; {
				recs = recs[:0]
				for ; len(recs) < size && i < b.N; i++ {
					key := fmt.Appendf(nil, "key%012d", i)
					recs = append(recs, Record{Key: key, Value: value, Version: Version{Counter: uint64(i + 1), Node: 1}})
				}
				if n, err := db.ApplyBatch(recs); err != nil || n != len(recs) {
					b.Fatalf("ApplyBatch = %d, %v", n, err)
				}
			}
			b.StopTimer()
			st := db.Stats()
			b.ReportMetric(float64(st.WALSyncs)/float64(b.N), "fsyncs/op")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkGet: random point reads of present keys in a store of 100k keys
// held in tables.
func BenchmarkGet(b *testing.B) {
	const n = 100000
	db := openLoaded(b, n)
	if err := db.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := db.Compact(); err != nil {
		b.Fatal(err)
	}
	benchGets(b, db, n)
}

// openLoaded opens an unsynced store in a temporary directory that holds
// benchKey(0) to benchKey(n-1) with 100-byte values, and closes it when b
// ends.
func openLoaded(b *testing.B, n int) *DB {
	db, err := Open(Options{Dir: b.TempDir(), Sync: SyncNone})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	value := make([]byte, 100)
	for i := 0; i < n; i++ {
		if _, _, err := db.Apply(Record{Key: benchKey(nil, i), Value: value, Version: Version{Counter: uint64(i + 1)}}); err != nil {
			b.Fatal(err)
		}
	}
	return db
}

// benchKey appends the i-th key of openLoaded's store to dst.
func benchKey(dst []byte, i int) []byte { return fmt.Appendf(dst, "key%012d", i) }

// benchGets times point reads of keys of openLoaded's store of n keys, in
// a random order.
func benchGets(b *testing.B, db *DB, n int) {
	rng := rand.New(rand.NewPCG(1, 1))
	key := make([]byte, 0, 32)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		key = benchKey(key[:0], rng.IntN(n))
		if _, err := db.Get(key); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetAbsent: point reads of absent keys (answered by the filters).
func BenchmarkGetAbsent(b *testing.B) {
	const n = 100000
	db := openLoaded(b, n)
	db.Flush()
	key := make([]byte, 0, 32)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		key = fmt.Appendf(key[:0], "absent%012d", i)
		if _, err := db.Get(key); err == nil {
			b.Fatal("found an absent key")
		}
	}
}

// BenchmarkApplyUnsynced: one writer, 100-byte values, SyncNone, on the OS
// file system. Without fsyncs the cost of the Apply path itself shows: the
// version check, the commit queue (uncontended: no hand-off), the WAL
// write(2) and the memtable insert.
func BenchmarkApplyUnsynced(b *testing.B) { benchApplyUnsynced(b, nil) }

// BenchmarkApplyUnsyncedOnApply is BenchmarkApplyUnsynced with an OnApply
// hook that keeps an XOR of the versions, as cheap as a hook can be: what
// the hook call itself costs.
func BenchmarkApplyUnsyncedOnApply(b *testing.B) {
	var acc uint64
	benchApplyUnsynced(b, func(_ []byte, prev, cur Version) { acc ^= prev.Counter ^ cur.Counter })
}

func benchApplyUnsynced(b *testing.B, hook func([]byte, Version, Version)) {
	db, err := Open(Options{Dir: b.TempDir(), Sync: SyncNone, OnApply: hook})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	value := make([]byte, 100)
	key := make([]byte, 0, 32)
	b.SetBytes(100)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		key = fmt.Appendf(key[:0], "key%012d", i)
		if _, _, err := db.Apply(Record{Key: key, Value: value, Version: Version{Counter: uint64(i + 1), Node: 1}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetMemtable: point reads of keys still in the memtable (10,000
// of them, as in shared/bench's key space), the case of a node under
// kvload.
func BenchmarkGetMemtable(b *testing.B) {
	const n = 10000
	benchGets(b, openLoaded(b, n), n)
}

// BenchmarkMemtable measures the memtable alone (no WAL, no lock): inserts
// of new keys in random order until the memtable is as full as a default
// one gets, overwrites and point reads of a 10,000-key working set (the
// shape of shared/bench's kvload: every replica reads the version it holds
// before it applies).
func BenchmarkMemtable(b *testing.B) {
	value := make([]byte, 100)
	keys := make([][]byte, 10000)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "key%012d", rng.Uint64()%1e12)
	}
	filled := func() *memtable {
		m := newMemtable(1, 0)
		for i, k := range keys {
			m.put(Record{Key: k, Value: value, Version: Version{Counter: uint64(i + 1)}})
		}
		return m
	}
	b.Run("insert", func(b *testing.B) {
		b.ReportAllocs()
		m := newMemtable(1, 0)
		for i := 0; b.Loop(); i++ {
			if m.bytes >= DefaultMemtableBytes {
				m = newMemtable(1, 0)
			}
			k := fmt.Appendf(nil, "key%012d", rng.Uint64()%1e12)
			m.put(Record{Key: k, Value: value, Version: Version{Counter: uint64(i + 1)}})
		}
	})
	b.Run("overwrite", func(b *testing.B) {
		b.ReportAllocs()
		m := filled()
		for i := 0; b.Loop(); i++ {
			k := keys[rng.IntN(len(keys))]
			if _, ok := m.get(k); !ok {
				b.Fatal("key not found")
			}
			m.put(Record{Key: k, Value: value, Version: Version{Counter: uint64(i + 1e6)}})
		}
	})
	b.Run("get", func(b *testing.B) {
		b.ReportAllocs()
		m := filled()
		for b.Loop() {
			if _, ok := m.get(keys[rng.IntN(len(keys))]); !ok {
				b.Fatal("key not found")
			}
		}
	})
}
