package node

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node/aae"
	"github.com/kvs-db/kvs/node/wire"
)

// Wire messages of anti-entropy (see wire.go; a token or a hash is a u64):
//
//	roots req    = 0x04 epoch:uvarint from:bytes n:uvarint (token root)×n, tokens increasing
//	roots reply  = 0x84 n:uvarint token×n, the ranges whose roots differ
//	leaves req   = 0x05 epoch:uvarint from:bytes n:uvarint token×n, n ≤ 64
//	leaves reply = 0x85 n:uvarint (leaf×1024)×n, in the request's order
//	keys req     = 0x08 epoch:uvarint from:bytes after:bytes n:uvarint (token segments:128 bytes)×n
//	keys reply   = 0x88 more:bool next:bytes n:uvarint (key:bytes version)×n, keys increasing
//
// A keys request lists the entries of the given cells (range token and a
// bitmap of its segments) with keys after after; a reply with more set
// ends at next, where the next request resumes.
const (
	msgRoots       byte = 0x04
	msgLeaves      byte = 0x05
	msgKeys        byte = 0x08
	msgRootsReply  byte = 0x84
	msgLeavesReply byte = 0x85
	msgKeysReply   byte = 0x88
)

// segBytes is the size of one range's segment bitmap on the wire.
const segBytes = aae.Segments / 8

// maxTokens bounds the ranges of one request: a ring of 65536 vnodes times
// a few members is far beyond any real cluster, and the bound keeps a
// hostile count from allocating.
const maxTokens = 1 << 20

func appendHeader(b []byte, typ byte, epoch uint64, from string) []byte {
	b = binary.AppendUvarint(append(b, typ), epoch)
	return wire.AppendBytes(b, []byte(from))
}

// readHeader reads the type, epoch and sender of a request.
func readHeader(r *wire.Reader, typ byte) (epoch uint64, from string) {
	if err := readType(r, typ); err != nil {
		return 0, ""
	}
	epoch = r.Uvarint()
	f := r.Bytes("from", maxTargetBytes)
	if r.Err() == nil && validToken(string(f)) != nil {
		r.Fail("bad node ID %q", f)
	}
	return epoch, string(f)
}

func encodeRoots(epoch uint64, from string, tokens, roots []uint64) []byte {
	b := appendHeader(make([]byte, 0, 16+len(from)+16*len(tokens)), msgRoots, epoch, from)
	b = binary.AppendUvarint(b, uint64(len(tokens)))
	for i, t := range tokens {
		b = binary.LittleEndian.AppendUint64(b, t)
		b = binary.LittleEndian.AppendUint64(b, roots[i])
	}
	return b
}

func decodeRoots(b []byte) (epoch uint64, from string, tokens, roots []uint64, err error) {
	r := wire.NewReader(b)
	epoch, from = readHeader(r, msgRoots)
	n := r.Count("ranges", 16, maxTokens)
	for i := 0; i < n && r.Err() == nil; i++ {
		t, root := r.U64(), r.U64()
		if len(tokens) > 0 && t <= tokens[len(tokens)-1] {
			r.Fail("tokens not increasing")
		}
		tokens, roots = append(tokens, t), append(roots, root)
	}
	return epoch, from, tokens, roots, r.End()
}

func encodeTokens(typ byte, tokens []uint64) []byte {
	b := binary.AppendUvarint([]byte{typ}, uint64(len(tokens)))
	for _, t := range tokens {
		b = binary.LittleEndian.AppendUint64(b, t)
	}
	return b
}

func encodeRootsReply(diff []uint64) []byte { return encodeTokens(msgRootsReply, diff) }

func decodeRootsReply(b []byte) ([]uint64, error) {
	r := wire.NewReader(b)
	if err := readType(r, msgRootsReply); err != nil {
		return nil, err
	}
	n := r.Count("ranges", 8, maxTokens)
	var out []uint64
	for i := 0; i < n && r.Err() == nil; i++ {
		out = append(out, r.U64())
	}
	return out, r.End()
}

func encodeLeaves(epoch uint64, from string, tokens []uint64) []byte {
	b := appendHeader(nil, msgLeaves, epoch, from)
	b = binary.AppendUvarint(b, uint64(len(tokens)))
	for _, t := range tokens {
		b = binary.LittleEndian.AppendUint64(b, t)
	}
	return b
}

func decodeLeaves(b []byte) (epoch uint64, from string, tokens []uint64, err error) {
	r := wire.NewReader(b)
	epoch, from = readHeader(r, msgLeaves)
	n := r.Count("ranges", 8, aeLeavesPerRequest)
	for i := 0; i < n && r.Err() == nil; i++ {
		tokens = append(tokens, r.U64())
	}
	return epoch, from, tokens, r.End()
}

func encodeLeavesReply(leaves [][]uint64) []byte {
	b := append(make([]byte, 0, 4+len(leaves)*8*aae.Segments), msgLeavesReply)
	b = binary.AppendUvarint(b, uint64(len(leaves)))
	for _, l := range leaves {
		for _, x := range l {
			b = binary.LittleEndian.AppendUint64(b, x)
		}
	}
	return b
}

func decodeLeavesReply(b []byte, want int) ([][]uint64, error) {
	r := wire.NewReader(b)
	if err := readType(r, msgLeavesReply); err != nil {
		return nil, err
	}
	n := r.Count("trees", 8*aae.Segments, aeLeavesPerRequest)
	if r.Err() == nil && n != want {
		r.Fail("%d trees, asked for %d", n, want)
	}
	out := make([][]uint64, 0, n)
	for i := 0; i < n && r.Err() == nil; i++ {
		l := make([]uint64, aae.Segments)
		for j := range l {
			l[j] = r.U64()
		}
		out = append(out, l)
	}
	return out, r.End()
}

func encodeKeys(epoch uint64, from string, after []byte, cells cellSet) []byte {
	toks := make([]uint64, 0, len(cells))
	for t := range cells {
		toks = append(toks, t)
	}
	slices.Sort(toks)
	b := appendHeader(nil, msgKeys, epoch, from)
	b = wire.AppendBytes(b, after)
	b = binary.AppendUvarint(b, uint64(len(toks)))
	for _, t := range toks {
		b = binary.LittleEndian.AppendUint64(b, t)
		for _, w := range cells[t] {
			b = binary.LittleEndian.AppendUint64(b, w)
		}
	}
	return b
}

func decodeKeys(b []byte) (epoch uint64, from string, after []byte, cells cellSet, err error) {
	r := wire.NewReader(b)
	epoch, from = readHeader(r, msgKeys)
	after = r.Bytes("after", wire.MaxKeyBytes)
	n := r.Count("cells", 8+segBytes, maxTokens)
	cells = cellSet{}
	for i := 0; i < n && r.Err() == nil; i++ {
		t := r.U64()
		bm := new([aae.Segments / 64]uint64)
		for j := range bm {
			bm[j] = r.U64()
		}
		if cells[t] != nil {
			r.Fail("range %d listed twice", t)
		}
		cells[t] = bm
	}
	if len(after) == 0 {
		after = nil
	}
	return epoch, from, after, cells, r.End()
}

// aeEntry is one key and version in a keys reply.
type aeEntry struct {
	key []byte
	v   lsm.Version
}

func encodeKeysReply(entries []aeEntry, next []byte, more bool) []byte {
	b := []byte{msgKeysReply, 0}
	if more {
		b[1] = 1
	}
	b = wire.AppendBytes(b, next)
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for _, e := range entries {
		b = wire.AppendBytes(b, e.key)
		b = wire.AppendVersion(b, e.v)
	}
	return b
}

func decodeKeysReply(b []byte) (entries []aeEntry, next []byte, more bool, err error) {
	r := wire.NewReader(b)
	if err := readType(r, msgKeysReply); err != nil {
		return nil, nil, false, err
	}
	more = r.Bool()
	next = r.Bytes("next", wire.MaxKeyBytes)
	n := r.Count("keys", 3, len(b))
	for i := 0; i < n && r.Err() == nil; i++ {
		var e aeEntry
		off := r.Offset()
		e.key = r.Bytes("key", wire.MaxKeyBytes)
		e.v = r.Version()
		if r.Err() == nil && (len(e.key) == 0 || (len(entries) > 0 && bytes.Compare(e.key, entries[len(entries)-1].key) <= 0)) {
			r.FailAt(off, "keys empty or out of order")
		}
		entries = append(entries, e)
	}
	if r.Err() == nil && more && (len(next) == 0 || (len(entries) > 0 && bytes.Compare(next, entries[len(entries)-1].key) < 0)) {
		r.Fail("a page with more ends before its last key")
	}
	if len(next) == 0 {
		next = nil
	}
	return entries, next, more, r.End()
}

// aeCheck validates the epoch and sender of an anti-entropy request: the
// node must be at the same epoch, with its trees of that epoch built. It
// returns the trees, or the reply to send instead.
func (n *Node) aeCheck(op string, epoch uint64, from string, err error) (*treeSet, []byte) {
	if err != nil {
		n.met.badRequests.WithLabelValues(op).Inc()
		return nil, encodeError(err)
	}
	if cur := n.epoch(); epoch < cur {
		return nil, encodeStale(cur)
	} else if epoch > cur {
		n.behind.Store(true)
		n.wakeTopology()
		return nil, encodeError(fmt.Errorf("%w: at epoch %d, asked at %d", ErrNotReady, cur, epoch))
	}
	ts, terr := n.readyTrees()
	if terr != nil {
		return nil, encodeError(terr)
	}
	return ts, nil
}

// sharedSet returns the ranges this node shares with peer, as a set.
func (n *Node) sharedSet(ts *treeSet, peer string) map[uint64]bool {
	set := map[uint64]bool{}
	for _, t := range sharedTokens(&view{place: ts.place}, n.self, peer) {
		set[t] = true
	}
	return set
}

// handleRoots answers the ranges whose roots differ from the sender's. It
// reads one word per shared range and scans nothing, so MaxScanRequests
// leaves it alone: a round with nothing to repair never meets a busy peer.
func (n *Node) handleRoots(req []byte) []byte {
	epoch, from, toks, theirs, err := decodeRoots(req)
	ts, bad := n.aeCheck(OpRoots, epoch, from, err)
	if bad != nil {
		return bad
	}
	shared := n.sharedSet(ts, from)
	for _, t := range toks {
		if !shared[t] {
			return encodeError(fmt.Errorf("range %d is not one %s and %s share at epoch %d", t, n.self, from, epoch))
		}
	}
	mine := ts.trees.Roots(toks)
	var diff []uint64
	for i := range toks {
		if mine[i] != theirs[i] {
			diff = append(diff, toks[i])
		}
	}
	return encodeRootsReply(diff)
}

// handleLeaves answers the leaves of the asked ranges (up to 512 KiB):
// one of the requests MaxScanRequests bounds.
func (n *Node) handleLeaves(req []byte) []byte {
	done, busy := n.scanSlot(OpLeaves)
	if busy != nil {
		return busy
	}
	defer done()
	epoch, from, toks, err := decodeLeaves(req)
	ts, bad := n.aeCheck(OpLeaves, epoch, from, err)
	if bad != nil {
		return bad
	}
	shared := n.sharedSet(ts, from)
	leaves := make([][]uint64, 0, len(toks))
	for _, t := range toks {
		if !shared[t] {
			return encodeError(fmt.Errorf("range %d is not one %s and %s share at epoch %d", t, n.self, from, epoch))
		}
		leaves = append(leaves, ts.trees.Leaves(nil, t))
	}
	return encodeLeavesReply(leaves)
}

// handleKeys lists this node's keys and versions in the asked cells, from
// after on, one page at a time; a page ends when it is full or the scan
// has taken half a request timeout. MaxScanRequests bounds it.
func (n *Node) handleKeys(req []byte) []byte {
	done, busy := n.scanSlot(OpKeys)
	if busy != nil {
		return busy
	}
	defer done()
	epoch, from, after, cells, err := decodeKeys(req)
	ts, bad := n.aeCheck(OpKeys, epoch, from, err)
	if bad != nil {
		return bad
	}
	shared := n.sharedSet(ts, from)
	for t := range cells {
		if !shared[t] {
			return encodeError(fmt.Errorf("range %d is not one %s and %s share at epoch %d", t, n.self, from, epoch))
		}
	}
	var start []byte
	if after != nil {
		start = append(bytes.Clone(after), 0)
	}
	deadline := time.Now().Add(n.cfg.RequestTimeout / 2)
	var entries []aeEntry
	var last []byte
	size, more, examined := 0, false, 0
	err = n.store.Scan(start, nil, func(r lsm.Record) bool {
		if size >= n.aePageBytes || (examined%256 == 255 && time.Now().After(deadline)) {
			more = true
			return false
		}
		examined++
		last = r.Key
		h := ts.place.Current.Hash(r.Key)
		if cells.has(ts.place.Current.Token(h), aae.Segment(h)) {
			entries = append(entries, aeEntry{key: r.Key, v: r.Version})
			size += len(r.Key) + 16
		}
		return true
	})
	if err != nil {
		return encodeError(fmt.Errorf("keys: %w", err))
	}
	if !more {
		last = nil
	}
	return encodeKeysReply(entries, last, more)
}
