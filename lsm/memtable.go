package lsm

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"unsafe"
)

const maxHeight = 16

// memEntryOverhead is what a memtable entry costs beyond its key and
// value: the skiplist node (its size class), a quarter of the nodes'
// upper links, and the index's slot (key header and pointer, at the map's
// load). TestMemtableBytesTracksHeap holds it to what the heap shows.
const memEntryOverhead = 128 + 16/4 + 40

// memtable is a sorted skiplist holding the newest record of each key, with
// a hash index from key to skiplist node. It is not safe for concurrent use:
// the DB mutex guards the mutable memtable, and a frozen (immutable)
// memtable is only read.
//
// The index answers point reads, present or absent, and finds the node an
// overwrite replaces, without walking the list. Under a workload that
// writes a working set again and again (every replica checks the version
// it holds before each apply), a skiplist walk over a few thousand keys is
// a few dozen pointer chases and key comparisons, most of them cache
// misses: it was about a tenth of a node's CPU under PUT. The list stays
// for ordered iteration (flushes, scans) and for placing new keys.
type memtable struct {
	head   *skipNode
	index  map[string]*skipNode
	height int
	rng    *rand.Rand
	bytes  int64
	count  int
	walNum uint64 // the WAL file that holds this memtable's records
	// flushed is closed once the memtable is in a table (or failed to get
	// there: flushErr is then set).
	flushed  chan struct{}
	flushErr error
}

// skipNode is a record in the skiplist. prefix, the first bytes of the
// key, sits beside the links: a search compares it first and reads the key
// itself, elsewhere in memory, only when the prefixes are equal.
//
// A node holds its level-0 link itself and its links above level 0, which
// three nodes in four do not have, in upper. A fixed tower of maxHeight
// links made every node 224 bytes, most of it nil links; this one is 128.
type skipNode struct {
	prefix uint64
	next0  *skipNode
	upper  []*skipNode // links of levels 1 and up; len is the height - 1
	rec    Record
}

// next returns n's successor on level lvl, which must be below n's height.
func (n *skipNode) next(lvl int) *skipNode {
	if lvl == 0 {
		return n.next0
	}
	return n.upper[lvl-1]
}

// setNext links n to succ on level lvl, which must be below n's height.
func (n *skipNode) setNext(lvl int, succ *skipNode) {
	if lvl == 0 {
		n.next0 = succ
		return
	}
	n.upper[lvl-1] = succ
}

// keyPrefix returns the first 8 bytes of key, big-endian, zero-padded:
// where the prefixes of two keys differ, they order as the keys do.
func keyPrefix(key []byte) uint64 {
	if len(key) >= 8 {
		return binary.BigEndian.Uint64(key)
	}
	var b [8]byte
	copy(b[:], key)
	return binary.BigEndian.Uint64(b[:])
}

// before reports whether n's key orders before key, whose prefix is kp.
func (n *skipNode) before(kp uint64, key []byte) bool {
	if n.prefix != kp {
		return n.prefix < kp
	}
	return bytes.Compare(n.rec.Key, key) < 0
}

// newMemtable returns an empty memtable for the records of WAL walNum,
// with an index sized for about keys keys (it grows past them).
func newMemtable(walNum uint64, keys int) *memtable {
	return &memtable{
		index:   make(map[string]*skipNode, keys),
		head:    &skipNode{upper: make([]*skipNode, maxHeight-1)},
		height:  1,
		rng:     rand.New(rand.NewPCG(walNum, 0x9e3779b97f4a7c15)),
		walNum:  walNum,
		flushed: make(chan struct{}),
	}
}

// findGE returns the first node with key >= key, filling prev with the last
// node before it on every level when prev is not nil.
func (m *memtable) findGE(key []byte, prev *[maxHeight]*skipNode) *skipNode {
	x := m.head
	kp := keyPrefix(key)
	for lvl := m.height - 1; lvl >= 0; lvl-- {
		for {
			n := x.next(lvl)
			if n == nil || !n.before(kp, key) {
				break
			}
			x = n
		}
		if prev != nil {
			prev[lvl] = x
		}
	}
	return x.next0
}

// get returns the record held for key.
func (m *memtable) get(key []byte) (Record, bool) {
	if n, ok := m.index[string(key)]; ok {
		return n.rec, true
	}
	return Record{}, false
}

// put stores rec (which the memtable now owns), replacing any record of the
// same key.
func (m *memtable) put(rec Record) {
	if n, ok := m.index[string(rec.Key)]; ok {
		m.bytes += int64(len(rec.Value)) - int64(len(n.rec.Value))
		n.rec = rec
		return
	}
	var prev [maxHeight]*skipNode
	m.findGE(rec.Key, &prev)
	h := 1
	for h < maxHeight && m.rng.Uint32()&3 == 0 {
		h++
	}
	if h > m.height {
		for l := m.height; l < h; l++ {
			prev[l] = m.head
		}
		m.height = h
	}
	nn := &skipNode{prefix: keyPrefix(rec.Key), rec: rec}
	if h > 1 {
		nn.upper = make([]*skipNode, h-1)
	}
	for l := 0; l < h; l++ {
		nn.setNext(l, prev[l].next(l))
		prev[l].setNext(l, nn)
	}
	// The index key shares rec.Key's bytes: the memtable owns the record,
	// and no record's key is written to once it is stored. An overwrite
	// keeps the first record's key as the index key, which holds the
	// same bytes.
	m.index[unsafe.String(unsafe.SliceData(rec.Key), len(rec.Key))] = nn
	m.bytes += int64(len(rec.Key)+len(rec.Value)) + memEntryOverhead
	m.count++
}

// memIter iterates a frozen memtable, or a copied slice of records.
type memIter struct {
	n     *skipNode
	end   []byte
	recs  []Record
	i     int
	slice bool
}

func (m *memtable) iter(start, end []byte) *memIter {
	var n *skipNode
	if start == nil {
		n = m.head.next0
	} else {
		n = m.findGE(start, nil)
	}
	return &memIter{n: n, end: end}
}

// snapshot copies the records in [start, end) (the records themselves are
// immutable and shared).
func (m *memtable) snapshot(start, end []byte) []Record {
	var out []Record
	for it := m.iter(start, end); it.valid(); it.next() {
		out = append(out, it.rec())
	}
	return out
}

func sliceIter(recs []Record) *memIter { return &memIter{recs: recs, slice: true} }

func (it *memIter) valid() bool {
	if it.slice {
		return it.i < len(it.recs)
	}
	return it.n != nil && (it.end == nil || bytes.Compare(it.n.rec.Key, it.end) < 0)
}

func (it *memIter) rec() Record {
	if it.slice {
		return it.recs[it.i]
	}
	return it.n.rec
}

func (it *memIter) next() {
	if it.slice {
		it.i++
		return
	}
	it.n = it.n.next0
}
