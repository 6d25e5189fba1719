package node

import (
	"errors"
	"fmt"
	"sync"

	"github.com/kvs-db/kvs/lsm"
)

// Replica handlers: requests from coordinators. A malformed or invalid
// request gets an error reply and changes nothing.

// handlePut applies a record to this node's replica and acks with the
// version held afterwards.
func (n *Node) handlePut(req []byte) []byte {
	epoch, rec, err := decodePut(req)
	if err != nil {
		n.met.badRequests.WithLabelValues(OpPut).Inc()
		return encodeError(err)
	}
	var held lsm.Version
	var applied bool
	if se := n.fence(epoch, func() { held, applied, err = n.LocalApply(rec) }); se != nil {
		return encodeStale(se.Epoch)
	}
	if err != nil {
		return encodeError(err)
	}
	return encodeAck(held, applied)
}

// handleGet returns this node's replica of a key.
func (n *Node) handleGet(req []byte) []byte {
	epoch, key, err := decodeGet(req)
	if err != nil {
		n.met.badRequests.WithLabelValues(OpGet).Inc()
		return encodeError(err)
	}
	if n.dataLost.Load() {
		// Its replica lacks what it acknowledged before its data was lost:
		// an answer from it could hide a write from a read quorum.
		return encodeError(fmt.Errorf("%w: %s lost its data and serves no reads until it joins again", ErrNotReady, n.self))
	}
	var rec lsm.Record
	if se := n.fence(epoch, func() { rec, err = n.store.Get(key) }); se != nil {
		return encodeStale(se.Epoch)
	}
	switch {
	case errors.Is(err, lsm.ErrNotFound):
		return encodeGetReply(nil)
	case err != nil:
		return encodeError(fmt.Errorf("get: %w", err))
	}
	n.clock.observe(rec.Version.Counter)
	return encodeGetReply(&rec)
}

// handleHint stores a hint for another node, which this node holds as the
// next healthy node past the key's preference list. A hint it does not
// keep (its target is not a member, has been down past the hint window,
// or a cap is reached) gets an error reply, and the coordinator keeps the
// hint itself if its own bounds allow.
func (n *Node) handleHint(req []byte) []byte {
	target, rec, err := decodeHint(req)
	if err == nil {
		err = validToken(target)
		if err == nil {
			err = n.checkRecord(&rec)
		}
	}
	if err != nil {
		n.met.badRequests.WithLabelValues(OpHint).Inc()
		return encodeError(err)
	}
	if v := n.view(); v == nil || !v.topo.IsMember(target) {
		err := fmt.Errorf("hint for %q, which is not a member of the ring", target)
		n.dropHint(target, hintDropNotMember, err)
		return encodeError(err)
	}
	n.clock.observe(rec.Version.Counter)
	if err := n.keepHint(target, rec); err != nil {
		return encodeError(fmt.Errorf("store hint: %w", err))
	}
	n.wakeHandoff()
	return encodeOK()
}

// handleBatch serves a batch of put, get and hint requests and answers
// with their replies in order, each exactly as its handler answers it
// alone: the epoch gate, the checks and the held version are per request,
// and one request's error reply does not touch its neighbours. Puts and
// hints run concurrently, so that the store's group commit gives the
// batch's writes one fsync (or a few) as it would concurrent lone
// requests; gets run in order in the handler's goroutine, as a read of
// the memtable or the block cache is shorter than a goroutine's start. A
// malformed batch gets one error reply.
func (n *Node) handleBatch(req []byte) []byte {
	msgs, err := decodeBatch(req)
	if err != nil {
		n.met.badRequests.WithLabelValues(OpBatch).Inc()
		return encodeError(fmt.Errorf("batch: %w", err))
	}
	reps := make([][]byte, len(msgs))
	var wg sync.WaitGroup
	var puts []int
	for i, m := range msgs {
		switch m[0] {
		case msgPut:
			puts = append(puts, i)
		case msgHint:
			wg.Add(1)
			go func() {
				defer wg.Done()
				reps[i] = n.handleBatched(m)
			}()
		}
	}
	if len(puts) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.handlePuts(msgs, puts, reps)
		}()
	}
	for i, m := range msgs {
		if m[0] != msgPut && m[0] != msgHint {
			reps[i] = n.handleBatched(m)
		}
	}
	wg.Wait()
	return encodeBatchReply(reps)
}

// handlePuts serves the puts msgs[i] (i in idx) of a batch, setting reps[i]
// to what handlePut would answer: the records of each epoch go to the store
// in one commit (ApplyBatchResults: one WAL write and, under SyncAlways,
// one fsync, where puts handled one by one would each wait for the
// committer), and each is acked with its own result. A record that fails
// its checks is refused alone; a store error fails the records of its
// commit, as it would fail each of them one by one.
func (n *Node) handlePuts(msgs [][]byte, idx []int, reps [][]byte) {
	type commit struct {
		idx  []int
		recs []lsm.Record
	}
	byEpoch := map[uint64]*commit{}
	for _, i := range idx {
		epoch, rec, err := decodePut(msgs[i])
		if err != nil {
			n.met.badRequests.WithLabelValues(OpPut).Inc()
			reps[i] = encodeError(err)
			continue
		}
		if err := n.checkRecord(&rec); err != nil {
			reps[i] = encodeError(err)
			continue
		}
		c := byEpoch[epoch]
		if c == nil {
			c = &commit{}
			byEpoch[epoch] = c
		}
		c.idx = append(c.idx, i)
		c.recs = append(c.recs, rec)
	}
	for epoch, c := range byEpoch {
		for i := range c.recs {
			n.clock.observe(c.recs[i].Version.Counter)
		}
		res := make([]lsm.ApplyResult, len(c.recs))
		var err error
		if se := n.fence(epoch, func() { _, err = n.store.ApplyBatchResults(c.recs, res) }); se != nil {
			for _, i := range c.idx {
				reps[i] = encodeStale(se.Epoch)
			}
			continue
		}
		for j, i := range c.idx {
			if err != nil {
				reps[i] = encodeError(fmt.Errorf("node: local apply: %w", storeWriteErr(err)))
				continue
			}
			reps[i] = encodeAck(res[j].Held, res[j].Applied)
		}
	}
}

// handleBatched serves one request of a batch (never empty: decodeBatch
// refuses empty messages).
func (n *Node) handleBatched(m []byte) []byte {
	switch m[0] {
	case msgPut:
		return n.handlePut(m)
	case msgGet:
		return n.handleGet(m)
	case msgHint:
		return n.handleHint(m)
	}
	n.met.badRequests.WithLabelValues(OpBatch).Inc()
	return encodeError(fmt.Errorf("%w: message type %#x in a batch, want put, get or hint", ErrMalformed, m[0]))
}
