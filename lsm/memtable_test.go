package lsm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
)

// TestMemtableOrder: keys of 1 to 12 bytes drawn from {0x00, 0x01, 0x7f,
// 0xff}, so that many share their first 8 bytes, differ only past them, or
// are a prefix of one another with zero bytes after: the memtable must
// order them as bytes.Compare does (its search compares 8-byte prefixes
// first, and its index answers point reads), find every one and nothing
// else, whether its index starts empty, sized for its keys, or far too
// small (and grows).
func TestMemtableOrder(t *testing.T) {
	for _, keys := range []int{0, 10000, 50} {
		t.Run(fmt.Sprintf("index for %d keys", keys), func(t *testing.T) { testMemtableOrder(t, keys) })
	}
}

func testMemtableOrder(t *testing.T, indexKeys int) {
	alphabet := []byte{0x00, 0x01, 0x7f, 0xff}
	rng := rand.New(rand.NewPCG(1, 2))
	m := newMemtable(1, indexKeys)
	model := map[string]uint64{}
	randKey := func() []byte {
		k := make([]byte, 1+rng.IntN(12))
		for i := range k {
			k[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return k
	}
	for i := 0; i < 5000; i++ {
		k := randKey()
		m.put(Record{Key: k, Version: v(uint64(i + 1))})
		model[string(k)] = uint64(i + 1)
	}
	want := make([]string, 0, len(model))
	for k := range model {
		want = append(want, k)
	}
	slices.Sort(want)
	var got []string
	for it := m.iter(nil, nil); it.valid(); it.next() {
		got = append(got, string(it.rec().Key))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("memtable holds %d keys in this order, want %d sorted", len(got), len(want))
	}
	if m.count != len(model) {
		t.Fatalf("count %d, want %d", m.count, len(model))
	}
	for i := 0; i < 5000; i++ {
		k := randKey()
		r, ok := m.get(k)
		c, in := model[string(k)]
		if ok != in || ok && (!bytes.Equal(r.Key, k) || r.Version != v(c)) {
			t.Fatalf("get(%x) = %x@%v, %v; want present %v at %d", k, r.Key, r.Version, ok, in, c)
		}
		// The first key at or after k, as a range scan starts.
		j, _ := slices.BinarySearch(want, string(k))
		it := m.iter(k, nil)
		if j == len(want) && it.valid() || j < len(want) && (!it.valid() || string(it.rec().Key) != want[j]) {
			t.Fatalf("iter(%x) starts at the wrong key", k)
		}
	}
}

// TestMemtableBytesTracksHeap: a memtable filled to DefaultMemtableBytes,
// as the DB fills one (each record's key and value in one buffer, the index
// sized by memtableKeys), must count within a fifth of the heap it holds,
// for values from empty to a kilobyte. The DB freezes a memtable when the
// count says it is full, so an undercount lets it hold that much more
// memory than Options.MemtableBytes allows.
func TestMemtableBytesTracksHeap(t *testing.T) {
	db := &DB{opts: Options{MemtableBytes: DefaultMemtableBytes}}
	for _, size := range []int{0, 16, 100, 1000} {
		t.Run(fmt.Sprintf("value %d bytes", size), func(t *testing.T) {
			value := make([]byte, size)
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			before := ms.HeapAlloc
			m := newMemtable(1, db.memtableKeys())
			for i := 0; m.bytes < db.opts.MemtableBytes; i++ {
				key := fmt.Appendf(nil, "key%012d", i*7919%1000003)
				m.put(cloneRecord(Record{Key: key, Value: value, Version: v(uint64(i + 1))}))
			}
			runtime.GC()
			runtime.ReadMemStats(&ms)
			held := int64(ms.HeapAlloc) - int64(before)
			runtime.KeepAlive(m)
			if ratio := float64(m.bytes) / float64(held); ratio < 0.8 || ratio > 1.2 {
				t.Errorf("%d records: counted %d bytes, heap grew by %d (ratio %.2f, want 0.8-1.2)",
					m.count, m.bytes, held, ratio)
			}
		})
	}
}
