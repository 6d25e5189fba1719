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
//
// Bounds. The store holds at most Config.MaxHintBytesPerTarget bytes of
// hints for one target and Config.MaxHintBytes in all, counted as the
// bytes of the hint records (hint key and encoded record). A hint that
// would pass a cap is dropped, not stored; the hints already held stay.
// Evicting old hints to make room would let a flood of hints (forged, or
// for a key written over and over) push out the real ones, and would cost
// a scan per eviction; either way a lost hint is repaired by anti-entropy,
// which the bound leaves in charge once a target has missed that much.
//
// A hint lives for Config.HintWindow (Cassandra's max_hint_window): its age
// is read from its own version, a reading of this node's hybrid logical
// clock (wall ms << 16) taken when it was stored or last replaced by a
// newer record of its key. An older hint is dropped instead of delivered,
// and no hint is stored for a target that has been down for longer than
// the window: anti-entropy covers what it missed. Every dropped hint is
// counted by reason (kvs_node_hints_dropped_total).

// hintDB is the hint store's storage: a Store that can be closed.
type hintDB interface {
	Store
	Close() error
}

type hintStore struct {
	db    hintDB
	clock *hlc
	node  uint32
	// maxTarget and maxTotal are the caps in bytes (<= 0: none).
	maxTarget, maxTotal int64

	stripes [64]sync.Mutex // per hint key: get-then-apply is atomic

	mu      sync.Mutex
	pending map[string]*hintTally // live hints per target
	bytes   int64                 // bytes of all live hints
}

// hintTally is what the store holds for one target.
type hintTally struct {
	count  int
	bytes  int64
	newest uint64 // the highest hint version counter stored (removals leave it: an upper bound)
}

// errHintsFull is wrapped by add's error when the hint would pass a cap.
var errHintsFull = errors.New("hint store full")

// hintBytes is what a hint counts toward the caps: its key (target, a zero
// byte, key) and its value (the encoded record), as stored.
func hintBytes(hk, value []byte) int64 { return int64(len(hk) + len(value)) }

// newHintStore opens the hint store on db with caps maxTarget and maxTotal
// (bytes; <= 0: none). The counts are rebuilt by a scan of db, and the
// clock moves past every stored hint.
func newHintStore(db hintDB, clock *hlc, node uint32, maxTarget, maxTotal int64) (*hintStore, error) {
	h := &hintStore{db: db, clock: clock, node: node, maxTarget: maxTarget, maxTotal: maxTotal, pending: map[string]*hintTally{}}
	err := db.Scan(nil, nil, func(r lsm.Record) bool {
		clock.observe(r.Version.Counter)
		if !r.Tombstone {
			if t, _, ok := splitHintKey(r.Key); ok {
				h.account(t, hintBytes(r.Key, r.Value), true, r.Version.Counter)
			}
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("scan hints: %w", err)
	}
	return h, nil
}

// account adds delta bytes (and one hint when isNew) to target's tally;
// callers hold h.mu or own h.
func (h *hintStore) account(target string, delta int64, isNew bool, counter uint64) {
	t := h.pending[target]
	if t == nil {
		t = &hintTally{}
		h.pending[target] = t
	}
	t.bytes += delta
	h.bytes += delta
	if isNew {
		t.count++
	}
	t.newest = max(t.newest, counter)
}

// reserve accounts a hint about to be stored, or returns an error wrapping
// errHintsFull when the bytes it adds would pass a cap.
func (h *hintStore) reserve(target string, delta int64, isNew bool, counter uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if delta > 0 {
		var held int64
		if t := h.pending[target]; t != nil {
			held = t.bytes
		}
		if h.maxTarget > 0 && held+delta > h.maxTarget {
			return fmt.Errorf("%w: %d bytes of hints held for %s, at most %d", errHintsFull, held, target, h.maxTarget)
		}
		if h.maxTotal > 0 && h.bytes+delta > h.maxTotal {
			return fmt.Errorf("%w: %d bytes of hints held, at most %d", errHintsFull, h.bytes, h.maxTotal)
		}
	}
	h.account(target, delta, isNew, counter)
	return nil
}

// release takes back bytes and hints from target's tally: a reservation
// whose write failed, or a removed hint.
func (h *hintStore) release(target string, bytes int64, hints int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.pending[target]
	if t == nil {
		return
	}
	t.bytes -= bytes
	h.bytes -= bytes
	if t.count -= hints; t.count <= 0 {
		h.bytes -= t.bytes // zero unless the accounting is off; keep the total the sum
		delete(h.pending, target)
	}
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
// record version is already held, or the bytes it adds would pass a cap
// (then the error wraps errHintsFull, and a hint held for the key stays as
// it is). It is durable when add returns.
func (h *hintStore) add(target string, rec lsm.Record) (stored bool, err error) {
	hk := hintKey(target, rec.Key)
	mu := &h.stripes[xxhash.Sum64(hk)%uint64(len(h.stripes))]
	mu.Lock()
	defer mu.Unlock()
	isNew := true
	var oldBytes int64
	old, err := h.db.Get(hk)
	switch {
	case err == nil && !old.Tombstone:
		isNew = false
		oldBytes = hintBytes(hk, old.Value)
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
	delta := hintBytes(hk, hint.Value) - oldBytes
	if err := h.reserve(target, delta, isNew, hint.Version.Counter); err != nil {
		return false, err
	}
	if _, _, err := h.db.Apply(hint); err != nil {
		hints := 0
		if isNew {
			hints = 1
		}
		h.release(target, delta, hints)
		return false, err
	}
	return true, nil
}

// remove deletes ph, target's hint, unless a newer one replaced it; it
// reports whether it did.
func (h *hintStore) remove(ph pendingHint, target string) (bool, error) {
	mu := &h.stripes[xxhash.Sum64(ph.hk)%uint64(len(h.stripes))]
	mu.Lock()
	defer mu.Unlock()
	// Only ph itself is deleted and taken off the tally: not a newer hint
	// that replaced it, nor ph again once its tombstone is compacted away.
	held, err := h.db.Get(ph.hk)
	switch {
	case errors.Is(err, lsm.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	case held.Tombstone || held.Version != ph.version:
		return false, nil
	}
	if _, _, err := h.db.Apply(lsm.Record{Key: ph.hk, Version: deleteVersion(ph.version), Tombstone: true}); err != nil {
		return false, err
	}
	h.release(target, hintBytes(ph.hk, held.Value), 1)
	return true, nil
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

// pendingByTarget returns the number of hints held per target.
func (h *hintStore) pendingByTarget() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]int, len(h.pending))
	for t, c := range h.pending {
		out[t] = c.count
	}
	return out
}

// total returns the number of hints held.
func (h *hintStore) total() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := 0
	for _, c := range h.pending {
		t += c.count
	}
	return t
}

// targetBytes returns the bytes of the hints held for target.
func (h *hintStore) targetBytes(target string) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t := h.pending[target]; t != nil {
		return t.bytes
	}
	return 0
}

// totalBytes returns the bytes of every hint held.
func (h *hintStore) totalBytes() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bytes
}

// newest returns the highest hint version counter stored for target (0:
// none held): no hint for target is younger than it.
func (h *hintStore) newest(target string) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t := h.pending[target]; t != nil {
		return t.newest
	}
	return 0
}

func (h *hintStore) close() error { return h.db.Close() }

// Reasons a hint is dropped, the label of kvs_node_hints_dropped_total.
const (
	hintDropCap       = "cap"         // storing it would pass MaxHintBytesPerTarget or MaxHintBytes
	hintDropExpired   = "expired"     // held for longer than HintWindow
	hintDropDown      = "target_down" // its target has been down for longer than HintWindow
	hintDropNotMember = "not_member"  // its target is not, or no longer, a member of the ring
	hintDropNotHeld   = "not_held"    // its target no longer replicates the key
	hintDropError     = "error"       // the hint store failed to write it
)

// hintDropReasons lists every reason, so that each series exists from the
// start.
var hintDropReasons = []string{hintDropCap, hintDropExpired, hintDropDown, hintDropNotMember, hintDropNotHeld, hintDropError}

// hint keeps rec for target, which did not get it: on the first healthy node
// past the key's preference list when there is one, else here. It runs in
// the background of a write.
func (n *Node) hint(target string, rec lsm.Record, prefs []string) {
	if n.cfg.DisableHints {
		return
	}
	if err := n.hintable(target); err != nil {
		n.dropHint(target, hintDropDown, err)
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
			if err := n.rc.hint(context.Background(), id, target, &rec); err == nil {
				n.met.hintsForwarded.Inc()
				return
			}
			// Refused (its store is full, say) or unreachable (the replica
			// client logs which): keep it here, within this node's own
			// bounds.
			break
		}
	}
	// The write may still be on W real replicas (if it was acknowledged,
	// it is); read repair and anti-entropy bring target up to date.
	_ = n.keepHint(target, rec)
}

// hintable returns an error when no hint is to be kept for target: it has
// been down for longer than HintWindow.
func (n *Node) hintable(target string) error {
	if n.cfg.HintWindow <= 0 || target == n.self {
		return nil
	}
	if d := n.mem.downFor(target); d > n.cfg.HintWindow {
		return fmt.Errorf("%s has been down for %v, longer than the hint window of %v: anti-entropy repairs it when it returns",
			target, d.Round(time.Second), n.cfg.HintWindow)
	}
	return nil
}

// keepHint stores rec as a hint for target in this node's hint store,
// unless target has been down for longer than HintWindow or a cap would be
// passed; a hint not kept is counted, and the error says why.
func (n *Node) keepHint(target string, rec lsm.Record) error {
	if err := n.hintable(target); err != nil {
		n.dropHint(target, hintDropDown, err)
		return err
	}
	stored, err := n.hints.add(target, rec)
	switch {
	case errors.Is(err, errHintsFull):
		n.dropHint(target, hintDropCap, err)
		return err
	case err != nil:
		n.dropHint(target, hintDropError, err)
		return err
	case stored:
		n.met.hintsStored.Inc()
	}
	return nil
}

// dropHint counts a hint not kept, and says so at most once a minute per
// target and reason (per reason alone for non-members, whose names come
// from the sender and are not bounded).
func (n *Node) dropHint(target, reason string, err error) {
	n.met.hintsDropped.WithLabelValues(reason).Inc()
	key := "hint dropped/" + reason
	if reason != hintDropNotMember {
		key += "/" + target
	}
	n.warnEvery(key, "hint not kept", "target", target, "reason", reason, "err", err)
}

// hintExpired reports whether a hint stored at hint version v is older
// than HintWindow on this node's clock.
func (n *Node) hintExpired(v lsm.Version) bool {
	if n.cfg.HintWindow <= 0 {
		return false
	}
	stored := time.UnixMilli(int64(v.Counter >> 16)) // at most 2^48: no overflow
	return n.cfg.Clock.Now().Sub(stored) > n.cfg.HintWindow
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
// and whenever a peer comes back. It drops the hints of a target that left
// the ring, and those of a target still down once even its newest hint has
// expired.
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
			v := n.view()
			switch {
			case v != nil && v.rev > 0 && !v.topo.IsMember(target):
				n.dropHints(target, hintDropNotMember)
			case target == n.self || n.mem.alive(target):
				n.handoff(ctx, target)
			case n.hintExpired(lsm.Version{Counter: n.hints.newest(target)}):
				n.dropHints(target, hintDropExpired)
			}
		}
	}
}

// handoff delivers the hints held for target until none is left, the target
// stops answering, or ctx ends. A batch is delivered with up to
// handoffParallel requests in flight, so that the target's store can group
// their fsyncs. Hints past HintWindow, and hints for keys the target no
// longer replicates, are dropped instead.
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
				if n.hintExpired(ph.version) {
					n.removeHint(ph, target, hintDropExpired)
					return
				}
				if !n.holds(target, ph.rec.Key) {
					n.removeHint(ph, target, hintDropNotHeld)
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
				if _, err := n.hints.remove(ph, target); err != nil {
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

// dropHints deletes the hints held for target, for reason: all of them
// when it left the ring (its ranges were streamed to their new replicas),
// the expired ones when it is down and even its newest hint has expired (a
// hint stored meanwhile stays).
func (n *Node) dropHints(target, reason string) {
	var after []byte
	dropped := 0
	for {
		batch, err := n.hints.batch(target, after, 512)
		if len(batch) == 0 || err != nil {
			if err != nil {
				n.log.Error("read hints", "target", target, "err", err)
			}
			n.log.Info("dropped the hints held for a target", "target", target, "reason", reason, "hints", dropped)
			return
		}
		for _, ph := range batch {
			if reason == hintDropExpired && !n.hintExpired(ph.version) {
				continue
			}
			if n.removeHint(ph, target, reason) {
				dropped++
			}
		}
		after = batch[len(batch)-1].hk
	}
}

// removeHint deletes a hint that is not to be delivered and counts it
// under reason; it reports whether it did (not when a newer hint replaced
// it meanwhile).
func (n *Node) removeHint(ph pendingHint, target, reason string) bool {
	removed, err := n.hints.remove(ph, target)
	if err != nil {
		n.log.Error("delete hint", "target", target, "err", err)
		return false
	}
	if removed {
		n.met.hintsDropped.WithLabelValues(reason).Inc()
	}
	return removed
}

// deliver sends rec to target's replica and checks that the target now holds
// it or a newer version.
func (n *Node) deliver(ctx context.Context, target string, rec lsm.Record) error {
	if target == n.self {
		held, _, err := n.LocalApply(rec)
		if err == nil && held.Less(rec.Version) {
			err = fmt.Errorf("%w: holds %v, older than %v", errHeldOlder, held, rec.Version)
		}
		return err
	}
	_, err := n.rc.put(ctx, target, n.epoch(), &rec, nil)
	if errors.Is(err, errAhead) {
		// It holds a newer version than the hint's, however far ahead of
		// this node's clock (which does not observe it): the hint is
		// delivered.
		return nil
	}
	return err
}
