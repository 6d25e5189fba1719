package node

import (
	"bytes"
	"context"
	"sync"

	"github.com/kvs-db/kvs/lsm"
)

// Cleanup: once a change commits, a node drops the records of the ranges
// it no longer replicates, by itself (Riak drops handed-off data the same
// way; Cassandra leaves it to `nodetool cleanup`). We chose automatic
// cleanup because the data is useless once the change has committed (no
// read goes to a non-replica, every write to it is fenced by epoch) and an
// operator who forgets a manual cleanup pays for it in disk forever.
//
// A pass scans the store and purges each record whose key this node holds
// neither now nor in a pending change (lsm.DB.Purge: only if the version
// is still the one scanned, so a write that lands meanwhile stays). Each
// page is purged under the epoch gate, shared, after checking the epoch
// has not moved: a new change that makes this node a replica again first
// waits for the page, then stops the pass, so nothing it streams in is
// dropped.

// cleanupPage is how many records a cleanup pass examines per page.
const cleanupPage = 1024

// cleanupParallel is how many purges of a page run at once, so that the
// store groups their WAL writes.
const cleanupParallel = 32

// reconcileCleanup starts a cleanup pass when the epoch moved since the
// last complete one and no change is pending.
func (n *Node) reconcileCleanup(ctx context.Context, v *view) {
	if v.topo.Change != nil || v.rev == 0 || n.cleaned.Load() >= v.topo.Epoch || !n.cleaning.CompareAndSwap(false, true) {
		return
	}
	n.loops.Add(1)
	go func() {
		defer n.loops.Done()
		defer n.cleaning.Store(false)
		purged, done := n.cleanup(ctx, v)
		if done {
			n.cleaned.Store(v.topo.Epoch)
		}
		if purged > 0 {
			n.log.Info("cleanup dropped the records of ranges this node no longer replicates",
				"epoch", v.topo.Epoch, "records", purged, "complete", done)
		}
	}()
}

// cleanup runs one pass for v's epoch. It reports how many records it
// purged and whether it got through the whole store at that epoch.
func (n *Node) cleanup(ctx context.Context, v *view) (purged int, done bool) {
	var after []byte
	for ctx.Err() == nil {
		page, last, end, err := n.notHeld(v, after)
		if err != nil {
			n.log.Warn("cleanup scan", "err", err)
			return purged, false
		}
		p, ok := n.purgePage(v.topo.Epoch, page)
		purged += p
		if !ok {
			return purged, false
		}
		if end {
			return purged, true
		}
		after = last
	}
	return purged, false
}

// notHeld scans up to cleanupPage records after after and returns those
// whose key this node does not hold in v, the last key examined, and
// whether the scan reached the end of the store.
func (n *Node) notHeld(v *view, after []byte) (recs []lsm.Record, last []byte, end bool, err error) {
	var start []byte
	if after != nil {
		start = append(bytes.Clone(after), 0)
	}
	seen := 0
	end = true
	err = n.store.Scan(start, nil, func(r lsm.Record) bool {
		if seen == cleanupPage {
			end = false
			return false
		}
		seen++
		last = r.Key
		if !v.place.Holds(n.self, v.place.Current.Hash(r.Key)) {
			r.Value = nil
			recs = append(recs, r)
		}
		return true
	})
	return recs, last, end, err
}

// purgePage purges recs under the epoch gate, unless the epoch has moved
// from epoch; it reports how many it purged and whether the epoch held.
func (n *Node) purgePage(epoch uint64, recs []lsm.Record) (int, bool) {
	n.gate.RLock()
	defer n.gate.RUnlock()
	if n.epoch() != epoch {
		return 0, false
	}
	var (
		mu     sync.Mutex
		purged int
		wg     sync.WaitGroup
		sem    = make(chan struct{}, cleanupParallel)
	)
	for _, r := range recs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			ok, err := n.store.Purge(r.Key, r.Version)
			if err != nil {
				n.log.Warn("cleanup purge", "key", r.Key, "err", err)
				return
			}
			if ok {
				mu.Lock()
				purged++
				mu.Unlock()
				n.met.cleanupPurged.Inc()
			}
		}()
	}
	wg.Wait()
	return purged, true
}
