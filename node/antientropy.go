package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node/aae"
	"github.com/kvs-db/kvs/node/topology"
)

// Anti-entropy: replicas of a range compare hash trees (package aae) and
// exchange only the keys that differ, so they converge even for keys nobody
// reads and whose hints were lost.
//
// The trees are kept by the store's OnApply hook (StoreHooks), under the
// same lock that orders the store's snapshots, and rebuilt from a snapshot
// when the node starts and whenever the epoch moves the ranges: the trees
// switch to the new set at the snapshot, so the set is the snapshot's
// entries plus every change after it, exact.
//
// Every AntiEntropyInterval a node runs a round with the next live member
// it shares ranges with (round robin), and `kvs repair` runs one with each
// at once:
//
//  1. roots: it sends the roots of the ranges both replicate; the peer
//     answers with the ranges whose roots differ. With no difference the
//     round ends here: 16 bytes per shared range, whatever the data.
//  2. leaves: for the differing ranges it fetches the peer's leaves and
//     finds the differing segments.
//  3. keys: it lists the peer's keys and versions in those segments, page by
//     page in key order, scans its own store over the same key window, and
//     pushes what it holds newer (put) and pulls what the peer holds newer
//     (get), each applied only if newer.
//
// A round that ends with nothing left to repair marks the peer synced as of
// the round's start: tombstones older than the last sync with every peer
// may be dropped by compaction (TombstoneHorizon), never earlier.

// Anti-entropy operations.
const (
	// OpRoots compares range roots (roots request, roots reply).
	OpRoots = "roots"
	// OpLeaves fetches ranges' leaves (leaves request, leaves reply).
	OpLeaves = "leaves"
	// OpKeys lists the keys and versions of some segments (keys request,
	// keys reply).
	OpKeys = "keys"
)

// aeLeavesPerRequest bounds the trees of one leaves reply (8 KiB each).
const aeLeavesPerRequest = 64

// aeKeysPageBytes bounds a keys reply page (Node.aePageBytes; tests make
// it small).
const aeKeysPageBytes = 256 << 10

// aeParallel is how many pushes or pulls of a round run at once.
const aeParallel = 16

// treeSet is the hash trees of one epoch's ranges.
type treeSet struct {
	epoch uint64
	place *topology.Placement
	trees *aae.Trees
	ready atomic.Bool // the rebuild scan has finished
}

// StoreHooks connects a store opened before its node to the node: pass
// OnApply and TombstoneHorizon as the store's hooks (lsm.Options) and the
// StoreHooks as Config.Hooks. Until the node exists, OnApply does nothing
// and TombstoneHorizon keeps every tombstone.
type StoreHooks struct {
	n atomic.Pointer[Node]
}

// OnApply is the store's lsm.Options.OnApply: it keeps the hash trees.
func (h *StoreHooks) OnApply(key []byte, prev, cur lsm.Version) {
	if n := h.n.Load(); n != nil {
		n.onApply(key, prev, cur)
	}
}

// TombstoneHorizon is the store's lsm.Options.TombstoneHorizon: the HLC
// counter below which every peer has been synced since a tombstone was
// written.
func (h *StoreHooks) TombstoneHorizon() uint64 {
	if n := h.n.Load(); n != nil {
		return n.tombstoneHorizon()
	}
	return 0
}

// onApply updates the trees with one applied record.
func (n *Node) onApply(key []byte, prev, cur lsm.Version) {
	ts := n.trees.Load()
	if ts == nil {
		return
	}
	h := ts.place.Current.Hash(key)
	ts.trees.Update(ts.place.Current.Token(h), aae.Segment(h), aae.Delta(key, prev, cur))
}

// reconcileTrees rebuilds the trees when the epoch has moved the ranges.
func (n *Node) reconcileTrees(ctx context.Context, v *view) {
	if n.cfg.Hooks == nil {
		return
	}
	if ts := n.trees.Load(); ts != nil && ts.epoch == v.topo.Epoch {
		return
	}
	if !n.rebuilding.CompareAndSwap(false, true) {
		return
	}
	n.loops.Add(1)
	go func() {
		defer n.loops.Done()
		defer n.rebuilding.Store(false)
		start := time.Now()
		ts, err := n.rebuildTrees(ctx, v)
		if err != nil {
			if ctx.Err() == nil {
				n.log.Warn("rebuild hash trees", "epoch", v.topo.Epoch, "err", err)
			}
			return
		}
		n.log.Debug("hash trees rebuilt", "epoch", ts.epoch, "took", time.Since(start).Round(time.Millisecond))
		n.wakeTopology()
	}()
}

// rebuildTrees builds the trees of v's ranges from a snapshot of the store;
// the node's trees switch to them at the snapshot, so that every later
// write lands in them too.
func (n *Node) rebuildTrees(ctx context.Context, v *view) (*treeSet, error) {
	ts := &treeSet{epoch: v.topo.Epoch, place: v.place, trees: aae.New(n.ownTokens(v))}
	err := n.store.ScanAt(nil, nil, func() { n.trees.Store(ts) }, func(r lsm.Record) bool {
		h := v.place.Current.Hash(r.Key)
		ts.trees.Update(v.place.Current.Token(h), aae.Segment(h), aae.EntryHash(r.Key, r.Version))
		return ctx.Err() == nil
	})
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return nil, err
	}
	ts.ready.Store(true)
	return ts, nil
}

// ownTokens returns the tokens of the ranges this node replicates in v.
func (n *Node) ownTokens(v *view) []uint64 {
	var prefs []string
	var toks []uint64
	for _, tok := range v.place.Current.Tokens() {
		prefs = v.place.Replicas(prefs[:0], tok)
		if contains(prefs, n.self) {
			toks = append(toks, tok)
		}
	}
	return toks
}

// sharedTokens returns the tokens of the ranges both this node and peer
// replicate in v.
func sharedTokens(v *view, self, peer string) []uint64 {
	var toks []uint64
	var prefs []string
	for _, tok := range v.place.Current.Tokens() {
		prefs = v.place.Replicas(prefs[:0], tok)
		if contains(prefs, self) && contains(prefs, peer) {
			toks = append(toks, tok)
		}
	}
	return toks
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// readyTrees returns the trees of the current epoch once rebuilt, or an
// error wrapping ErrNotReady.
func (n *Node) readyTrees() (*treeSet, error) {
	v, ts := n.view(), n.trees.Load()
	switch {
	case v == nil:
		return nil, fmt.Errorf("%w: no topology", ErrNotReady)
	case ts == nil || ts.epoch != v.topo.Epoch || !ts.ready.Load():
		return nil, fmt.Errorf("%w: hash trees of epoch %d not built yet", ErrNotReady, v.topo.Epoch)
	}
	return ts, nil
}

// aePeers returns the live members this node shares ranges with.
func (n *Node) aePeers(v *view) []string {
	var out []string
	for _, id := range v.topo.IDs(topology.Normal, topology.Leaving) {
		if id != n.self && n.mem.alive(id) && len(sharedTokens(v, n.self, id)) > 0 {
			out = append(out, id)
		}
	}
	return out
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
		v := n.view()
		if n.Ready() != nil || v == nil {
			continue
		}
		peers := n.aePeers(v)
		if len(peers) == 0 {
			continue
		}
		peer := peers[next%len(peers)]
		next++
		st, err := n.antiEntropyRound(ctx, peer)
		switch {
		case errors.Is(err, ErrOverloaded):
			n.log.Debug("anti-entropy round: peer overloaded; next round at the next interval", "peer", peer, "err", err)
		case err != nil:
			n.log.Info("anti-entropy round", "peer", peer, "err", err)
		case st.Pushed+st.Pulled > 0:
			n.log.Info("anti-entropy repaired records", "peer", peer, "pushed", st.Pushed, "pulled", st.Pulled,
				"ranges_differing", st.RangesDiffering)
		}
	}
}

// RoundStats is what one anti-entropy round with a peer did.
type RoundStats struct {
	// Peer is the other replica.
	Peer string
	// Ranges is how many ranges the two share; RangesDiffering how many
	// had different roots; Segments how many leaves differed.
	Ranges, RangesDiffering, Segments int
	// Keys is how many of the peer's entries were compared; Pushed and
	// Pulled how many records moved each way.
	Keys, Pushed, Pulled int
	// BytesSent and BytesReceived count the round's request and reply
	// payloads.
	BytesSent, BytesReceived int
}

// antiEntropyRound compares the trees this node shares with peer and
// repairs what differs, both ways.
func (n *Node) antiEntropyRound(ctx context.Context, peer string) (RoundStats, error) {
	st := RoundStats{Peer: peer}
	n.met.aeRounds.Inc()
	ts, err := n.readyTrees()
	if err != nil {
		return st, err
	}
	start := n.clock.now()
	v := n.view()
	toks := sharedTokens(v, n.self, peer)
	st.Ranges = len(toks)
	rep, err := n.aeRequest(ctx, &st, peer, OpRoots, encodeRoots(ts.epoch, n.self, toks, ts.trees.Roots(toks)))
	if err != nil {
		return st, err
	}
	diff, err := decodeRootsReply(rep)
	if err != nil {
		return st, err
	}
	st.RangesDiffering = len(diff)
	n.met.aeRangesDiffering.Add(float64(len(diff)))
	if len(diff) > 0 {
		cells, err := n.diffSegments(ctx, &st, ts, peer, diff)
		if err != nil {
			return st, err
		}
		if err := n.syncCells(ctx, &st, ts, peer, cells); err != nil {
			return st, err
		}
	}
	n.markSynced(peer, start)
	return st, nil
}

// aeRequest sends one anti-entropy request and counts its bytes.
func (n *Node) aeRequest(ctx context.Context, st *RoundStats, peer, op string, req []byte) ([]byte, error) {
	st.BytesSent += len(req)
	n.met.aeBytes.Add(float64(len(req)))
	rep, err := n.rc.request(ctx, peer, op, req)
	st.BytesReceived += len(rep)
	return rep, err
}

// diffSegments fetches the peer's leaves of the differing ranges and
// returns the differing segments.
func (n *Node) diffSegments(ctx context.Context, st *RoundStats, ts *treeSet, peer string, diff []uint64) (cellSet, error) {
	cells := cellSet{}
	for len(diff) > 0 {
		batch := diff[:min(len(diff), aeLeavesPerRequest)]
		diff = diff[len(batch):]
		rep, err := n.aeRequest(ctx, st, peer, OpLeaves, encodeLeaves(ts.epoch, n.self, batch))
		if err != nil {
			return nil, err
		}
		theirs, err := decodeLeavesReply(rep, len(batch))
		if err != nil {
			return nil, err
		}
		var mine []uint64
		for i, tok := range batch {
			mine = ts.trees.Leaves(mine[:0], tok)
			for _, seg := range aae.DiffLeaves(mine, theirs[i]) {
				cells.add(tok, seg)
				st.Segments++
			}
		}
	}
	return cells, nil
}

// syncCells lists the peer's entries in cells page by page and, for each
// page's key window, compares them with this node's and moves the newer
// records both ways.
func (n *Node) syncCells(ctx context.Context, st *RoundStats, ts *treeSet, peer string, cells cellSet) error {
	var after []byte
	for {
		rep, err := n.aeRequest(ctx, st, peer, OpKeys, encodeKeys(ts.epoch, n.self, after, cells))
		if err != nil {
			return err
		}
		theirs, next, more, err := decodeKeysReply(rep)
		if err != nil {
			return err
		}
		st.Keys += len(theirs)
		mine, err := n.cellEntries(ts, cells, after, next, more)
		if err != nil {
			return err
		}
		if err := n.exchange(ctx, st, ts.epoch, peer, mine, theirs); err != nil {
			return err
		}
		if !more {
			return nil
		}
		after = next
	}
}

// cellEntries lists this node's entries in cells with after < key <= upto
// (no upper bound when !bounded).
func (n *Node) cellEntries(ts *treeSet, cells cellSet, after, upto []byte, bounded bool) (map[string]lsm.Version, error) {
	out := map[string]lsm.Version{}
	var start []byte
	if after != nil {
		start = append(bytes.Clone(after), 0)
	}
	var end []byte
	if bounded {
		end = append(bytes.Clone(upto), 0)
	}
	err := n.store.Scan(start, end, func(r lsm.Record) bool {
		h := ts.place.Current.Hash(r.Key)
		if cells.has(ts.place.Current.Token(h), aae.Segment(h)) {
			out[string(r.Key)] = r.Version
		}
		return true
	})
	return out, err
}

// exchange pushes the records this node holds newer than the peer and
// pulls those the peer holds newer.
func (n *Node) exchange(ctx context.Context, st *RoundStats, epoch uint64, peer string, mine map[string]lsm.Version, theirs []aeEntry) error {
	var push, pull [][]byte
	seen := make(map[string]bool, len(theirs))
	for _, e := range theirs {
		seen[string(e.key)] = true
		if v, ok := mine[string(e.key)]; !ok || v.Less(e.v) {
			pull = append(pull, e.key)
		} else if e.v.Less(v) {
			push = append(push, e.key)
		}
	}
	for k := range mine {
		if !seen[k] {
			push = append(push, []byte(k))
		}
	}
	var (
		mu     sync.Mutex
		errs   []error
		wg     sync.WaitGroup
		sem    = make(chan struct{}, aeParallel)
		moved  = func(p *int) { mu.Lock(); *p++; mu.Unlock() }
		failed = func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }
	)
	for _, key := range push {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := n.aePush(ctx, epoch, peer, key); err != nil {
				failed(fmt.Errorf("push %q: %w", key, err))
				return
			}
			moved(&st.Pushed)
			n.met.aeKeysPushed.Inc()
		}()
	}
	for _, key := range pull {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := n.aePull(ctx, epoch, peer, key); err != nil {
				failed(fmt.Errorf("pull %q: %w", key, err))
				return
			}
			moved(&st.Pulled)
			n.met.aeKeysPulled.Inc()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// aePush sends this node's record of key to peer.
func (n *Node) aePush(ctx context.Context, epoch uint64, peer string, key []byte) error {
	rec, err := n.store.Get(key)
	if errors.Is(err, lsm.ErrNotFound) {
		return nil // gone meanwhile (purged, or a tombstone compacted away)
	}
	if err != nil {
		return err
	}
	_, err = n.rc.put(ctx, peer, epoch, &rec, nil)
	return err
}

// aePull fetches peer's record of key and applies it here if newer.
func (n *Node) aePull(ctx context.Context, epoch uint64, peer string, key []byte) error {
	rec, found, err := n.rc.get(ctx, peer, epoch, key, nil)
	if err != nil || !found {
		return err
	}
	_, _, err = n.LocalApply(rec)
	return err
}

// markSynced records that a round with peer that began at HLC reading
// start left nothing to repair.
func (n *Node) markSynced(peer string, start uint64) {
	n.syncMu.Lock()
	defer n.syncMu.Unlock()
	if n.synced == nil {
		n.synced = map[string]uint64{}
	}
	n.synced[peer] = max(n.synced[peer], start)
}

// tombstoneHorizon is the HLC counter below which a tombstone has reached
// every replica it shares ranges with: the oldest last sync among this
// node's peers (every counter when it has none; 0 before it knows the
// ring or while a change is pending, which keeps every tombstone).
func (n *Node) tombstoneHorizon() uint64 {
	v := n.view()
	if v == nil || v.topo.Change != nil {
		return 0
	}
	n.syncMu.Lock()
	defer n.syncMu.Unlock()
	h := uint64(math.MaxUint64)
	for _, id := range v.topo.IDs(topology.Normal, topology.Leaving) {
		if id != n.self && len(sharedTokens(v, n.self, id)) > 0 {
			h = min(h, n.synced[id])
		}
	}
	return h
}

// cellSet is a set of (range token, segment) cells.
type cellSet map[uint64]*[aae.Segments / 64]uint64

func (c cellSet) add(tok uint64, seg int) {
	b := c[tok]
	if b == nil {
		b = new([aae.Segments / 64]uint64)
		c[tok] = b
	}
	b[seg/64] |= 1 << (seg % 64)
}

func (c cellSet) has(tok uint64, seg int) bool {
	b := c[tok]
	return b != nil && b[seg/64]&(1<<(seg%64)) != 0
}

// Repair runs an anti-entropy round now with every member this node shares
// ranges with, one after the other, and calls progress after each with the
// round's stats and error (nil when it left nothing to repair). It returns
// the rounds' totals and the first error.
func (n *Node) Repair(ctx context.Context, progress func(RoundStats, error)) (RoundStats, error) {
	var total RoundStats
	if err := n.Ready(); err != nil {
		return total, err
	}
	v := n.view()
	var first error
	for _, id := range v.topo.IDs(topology.Normal, topology.Leaving) {
		if id == n.self || len(sharedTokens(v, n.self, id)) == 0 {
			continue
		}
		st, err := n.antiEntropyRound(ctx, id)
		if err != nil && first == nil {
			first = fmt.Errorf("%s: %w", id, err)
		}
		if progress != nil {
			progress(st, err)
		}
		total.Ranges += st.Ranges
		total.RangesDiffering += st.RangesDiffering
		total.Segments += st.Segments
		total.Keys += st.Keys
		total.Pushed += st.Pushed
		total.Pulled += st.Pulled
		total.BytesSent += st.BytesSent
		total.BytesReceived += st.BytesReceived
	}
	return total, first
}
