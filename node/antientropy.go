package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/kvs-db/kvs/lsm"
)

// Anti-entropy: replicas that share keys periodically compare digests of
// them and the one holding newer records pushes them, so that replicas
// converge even for keys nobody reads and whose hints were lost.
//
// Every AntiEntropyInterval a node picks the next live peer (round robin) and:
//
//  1. digests the keys both replicate (the key's preference list holds both)
//     into aeBuckets buckets by xxhash64(key): each bucket is the XOR of a
//     hash of every (key, version, tombstone) in it, and sends them ("digest");
//  2. the peer digests its own shared keys the same way and answers with the
//     buckets that differ;
//  3. the node asks for the peer's keys and versions in those buckets
//     ("sync", paged by key), and pushes, as ordinary "put" requests, every
//     record of those buckets that the peer lacks or holds older.
//
// Only the node holding the newer record pushes; the peer's own rounds push
// the other way. A push is applied only if newer, so a round can never undo
// a write. Each round scans the node's store (and the peer's, once per
// request); this is simple and correct, not cheap for very large stores: an
// incrementally kept hash tree (Riak's TicTac AAE) is the next step.

// aeBuckets is the number of digest buckets.
const aeBuckets = 256

// aeSyncPageBytes bounds one page of a sync reply, well within a NATS
// message (Node.aePageBytes; tests make it small).
const aeSyncPageBytes = 256 << 10

// shares reports whether key's preference list (in ring r, of n replicas)
// holds both a and b.
func shares(prefs []string, a, b string) bool {
	return slices.Contains(prefs, a) && slices.Contains(prefs, b)
}

func aeBucket(key []byte) int { return int(xxhash.Sum64(key) % aeBuckets) }

func aeEntryHash(key []byte, v lsm.Version, tomb bool) uint64 {
	d := xxhash.New()
	_, _ = d.Write(key)
	var b [13]byte
	binary.LittleEndian.PutUint64(b[:8], v.Counter)
	binary.LittleEndian.PutUint32(b[8:12], v.Node)
	if tomb {
		b[12] = 1
	}
	_, _ = d.Write(b[:])
	return d.Sum64()
}

// digests computes this node's bucket digests of the keys it shares with
// peer.
func (n *Node) digests(peer string) ([aeBuckets]uint64, error) {
	var out [aeBuckets]uint64
	r := n.mem.ring()
	nEff := min(n.cfg.N, r.Len())
	var prefs []string
	err := n.store.Scan(nil, nil, func(rec lsm.Record) bool {
		prefs = r.AppendPreferenceList(prefs[:0], rec.Key, nEff)
		if shares(prefs, n.self, peer) {
			out[aeBucket(rec.Key)] ^= aeEntryHash(rec.Key, rec.Version, rec.Tombstone)
		}
		return true
	})
	return out, err
}

// Wire messages of anti-entropy (see wire.go for the conventions):
//
//	digest req   = 0x04 from:bytes digest:8 bytes little-endian × 256
//	digest reply = 0x84 n:uvarint bucket:uvarint × n (increasing, < 256)
//	sync req     = 0x05 from:bytes buckets:32-byte bitmap after:bytes
//	sync reply   = 0x85 more:byte(0|1) n:uvarint
//	               (key:bytes counter:uvarint node:uvarint tombstone:byte(0|1)) × n
const (
	msgDigest      byte = 0x04
	msgSync        byte = 0x05
	msgDigestReply byte = 0x84
	msgSyncReply   byte = 0x85
)

// OpDigest and OpSync are the anti-entropy operations.
const (
	// OpDigest compares bucket digests (digest request, digest reply).
	OpDigest = "digest"
	// OpSync lists keys and versions of some buckets (sync request, sync reply).
	OpSync = "sync"
)

type aeEntry struct {
	key  []byte
	v    lsm.Version
	tomb bool
}

func encodeDigest(from string, d *[aeBuckets]uint64) []byte {
	b := make([]byte, 0, 2+len(from)+8*aeBuckets)
	b = appendBytes(append(b, msgDigest), []byte(from))
	for _, x := range d {
		b = binary.LittleEndian.AppendUint64(b, x)
	}
	return b
}

func decodeDigest(b []byte) (string, [aeBuckets]uint64, error) {
	var d [aeBuckets]uint64
	r := reader{b: b}
	if err := r.start(msgDigest); err != nil {
		return "", d, err
	}
	from := r.bytes("from", maxTargetBytes)
	if r.err == nil && len(r.b)-r.off < 8*aeBuckets {
		r.fail("truncated digests")
	}
	if r.err != nil {
		return "", d, r.err
	}
	for i := range d {
		d[i] = binary.LittleEndian.Uint64(r.b[r.off:])
		r.off += 8
	}
	if err := r.end(); err != nil {
		return "", d, err
	}
	return string(from), d, nil
}

func encodeDigestReply(buckets []int) []byte {
	b := binary.AppendUvarint([]byte{msgDigestReply}, uint64(len(buckets)))
	for _, i := range buckets {
		b = binary.AppendUvarint(b, uint64(i))
	}
	return b
}

func decodeDigestReply(b []byte) ([]int, error) {
	r := reader{b: b}
	if err := r.start(msgDigestReply); err != nil {
		return nil, err
	}
	cnt := r.uvarint()
	if cnt > aeBuckets {
		r.fail("%d buckets", cnt)
	}
	var out []int
	for i := uint64(0); i < cnt && r.err == nil; i++ {
		x := r.uvarint()
		if x >= aeBuckets || (len(out) > 0 && int(x) <= out[len(out)-1]) {
			r.fail("bucket %d out of order or range", x)
		}
		out = append(out, int(x))
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return out, nil
}

type bucketSet [aeBuckets / 8]byte

func (s *bucketSet) add(i int)            { s[i/8] |= 1 << (i % 8) }
func (s *bucketSet) has(i int) bool       { return s[i/8]&(1<<(i%8)) != 0 }
func (s *bucketSet) hasKey(k []byte) bool { return s.has(aeBucket(k)) }

func encodeSync(from string, set *bucketSet, after []byte) []byte {
	b := make([]byte, 0, 4+len(from)+len(set)+len(after))
	b = appendBytes(append(b, msgSync), []byte(from))
	b = append(b, set[:]...)
	return appendBytes(b, after)
}

func decodeSync(b []byte) (from string, set bucketSet, after []byte, err error) {
	r := reader{b: b}
	if err := r.start(msgSync); err != nil {
		return "", set, nil, err
	}
	f := r.bytes("from", maxTargetBytes)
	if r.err == nil && len(r.b)-r.off < len(set) {
		r.fail("truncated bucket set")
	}
	if r.err == nil {
		copy(set[:], r.b[r.off:])
		r.off += len(set)
	}
	after = r.bytes("after", MaxKeyBytes)
	if err := r.end(); err != nil {
		return "", set, nil, err
	}
	return string(f), set, after, nil
}

func encodeSyncReply(entries []aeEntry, more bool) []byte {
	b := []byte{msgSyncReply, 0}
	if more {
		b[1] = 1
	}
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for _, e := range entries {
		b = appendBytes(b, e.key)
		b = binary.AppendUvarint(b, e.v.Counter)
		b = binary.AppendUvarint(b, uint64(e.v.Node))
		if e.tomb {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	return b
}

func decodeSyncReply(b []byte) ([]aeEntry, bool, error) {
	r := reader{b: b}
	if err := r.start(msgSyncReply); err != nil {
		return nil, false, err
	}
	more := r.bool()
	cnt := r.uvarint()
	if cnt > uint64(len(b)) { // every entry takes at least 4 bytes
		r.fail("%d entries in %d bytes", cnt, len(b))
	}
	var out []aeEntry
	for i := uint64(0); i < cnt && r.err == nil; i++ {
		var e aeEntry
		e.key = r.bytes("key", MaxKeyBytes)
		e.v.Counter = r.uvarint()
		node := r.uvarint()
		if node > math.MaxUint32 {
			r.fail("version node %d over 32 bits", node)
		}
		e.v.Node = uint32(node)
		e.tomb = r.bool()
		if r.err == nil && (len(e.key) == 0 || (len(out) > 0 && bytes.Compare(e.key, out[len(out)-1].key) <= 0)) {
			r.fail("keys empty or out of order")
		}
		out = append(out, e)
	}
	if err := r.end(); err != nil {
		return nil, false, err
	}
	return out, more, nil
}

// handleDigest compares a peer's digests with this node's and answers with
// the buckets that differ.
func (n *Node) handleDigest(req []byte) []byte {
	from, theirs, err := decodeDigest(req)
	if err == nil {
		err = validToken(from)
	}
	if err != nil {
		n.met.badRequests.WithLabelValues(OpDigest).Inc()
		return encodeError(err)
	}
	ours, err := n.digests(from)
	if err != nil {
		return encodeError(fmt.Errorf("digest: %w", err))
	}
	var diff []int
	for i := range ours {
		if ours[i] != theirs[i] {
			diff = append(diff, i)
		}
	}
	return encodeDigestReply(diff)
}

// handleSync lists the keys and versions this node shares with a peer in
// the given buckets, from after on, one page at a time.
func (n *Node) handleSync(req []byte) []byte {
	from, set, after, err := decodeSync(req)
	if err == nil {
		err = validToken(from)
	}
	if err != nil {
		n.met.badRequests.WithLabelValues(OpSync).Inc()
		return encodeError(err)
	}
	r := n.mem.ring()
	nEff := min(n.cfg.N, r.Len())
	var start []byte
	if len(after) > 0 {
		start = append(bytes.Clone(after), 0)
	}
	var entries []aeEntry
	size, more := 0, false
	var prefs []string
	err = n.store.Scan(start, nil, func(rec lsm.Record) bool {
		if !set.hasKey(rec.Key) {
			return true
		}
		prefs = r.AppendPreferenceList(prefs[:0], rec.Key, nEff)
		if !shares(prefs, n.self, from) {
			return true
		}
		if size >= n.aePageBytes {
			more = true
			return false
		}
		entries = append(entries, aeEntry{key: rec.Key, v: rec.Version, tomb: rec.Tombstone})
		size += len(rec.Key) + 24
		return true
	})
	if err != nil {
		return encodeError(fmt.Errorf("sync: %w", err))
	}
	return encodeSyncReply(entries, more)
}

// antiEntropyLoop runs a round with the next live peer every
// AntiEntropyInterval.
func (n *Node) antiEntropyLoop(ctx context.Context) {
	defer n.loops.Done()
	t := time.NewTicker(n.cfg.AntiEntropyInterval)
	defer t.Stop()
	next := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n.Ready() != nil {
			continue
		}
		var peers []string
		for _, id := range n.mem.ring().Members() {
			if id != n.self && n.mem.alive(id) {
				peers = append(peers, id)
			}
		}
		if len(peers) == 0 {
			continue
		}
		peer := peers[next%len(peers)]
		next++
		pushed, err := n.antiEntropyRound(ctx, peer)
		n.met.aeRounds.Inc()
		switch {
		case err != nil:
			n.log.Info("anti-entropy round", "peer", peer, "pushed", pushed, "err", err)
		case pushed > 0:
			n.log.Info("anti-entropy pushed records", "peer", peer, "pushed", pushed)
		}
	}
}

// antiEntropyRound brings peer up to date with this node's newer records of
// the keys they share, and returns how many records it pushed.
func (n *Node) antiEntropyRound(ctx context.Context, peer string) (int, error) {
	ours, err := n.digests(peer)
	if err != nil {
		return 0, fmt.Errorf("digest: %w", err)
	}
	rep, err := n.request(ctx, peer, OpDigest, encodeDigest(n.self, &ours))
	if err != nil {
		return 0, err
	}
	diff, err := decodeDigestReply(rep)
	if err != nil || len(diff) == 0 {
		return 0, err
	}
	var set bucketSet
	for _, i := range diff {
		set.add(i)
	}
	// The peer's versions of the differing buckets.
	theirs := map[string]lsm.Version{}
	var after []byte
	for {
		rep, err := n.request(ctx, peer, OpSync, encodeSync(n.self, &set, after))
		if err != nil {
			return 0, err
		}
		entries, more, err := decodeSyncReply(rep)
		if err != nil {
			return 0, err
		}
		for _, e := range entries {
			theirs[string(e.key)] = e.v
		}
		if !more || len(entries) == 0 {
			break
		}
		after = entries[len(entries)-1].key
	}
	// Our records there that the peer lacks or holds older.
	r := n.mem.ring()
	nEff := min(n.cfg.N, r.Len())
	var push [][]byte
	var prefs []string
	err = n.store.Scan(nil, nil, func(rec lsm.Record) bool {
		if !set.hasKey(rec.Key) {
			return true
		}
		prefs = r.AppendPreferenceList(prefs[:0], rec.Key, nEff)
		if !shares(prefs, n.self, peer) {
			return true
		}
		if v, ok := theirs[string(rec.Key)]; !ok || v.Less(rec.Version) {
			push = append(push, rec.Key)
		}
		return true
	})
	if err != nil {
		return 0, fmt.Errorf("scan: %w", err)
	}
	pushed := 0
	for _, key := range push {
		rec, err := n.store.Get(key)
		if err != nil {
			continue // gone meanwhile (compaction of an old tombstone)
		}
		rep, err := n.request(ctx, peer, OpPut, encodePut(&rec))
		if err == nil {
			_, _, err = decodeAck(rep)
		}
		if err != nil {
			return pushed, fmt.Errorf("push %q: %w", key, err)
		}
		pushed++
		n.met.aeKeysPushed.Inc()
	}
	return pushed, nil
}

// request is a Transport request bounded by RequestTimeout. An error reply
// is left to the reply's decoder, which returns it as a *RemoteError.
func (n *Node) request(ctx context.Context, to, op string, req []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	return n.tr.Request(ctx, to, op, req)
}
