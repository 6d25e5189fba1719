package lsm

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
)

const maxHeight = 16

// memEntryOverhead approximates the bytes a memtable entry costs beyond its
// key and value.
const memEntryOverhead = 64

// memtable is a sorted skiplist holding the newest record of each key. It is
// not safe for concurrent use: the DB mutex guards the mutable memtable, and
// a frozen (immutable) memtable is only read.
type memtable struct {
	head   *skipNode
	height int
	rng    *rand.Rand
	bytes  int64
	count  int
	walNum uint64 // the WAL file that holds this memtable's records
	// filter holds the hash of every key put, so that a search for an
	// absent key (each Apply of a new key searches every memtable) mostly
	// ends without walking the skiplist; nil: none.
	filter bloom
	// flushed is closed once the memtable is in a table (or failed to get
	// there: flushErr is then set).
	flushed  chan struct{}
	flushErr error
}

// skipNode is a record in the skiplist. prefix, the first bytes of the
// key, sits beside the links: a search compares it first and reads the key
// itself, elsewhere in memory, only when the prefixes are equal.
type skipNode struct {
	prefix uint64
	next   [maxHeight]*skipNode
	rec    Record
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
// with a filter sized for about keys keys (none if keys is 0; more keys
// only make the filter less selective).
func newMemtable(walNum uint64, keys int) *memtable {
	var f bloom
	if keys > 0 {
		f = newBloom(keys)
	}
	return &memtable{
		filter:  f,
		head:    &skipNode{},
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
			n := x.next[lvl]
			if n == nil || !n.before(kp, key) {
				break
			}
			x = n
		}
		if prev != nil {
			prev[lvl] = x
		}
	}
	return x.next[0]
}

// get returns the record held for key, whose bloomHash is h.
func (m *memtable) get(key []byte, h uint64) (Record, bool) {
	if m.filter != nil && !m.filter.mayContain(h) {
		return Record{}, false
	}
	n := m.findGE(key, nil)
	if n != nil && bytes.Equal(n.rec.Key, key) {
		return n.rec, true
	}
	return Record{}, false
}

// put stores rec (which the memtable now owns), replacing any record of the
// same key.
func (m *memtable) put(rec Record) {
	var prev [maxHeight]*skipNode
	n := m.findGE(rec.Key, &prev)
	if n != nil && bytes.Equal(n.rec.Key, rec.Key) {
		m.bytes += int64(len(rec.Value)) - int64(len(n.rec.Value))
		n.rec = rec
		return
	}
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
	if m.filter != nil {
		m.filter.add(bloomHash(rec.Key))
	}
	for l := 0; l < h; l++ {
		nn.next[l] = prev[l].next[l]
		prev[l].next[l] = nn
	}
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
		n = m.head.next[0]
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
	it.n = it.n.next[0]
}
