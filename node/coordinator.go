package node

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/kvs-db/kvs/lsm"
)

// WriteOptions adjusts one write.
type WriteOptions struct {
	// W is the number of replica acks to wait for: 0 means the default
	// (Config.W capped at the number of ring members), else 1 to N.
	W int
}

// ReadOptions adjusts one read.
type ReadOptions struct {
	// R is the number of replica replies to wait for: 0 means the default
	// (Config.R capped at the number of ring members), else 1 to N.
	R int
}

// Put writes value under key and returns its version once W replicas hold
// it durably. It returns an error wrapping ErrQuorum as soon as W can no
// longer be reached (then the write may still be on some replicas, as with
// any unacknowledged write), ErrInvalidKey, ErrValueTooLarge,
// ErrInvalidQuorum or ErrNotReady.
func (n *Node) Put(ctx context.Context, key, value []byte, o WriteOptions) (lsm.Version, error) {
	start := time.Now()
	v, err := n.put(ctx, key, value, o)
	n.met.done(OpPut, start, err)
	return v, err
}

func (n *Node) put(ctx context.Context, key, value []byte, o WriteOptions) (lsm.Version, error) {
	if err := n.checkKey(key); err != nil {
		return lsm.Version{}, err
	}
	if err := n.checkValue(value); err != nil {
		return lsm.Version{}, err
	}
	if value == nil {
		value = []byte{}
	}
	return n.write(ctx, "put", lsm.Record{Key: key, Value: value}, o.W)
}

// Delete writes a tombstone for key, like Put.
func (n *Node) Delete(ctx context.Context, key []byte, o WriteOptions) (lsm.Version, error) {
	start := time.Now()
	v, err := n.del(ctx, key, o)
	n.met.done("delete", start, err)
	return v, err
}

func (n *Node) del(ctx context.Context, key []byte, o WriteOptions) (lsm.Version, error) {
	if err := n.checkKey(key); err != nil {
		return lsm.Version{}, err
	}
	return n.write(ctx, "delete", lsm.Record{Key: key, Tombstone: true}, o.W)
}

// plan is where one request goes: the key's replicas at one topology
// epoch, split by liveness, and the quorum it needs.
type plan struct {
	epoch   uint64
	prefs   []string // the key's replicas: reads, the W of writes, hints past them
	targets []string // prefs, then (writes) the key's pending replicas
	live    []string // targets alive
	down    []string // targets down
	need    int      // replies needed: the quorum, plus one per pending replica
}

// maxStaleRetries bounds how often a request is planned again after a
// replica reports a newer epoch: each retry follows a topology change, and
// changes are seconds apart.
const maxStaleRetries = 3

// plan places one request for key with quorum q (0: def). A write also
// goes to the key's pending replicas and needs one more ack per pending
// replica (see topology.Placement). It fails fast when fewer than the
// needed replicas are up.
func (n *Node) plan(key []byte, q, def int, what string, write bool) (plan, error) {
	if err := n.Ready(); err != nil {
		return plan{}, err
	}
	if q < 0 || q > n.cfg.N {
		return plan{}, fmt.Errorf("%w: %s=%d, want 1 to N=%d", ErrInvalidQuorum, what, q, n.cfg.N)
	}
	v := n.view()
	h := v.place.Current.Hash(key)
	p := plan{epoch: v.topo.Epoch}
	p.prefs = v.place.Replicas(make([]string, 0, v.topo.N+2), h)
	p.need = q
	if p.need == 0 {
		p.need = min(def, len(p.prefs))
	}
	p.targets = p.prefs
	if write {
		p.targets = v.place.Pending(p.prefs, h, p.prefs)
		p.prefs = p.targets[:len(p.prefs):len(p.prefs)]
		p.need += len(p.targets) - len(p.prefs)
	}
	p.live = make([]string, 0, len(p.targets))
	for _, id := range p.targets {
		if n.mem.alive(id) {
			p.live = append(p.live, id)
		} else {
			p.down = append(p.down, id)
		}
	}
	if len(p.live) < p.need {
		pending := ""
		if len(p.targets) > len(p.prefs) {
			pending = fmt.Sprintf(" (plus %d pending while the ring changes)", len(p.targets)-len(p.prefs))
		}
		return plan{}, fmt.Errorf("%w: %s=%d%s, but only %d of %d replicas are up (down: %v)",
			ErrQuorum, what, p.need-(len(p.targets)-len(p.prefs)), pending, len(p.live), len(p.targets), p.down)
	}
	return p, nil
}

// write stamps rec and replicates it; see the package comment for the ack
// rule and the one re-stamp. A round refused by a replica at a newer
// topology epoch is planned again once this node has caught up.
func (n *Node) write(ctx context.Context, op string, rec lsm.Record, w int) (lsm.Version, error) {
	// Background completions outlive the call; the caller may reuse its
	// buffers once it returns.
	rec.Key = bytes.Clone(rec.Key)
	rec.Value = bytes.Clone(rec.Value)
	rec.Version = lsm.Version{Counter: n.clock.now(), Node: n.selfV}
	restamped := false
	for attempt := 0; ; attempt++ {
		p, err := n.plan(rec.Key, w, n.cfg.W, "W", true)
		if err != nil {
			return lsm.Version{}, err
		}
		newer, stale, err := n.writeRound(ctx, rec, p, restamped)
		if err != nil {
			if stale > p.epoch && attempt < maxStaleRetries {
				n.met.staleRetries.Inc()
				n.refresh(ctx)
				continue
			}
			return lsm.Version{}, err
		}
		if newer.IsZero() || restamped {
			n.publish(op, &rec)
			return rec.Version, nil
		}
		// A replica holds a newer version: our clock was behind a write that
		// may have been acknowledged before this one began. The clock has
		// observed it; stamp again above it.
		n.met.restamps.Inc()
		restamped = true
		rec.Version = lsm.Version{Counter: n.clock.now(), Node: n.selfV}
	}
}

type ackResult struct {
	id   string
	held lsm.Version
	err  error
}

// writeRound sends rec to the plan's targets and waits for need acks. It
// returns the newest version held above rec's among the acks (zero if
// none), so that the caller can re-stamp (with acceptNewer such acks are
// simply durable), and the newest epoch a replica refused it from (zero if
// none refused it as stale).
func (n *Node) writeRound(ctx context.Context, rec lsm.Record, p plan, acceptNewer bool) (newer lsm.Version, stale uint64, err error) {
	t := newTally(p.need, len(p.targets))
	var errs []error
	for _, id := range p.down {
		t.failure()
		errs = append(errs, fmt.Errorf("%s: down", id))
		n.goBG(func() { n.hint(id, rec, p.prefs) })
	}
	req := encodePut(p.epoch, &rec)
	ch := make(chan ackResult, len(p.live))
	for _, id := range p.live {
		if !n.goBG(func() { n.replicate(ch, id, rec, req, p) }) {
			t.failure()
			errs = append(errs, fmt.Errorf("%s: %w", id, ErrNotReady))
		}
	}
	for t.result() == quorumPending {
		select {
		case res := <-ch:
			switch {
			case res.err != nil:
				var se *StaleError
				if errors.As(res.err, &se) {
					stale = max(stale, se.Epoch)
				}
				t.failure()
				errs = append(errs, fmt.Errorf("%s: %w", res.id, res.err))
			case res.held == rec.Version || acceptNewer:
				t.success()
			default: // holds a newer version
				t.success()
				if newer.Less(res.held) {
					newer = res.held
				}
			}
		case <-ctx.Done():
			return lsm.Version{}, 0, fmt.Errorf("node: write %q: %w (%d of %d acks needed, %d received)",
				rec.Key, ctx.Err(), p.need, len(p.targets), t.ok)
		}
	}
	if t.result() == quorumLost {
		return lsm.Version{}, stale, fmt.Errorf("%w: %d of %d acks needed, %d received: %w",
			ErrQuorum, p.need, len(p.targets), t.ok, errors.Join(errs...))
	}
	return newer, stale, nil
}

// replicate applies rec on replica id (locally for this node, else through
// the replica client) and sends the outcome to ch; a replica that fails
// gets a hint, unless it refused the write as planned at a stale epoch (it
// is alive; the write is planned again).
func (n *Node) replicate(ch chan<- ackResult, id string, rec lsm.Record, req []byte, p plan) {
	var held lsm.Version
	var err error
	if id == n.self {
		if ferr := n.fence(p.epoch, func() { held, _, err = n.store.Apply(rec) }); ferr != nil {
			err = ferr
		}
		if err == nil {
			err = n.rc.checkHeld(held, rec.Version)
		}
		if err != nil {
			n.rc.failed(OpPut, id, err)
		}
	} else {
		held, err = n.rc.put(context.Background(), id, p.epoch, &rec, req)
	}
	ch <- ackResult{id: id, held: held, err: err}
	if err != nil && !errors.Is(err, ErrStaleEpoch) {
		n.hint(id, rec, p.prefs)
	}
}

// Get returns the newest live record of key among R replicas' replies. It
// returns an error wrapping ErrNotFound when the key was never written or is
// deleted, ErrQuorum when R replies cannot be had, ErrInvalidKey,
// ErrInvalidQuorum or ErrNotReady. Replicas found stale are repaired in the
// background. The returned record belongs to the caller.
func (n *Node) Get(ctx context.Context, key []byte, o ReadOptions) (lsm.Record, error) {
	start := time.Now()
	rec, err := n.get(ctx, key, o)
	n.met.done(OpGet, start, err)
	return rec, err
}

type getResult struct {
	id    string
	rec   lsm.Record
	found bool
	err   error
}

func (n *Node) get(ctx context.Context, key []byte, o ReadOptions) (lsm.Record, error) {
	if err := n.checkKey(key); err != nil {
		return lsm.Record{}, err
	}
	key = bytes.Clone(key)
	for attempt := 0; ; attempt++ {
		p, err := n.plan(key, o.R, n.cfg.R, "R", false)
		if err != nil {
			return lsm.Record{}, err
		}
		rec, stale, err := n.getRound(ctx, key, p)
		if err != nil && stale > p.epoch && attempt < maxStaleRetries {
			n.met.staleRetries.Inc()
			n.refresh(ctx)
			continue
		}
		return rec, err
	}
}

// getRound reads key from R of the plan's live replicas and answers with
// the newest record among their replies; the newest epoch a replica
// refused the read from comes back too (zero if none).
//
// It asks R replicas, not all: this node first when it is one (a local
// read), then the others in the order readOrder gives. A replica that fails is
// replaced by the next one not yet asked; one that is slower than its
// usual latency (speculateAfter) gets company: one more replica is asked,
// and the first R replies answer. Replicas whose replies disagree, or that
// answer after the read (a speculative or a slow one), are read-repaired
// in the background; a read whose R replies agree and that has nothing
// outstanding costs nothing more.
func (n *Node) getRound(ctx context.Context, key []byte, p plan) (lsm.Record, uint64, error) {
	req := encodeGet(p.epoch, key)
	order := readOrder(p.live, n.self)
	ch := make(chan getResult, len(order))
	t := newTally(p.need, len(order))
	var errs []error
	asked, received := 0, 0
	// ask sends the read to the next replica not asked yet, and reports
	// whether there was one.
	ask := func() bool {
		for asked < len(order) {
			id := order[asked]
			asked++
			if n.goBG(func() { ch <- n.fetch(id, key, req, p.epoch) }) {
				return true
			}
			t.failure()
			errs = append(errs, fmt.Errorf("%s: %w", id, ErrNotReady))
		}
		return false
	}
	for range p.need {
		ask()
	}
	var speculate <-chan time.Time
	if asked < len(order) {
		timer := time.NewTimer(n.speculateAfter(order[:asked]))
		defer timer.Stop()
		speculate = timer.C
	}
	got := make([]getResult, 0, p.need)
	var stale uint64
	for t.result() == quorumPending {
		select {
		case res := <-ch:
			received++
			if res.err != nil {
				var se *StaleError
				if errors.As(res.err, &se) {
					stale = max(stale, se.Epoch)
				}
				t.failure()
				errs = append(errs, fmt.Errorf("%s: %w", res.id, res.err))
				ask()
				continue
			}
			t.success()
			got = append(got, res)
		case <-speculate:
			speculate = nil
			if ask() {
				n.met.speculativeReads.Inc()
			}
		case <-ctx.Done():
			return lsm.Record{}, 0, fmt.Errorf("node: get %q: %w (%d of %d replies needed, %d received)",
				key, ctx.Err(), p.need, len(p.prefs), t.ok)
		}
	}
	if t.result() == quorumLost {
		return lsm.Record{}, stale, fmt.Errorf("%w: %d of %d replies needed, %d received: %w",
			ErrQuorum, p.need, len(p.prefs), t.ok, errors.Join(errs...))
	}
	newest := newestOf(got)
	if rest := asked - received; !n.cfg.DisableReadRepair && (rest > 0 || disagree(got)) {
		n.goBG(func() { n.readRepair(key, got, ch, rest) })
	}
	if newest == nil || newest.Tombstone || n.expired(newest) {
		return lsm.Record{}, 0, fmt.Errorf("%w: %q", ErrNotFound, key)
	}
	// The read repair may still send newest: the caller gets its own copy.
	return cloneRecord(*newest), 0, nil
}

// readOrder is the order in which a read asks the live replicas: this
// node first when it is one, then the others in the cyclic order of node
// IDs that starts after this node's (for node2 of node1..node3: node3,
// then node1).
//
// The cyclic order, rather than each key's preference order, sends a
// node's remote reads to the same peer whenever that peer holds the key:
// in a three-node cluster, every one of them. Requests to one peer travel
// in shared messages (batcher.go), so one queue instead of two puts more
// requests in each message under load (about a third more under bench.sh's
// GET), while each node still draws its reads from a different peer than
// the others do, and a peer that is down or slow is passed over as before.
func readOrder(live []string, self string) []string {
	order := make([]string, 0, len(live))
	if slices.Contains(live, self) {
		order = append(order, self)
	}
	for _, id := range live {
		if id == self {
			continue
		}
		// Insert id among the others, which are in cyclic order.
		i := len(order)
		for i > 0 && order[i-1] != self && cyclicBefore(id, order[i-1], self) {
			i--
		}
		order = slices.Insert(order, i, id)
	}
	return order
}

// cyclicBefore reports whether node ID a comes before b in the cyclic
// order of IDs that starts just after self.
func cyclicBefore(a, b, self string) bool {
	aAfter, bAfter := a > self, b > self
	if aAfter != bAfter {
		return aAfter
	}
	return a < b
}

// speculateAfter is how long a read waits for the replicas asked before it
// asks one more: as long as the slowest of them usually takes (this node's
// own reads are tracked as a peer's), at most half of RequestTimeout.
func (n *Node) speculateAfter(asked []string) time.Duration {
	var d time.Duration
	for _, id := range asked {
		d = max(d, n.rc.lat.speculateAfter(id, n.cfg.RequestTimeout/2))
	}
	return d
}

// disagree reports whether the replies hold different versions of the key
// (or some hold it and others not).
func disagree(rs []getResult) bool {
	for i := 1; i < len(rs); i++ {
		if rs[i].found != rs[0].found || rs[i].rec.Version != rs[0].rec.Version {
			return true
		}
	}
	return false
}

func (n *Node) expired(r *lsm.Record) bool {
	return r.Expiry != 0 && r.Expiry <= n.cfg.Clock.Now().UnixMilli()
}

// newestOf returns the newest record among the replies, nil if none has one.
func newestOf(rs []getResult) *lsm.Record {
	var newest *lsm.Record
	for i := range rs {
		if rs[i].found && (newest == nil || newest.Version.Less(rs[i].rec.Version)) {
			newest = &rs[i].rec
		}
	}
	return newest
}

// fetch reads replica id's record of key (locally for this node, else
// through the replica client).
func (n *Node) fetch(id string, key, req []byte, epoch uint64) getResult {
	res := getResult{id: id}
	if id != n.self {
		res.rec, res.found, res.err = n.rc.get(context.Background(), id, epoch, key, req)
		return res
	}
	var rec lsm.Record
	var err error
	start := time.Now()
	if ferr := n.fence(epoch, func() { rec, err = n.store.Get(key) }); ferr != nil {
		err = ferr
	}
	switch {
	case errors.Is(err, lsm.ErrNotFound):
		n.rc.lat.observe(id, time.Since(start))
	case err != nil:
		res.err = err
	default:
		n.rc.lat.observe(id, time.Since(start))
		res.rec, res.found = rec, true
	}
	if res.err == nil && res.found && !n.observeReply(res.rec.Version) {
		res.err = fmt.Errorf("%w: holds %v, more than %v ahead", errAhead, res.rec.Version, MaxClockAhead)
	}
	if res.err != nil {
		n.rc.failed(OpGet, id, res.err)
	}
	return res
}

// readRepair waits for the rest replies still due on ch, then sends the
// newest record to every replica that answered with an older one or none.
func (n *Node) readRepair(key []byte, got []getResult, ch <-chan getResult, rest int) {
	for range rest {
		if res := <-ch; res.err == nil {
			got = append(got, res)
		}
	}
	newest := newestOf(got)
	if newest == nil {
		return
	}
	var req []byte
	var epoch uint64
	for _, res := range got {
		if res.found && !res.rec.Version.Less(newest.Version) {
			continue
		}
		n.met.readRepairs.Inc()
		if res.id == n.self {
			if _, _, err := n.store.Apply(*newest); err != nil {
				n.log.Warn("read repair", "replica", res.id, "key", key, "err", err)
			}
			continue
		}
		if req == nil {
			epoch = n.epoch()
			req = encodePut(epoch, newest)
		}
		// A failure is the replica client's to count and log; anti-entropy
		// repairs what read repair could not.
		_, _ = n.rc.put(context.Background(), res.id, epoch, newest, req)
	}
}

// event is a change-feed message:
//
//	{"op":"put","key":"user:42","key_b64":"dXNlcjo0Mg==","version":"117678596560846848.3033669593","node":"node1"}
//
// Keys are any bytes, and a JSON string holds only text: key_b64 (standard
// base64) carries every key exactly, and key repeats it as text when it is
// valid UTF-8. A key that is not is left out of key rather than shown with
// its invalid bytes replaced by U+FFFD, which could name another key.
type event struct {
	Op      string `json:"op"`
	Key     string `json:"key,omitempty"`
	KeyB64  string `json:"key_b64"`
	Version string `json:"version"`
	Node    string `json:"node"`
}

// publish puts an accepted write on the change feed (best effort), when
// anyone listens: marshalling and publishing an event nobody reads cost
// every write a few microseconds.
func (n *Node) publish(op string, rec *lsm.Record) {
	if !n.tr.EventInterest(op) {
		return
	}
	ev := event{Op: op, KeyB64: base64.StdEncoding.EncodeToString(rec.Key), Version: rec.Version.String(), Node: n.self}
	if utf8.Valid(rec.Key) {
		ev.Key = string(rec.Key)
	}
	b, err := json.Marshal(ev)
	if err == nil {
		err = n.tr.PublishEvent(op, b)
	}
	if err != nil {
		n.log.Debug("publish event", "err", err)
	}
}
