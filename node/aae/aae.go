// Package aae keeps the hash trees of active anti-entropy, after Riak's
// TicTac AAE: for every range of the ring a node replicates, a tree whose
// leaves are the XOR of a hash of every (key, version) in one segment of
// the range, and whose root is the XOR of the leaves. A write updates one
// leaf and the root in place (XOR out the old version's hash, XOR in the
// new one), so the trees are always current and cost nothing to read; two
// replicas of a range compare roots, then the leaves of ranges whose roots
// differ, and only the keys of differing segments are listed and moved. A
// round that finds no difference sends one root per shared range whatever
// the amount of data.
//
// XOR makes the trees order-free: applying the same set of changes in any
// order gives the same tree, so a tree rebuilt from a store snapshot plus
// the changes made after the snapshot equals the store. The package knows
// nothing of rings or stores: the caller maps a key to its range token and
// segment and feeds the changes.
package aae

import (
	"encoding/binary"
	"sync"

	"github.com/cespare/xxhash/v2"

	"github.com/kvs-db/kvs/lsm"
)

// Segments is the number of leaves of a tree. With 1024 leaves a range of
// a million keys lists about a thousand keys per differing segment, and a
// tree's leaves (8 KiB) fit easily in a message.
const Segments = 1024

// Segment returns the leaf of the key whose ring hash is h. Keys of a range
// have hashes in one arc of the ring; their low bits spread them evenly
// over the leaves.
func Segment(h uint64) int { return int(h % Segments) }

// EntryHash is the hash of one key at one version: the contribution of the
// record to its leaf. A version names one write, so it stands for the
// record's value and tombstone flag too. The zero version (no record)
// contributes nothing.
func EntryHash(key []byte, v lsm.Version) uint64 {
	if v.IsZero() {
		return 0
	}
	var b [12]byte
	binary.LittleEndian.PutUint64(b[:8], v.Counter)
	binary.LittleEndian.PutUint32(b[8:], v.Node)
	d := xxhash.New()
	_, _ = d.Write(key)
	_, _ = d.Write(b[:])
	return d.Sum64()
}

// Delta is the change to a leaf when a key's record goes from version prev
// to version cur (either may be zero).
func Delta(key []byte, prev, cur lsm.Version) uint64 {
	return EntryHash(key, prev) ^ EntryHash(key, cur)
}

// tree is one range's leaves and root.
type tree struct {
	root   uint64
	leaves [Segments]uint64
}

// Trees is the set of trees of the ranges one node replicates, named by
// the ranges' tokens. It is safe for concurrent use.
type Trees struct {
	mu    sync.Mutex
	trees map[uint64]*tree
}

// New returns empty trees for the ranges tokens.
func New(tokens []uint64) *Trees {
	t := &Trees{trees: make(map[uint64]*tree, len(tokens))}
	for _, tok := range tokens {
		t.trees[tok] = &tree{}
	}
	return t
}

// Update XORs delta into segment seg of range token's tree, and reports
// whether the set has that range (a key of a range the node does not
// replicate changes nothing).
func (t *Trees) Update(token uint64, seg int, delta uint64) bool {
	if delta == 0 {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	tr := t.trees[token]
	if tr == nil {
		return false
	}
	tr.leaves[seg%Segments] ^= delta
	tr.root ^= delta
	return true
}

// Has reports whether the set has range token.
func (t *Trees) Has(token uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.trees[token] != nil
}

// Roots returns the roots of ranges tokens (0 for a range the set does not
// have, as for an empty one).
func (t *Trees) Roots(tokens []uint64) []uint64 {
	out := make([]uint64, len(tokens))
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, tok := range tokens {
		if tr := t.trees[tok]; tr != nil {
			out[i] = tr.root
		}
	}
	return out
}

// Leaves appends range token's leaves to dst (zeros for a range the set
// does not have).
func (t *Trees) Leaves(dst []uint64, token uint64) []uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tr := t.trees[token]; tr != nil {
		return append(dst, tr.leaves[:]...)
	}
	return append(dst, make([]uint64, Segments)...)
}

// DiffLeaves returns the segments where a and b, two trees' leaves,
// differ.
func DiffLeaves(a, b []uint64) []int {
	var out []int
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			out = append(out, i)
		}
	}
	return out
}
