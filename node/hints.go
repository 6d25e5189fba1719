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

	"github.com/cespare/xxhash/v2"

	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node/wire"
)

// Hinted handoff.
//
// A write meant for a replica that is down or did not answer is kept as a
// hint: a record in the hint store (its own lsm.DB under DataDir/hints)
// keyed by target + "\x00" + key, whose value is the wire encoding of the
// record meant for the target. One hint per target and key is enough: a hint
// is replaced only by one carrying a newer record version. The hint store's
// own version of a hint is a fresh reading of this node's clock, so that
// deleting a delivered hint, with a tombstone at the smallest version above
// it, can never delete a newer hint stored meanwhile (which has a higher
// counter).
//
// The handoff loop runs every GossipInterval and whenever a peer comes back:
// for every target that gossip shows alive, it sends the target's hints as
// ordinary "put" requests and deletes each one the target acknowledges.
// Hints never count toward W.

// hintDB is the hint store's storage: a Store that can be closed.
type hintDB interface {
	Store
	Close() error
}

type hintStore struct {
	db    hintDB
	clock *hlc
	node  uint32

	stripes [64]sync.Mutex // per hint key: get-then-apply is atomic

	mu      sync.Mutex
	pending map[string]int // live hints per target
}

func newHintStore(db hintDB, clock *hlc, node uint32) (*hintStore, error) {
	h := &hintStore{db: db, clock: clock, node: node, pending: map[string]int{}}
	err := db.Scan(nil, nil, func(r lsm.Record) bool {
		clock.observe(r.Version.Counter)
		if !r.Tombstone {
			if t, _, ok := splitHintKey(r.Key); ok {
				h.pending[t]++
			}
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("scan hints: %w", err)
	}
	return h, nil
}

func hintKey(target string, key []byte) []byte {
	k := make([]byte, 0, len(target)+1+len(key))
	k = append(k, target...)
	k = append(k, 0)
	return append(k, key...)
}

func splitHintKey(k []byte) (target string, key []byte, ok bool) {
	i := bytes.IndexByte(k, 0)
	if i <= 0 || i == len(k)-1 {
		return "", nil, false
	}
	return string(k[:i]), k[i+1:], true
}

// deleteVersion is the smallest version above v among those this node can
// issue: every later hint version has a higher counter, so it still wins.
func deleteVersion(v lsm.Version) lsm.Version {
	if v.Node < math.MaxUint32 {
		return lsm.Version{Counter: v.Counter, Node: v.Node + 1}
	}
	return lsm.Version{Counter: v.Counter + 1}
}

// add stores rec as a hint for target, unless a hint with a newer or equal
// record version is already held. It is durable when add returns.
func (h *hintStore) add(target string, rec lsm.Record) (stored bool, err error) {
	hk := hintKey(target, rec.Key)
	mu := &h.stripes[xxhash.Sum64(hk)%uint64(len(h.stripes))]
	mu.Lock()
	defer mu.Unlock()
	isNew := true
	old, err := h.db.Get(hk)
	switch {
	case err == nil && !old.Tombstone:
		isNew = false
		if prev, derr := decodeRecord(old.Value); derr == nil && !prev.Version.Less(rec.Version) {
			return false, nil // the held hint is as new or newer
		}
	case err != nil && !errors.Is(err, lsm.ErrNotFound):
		return false, err
	}
	hint := lsm.Record{
		Key:     hk,
		Value:   wire.AppendRecord(make([]byte, 0, wire.RecordSize(&rec)), &rec),
		Version: lsm.Version{Counter: h.clock.now(), Node: h.node},
	}
	if _, _, err := h.db.Apply(hint); err != nil {
		return false, err
	}
	if isNew {
		h.mu.Lock()
		h.pending[target]++
		h.mu.Unlock()
	}
	return true, nil
}

// remove deletes the hint stored at hintVersion, unless a newer one replaced
// it.
func (h *hintStore) remove(hk []byte, target string, hintVersion lsm.Version) error {
	mu := &h.stripes[xxhash.Sum64(hk)%uint64(len(h.stripes))]
	mu.Lock()
	defer mu.Unlock()
	_, applied, err := h.db.Apply(lsm.Record{Key: hk, Version: deleteVersion(hintVersion), Tombstone: true})
	if err != nil {
		return err
	}
	if applied {
		h.mu.Lock()
		if h.pending[target]--; h.pending[target] <= 0 {
			delete(h.pending, target)
		}
		h.mu.Unlock()
	}
	return nil
}

type pendingHint struct {
	hk      []byte
	version lsm.Version // the hint's own version
	rec     lsm.Record  // the record for the target
}

// batch returns up to max live hints for target with hint keys after
// after (nil: from the start).
func (h *hintStore) batch(target string, after []byte, max int) ([]pendingHint, error) {
	start := hintKey(target, nil)
	end := append([]byte(target), 1)
	if after != nil {
		start = append(bytes.Clone(after), 0)
	}
	var out []pendingHint
	var derr error
	err := h.db.Scan(start, end, func(r lsm.Record) bool {
		if r.Tombstone {
			return true
		}
		rec, err := decodeRecord(r.Value)
		if err != nil {
			derr = fmt.Errorf("hint %q: %w", r.Key, err)
			return true // skip it, deliver the rest
		}
		out = append(out, pendingHint{hk: bytes.Clone(r.Key), version: r.Version, rec: cloneRecord(rec)})
		return len(out) < max
	})
	if err != nil {
		return out, err
	}
	return out, derr
}

func cloneRecord(r lsm.Record) lsm.Record {
	r.Key = bytes.Clone(r.Key)
	r.Value = bytes.Clone(r.Value)
	return r
}

func (h *hintStore) pendingByTarget() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]int, len(h.pending))
	for t, c := range h.pending {
		out[t] = c
	}
	return out
}

func (h *hintStore) total() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := 0
	for _, c := range h.pending {
		t += c
	}
	return t
}

func (h *hintStore) close() error { return h.db.Close() }

// hint keeps rec for target, which did not get it: on the first healthy node
// past the key's preference list when there is one, else here. It runs in
// the background of a write.
func (n *Node) hint(target string, rec lsm.Record, prefs []string) {
	if n.cfg.DisableHints {
		return
	}
	if v := n.view(); v != nil && v.place.Current.Len() > len(prefs) {
		r := v.place.Current
		for _, id := range r.PreferenceList(rec.Key, r.Len())[len(prefs):] {
			if id == target || !n.mem.alive(id) {
				continue
			}
			if id == n.self {
				break // this node is the next healthy one: keep it here
			}
			ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RequestTimeout)
			rep, err := n.tr.Request(ctx, id, OpHint, encodeHint(target, &rec))
			cancel()
			if err == nil {
				err = decodeOK(rep)
			}
			if err == nil {
				n.met.hintsForwarded.Inc()
				return
			}
			n.log.Debug("forward hint", "holder", id, "target", target, "err", err)
			break
		}
	}
	stored, err := n.hints.add(target, rec)
	if err != nil {
		// The write may still be on W real replicas (if it was
		// acknowledged, it is); read repair brings target up to date.
		n.log.Error("store hint", "target", target, "key", rec.Key, "err", err)
		return
	}
	if stored {
		n.met.hintsStored.Inc()
	}
}

// holds reports whether target replicates key now or will once the pending
// change commits, in this node's topology: a hint for a key it does not
// hold is dropped instead of delivered.
func (n *Node) holds(target string, key []byte) bool {
	v := n.view()
	return v != nil && v.place.Holds(target, v.place.Current.Hash(key))
}

func (n *Node) wakeHandoff() {
	select {
	case n.wakeHO <- struct{}{}:
	default:
	}
}

// handoffLoop delivers hints to targets that are alive, every GossipInterval
// and whenever a peer comes back.
func (n *Node) handoffLoop(ctx context.Context) {
	defer n.loops.Done()
	t := time.NewTicker(n.cfg.GossipInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.wakeHO:
		}
		for target := range n.hints.pendingByTarget() {
			if ctx.Err() != nil {
				return
			}
			if v := n.view(); v != nil && v.rev > 0 && !v.topo.IsMember(target) {
				n.dropHints(target)
				continue
			}
			if target == n.self || n.mem.alive(target) {
				n.handoff(ctx, target)
			}
		}
	}
}

// handoff delivers the hints held for target until none is left, the target
// stops answering, or ctx ends. A batch is delivered with up to
// handoffParallel requests in flight, so that the target's store can group
// their fsyncs.
func (n *Node) handoff(ctx context.Context, target string) {
	const batchSize, handoffParallel = 128, 16
	var after []byte
	var delivered atomic.Int64
	for ctx.Err() == nil {
		batch, err := n.hints.batch(target, after, batchSize)
		if err != nil {
			n.log.Error("read hints", "target", target, "err", err)
		}
		if len(batch) == 0 {
			break
		}
		var (
			wg          sync.WaitGroup
			sem         = make(chan struct{}, handoffParallel)
			unreachable atomic.Bool
			errMu       sync.Mutex
			firstErr    error
		)
		for _, ph := range batch {
			if unreachable.Load() {
				break
			}
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				if !n.holds(target, ph.rec.Key) {
					n.removeHint(ph, target)
					return
				}
				err := n.deliver(ctx, target, ph.rec)
				if err != nil {
					if errors.Is(err, ErrUnreachable) || ctx.Err() != nil {
						unreachable.Store(true)
						errMu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						errMu.Unlock()
						return
					}
					// The target answered but refused this one: keep it for
					// the next round and go on with the others. It is
					// retried every round: say so once a minute.
					n.warnEvery("hint refused/"+target, "hint refused", "target", target, "key", ph.rec.Key, "err", err)
					return
				}
				if err := n.hints.remove(ph.hk, target, ph.version); err != nil {
					n.log.Error("delete delivered hint", "target", target, "err", err)
					return
				}
				delivered.Add(1)
				n.met.hintsDelivered.Inc()
			}()
		}
		wg.Wait()
		if unreachable.Load() {
			n.log.Info("hint handoff paused", "target", target, "delivered", delivered.Load(), "err", firstErr)
			return
		}
		after = batch[len(batch)-1].hk
	}
	if d := delivered.Load(); d > 0 {
		n.log.Info("hints handed off", "target", target, "delivered", d)
	}
}

// dropHints deletes every hint held for target, which left the ring: its
// ranges were streamed to their new replicas.
func (n *Node) dropHints(target string) {
	var after []byte
	for {
		batch, err := n.hints.batch(target, after, 512)
		if len(batch) == 0 || err != nil {
			if err != nil {
				n.log.Error("read hints", "target", target, "err", err)
			}
			n.log.Info("dropped the hints of a removed member", "target", target)
			return
		}
		for _, ph := range batch {
			n.removeHint(ph, target)
		}
		after = batch[len(batch)-1].hk
	}
}

// removeHint deletes a hint that is not to be delivered.
func (n *Node) removeHint(ph pendingHint, target string) {
	if err := n.hints.remove(ph.hk, target, ph.version); err != nil {
		n.log.Error("delete hint", "target", target, "err", err)
		return
	}
	n.met.hintsDropped.Inc()
}

// deliver sends rec to target's replica and checks that the target now holds
// it or a newer version.
func (n *Node) deliver(ctx context.Context, target string, rec lsm.Record) error {
	if target == n.self {
		held, _, err := n.LocalApply(rec)
		if err == nil && held.Less(rec.Version) {
			err = fmt.Errorf("replica holds %v, older than %v", held, rec.Version)
		}
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	rep, err := n.tr.Request(rctx, target, OpPut, encodePut(n.epoch(), &rec))
	if err != nil {
		return err
	}
	held, _, err := decodeAck(rep)
	if err != nil {
		return err
	}
	n.observeReply(held)
	if held.Less(rec.Version) {
		return fmt.Errorf("%s holds %v, older than %v", target, held, rec.Version)
	}
	return nil
}
