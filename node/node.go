// Package node is the coordinator and the replica of kvs.
//
// Every node can coordinate any request. A write (Put, Delete) is stamped
// with a version from the node's hybrid logical clock and sent in parallel to
// the key's N replicas (the preference list of the ring): the node itself
// applies it to its Store, the others get a "put" request over the
// Transport. The write is acknowledged after W replicas report that they
// durably hold it. Replicas that gossip shows down are not asked (no timeout
// is paid for them); they, and replicas whose request fails, get the record
// as a durable hint, handed over when gossip shows them alive again. A read
// (Get) asks R live replicas (itself first when it is one), answers with
// the newest version among their replies, asks one more when a replica is
// slower than its usual latency or fails, and repairs in the background
// the replicas whose replies disagree. Anti-entropy rounds
// (antientropy.go) compare the hash trees of the ranges two replicas share
// and move what differs, so replicas converge even for keys nobody reads.
//
// Replica requests. Every put, get and hint request to another node goes
// through the replica client (replicaclient.go), which owns its timeout,
// the reply's decoding and checks, the clock's observation and the
// counting of failures. Requests to one peer that are in flight at once
// travel as one message, and their replies as one (batcher.go): a lone
// request goes at once and on its own; while Config.BatchInFlight messages
// to the peer are in flight, further requests queue and the next message
// takes them all.
//
// Versions and acks. A version is {Counter, Node}: Counter is a hybrid logical
// clock reading, Node is NodeHash(ID). A replica acknowledges a write with the
// version it holds after applying it. An ack counts toward W when the replica
// holds exactly the write's version. If, in the first round, a replica holds
// a newer version, the coordinator's clock was behind a write that may have
// been acknowledged before this one began: the coordinator observes that
// version and re-stamps the write once, above everything it has seen. When
// W + W > N (the default 2 + 2 > 3), every write quorum meets the one of any
// earlier acknowledged write, so the first round always sees such a write.
// In the second round a newer version can only come from a write concurrent
// with this one, which last-writer-wins may order either way, so an ack
// holding a newer version counts as durably superseded. A client that writes
// a key sequentially through different nodes thus reads back its last value
// (with W + R > N), whatever the coordinators' wall clocks say. With W = 1
// that ordering holds only as far as the clocks agree.
//
// Topology. The ring is metadata kept in a replicated store (package
// topology): members change only through explicit commands, one change at
// a time, each with an epoch. topo.go adopts the stored topology, founds or
// joins the cluster and fences requests by epoch; streaming.go moves the
// data of a change; cleanup.go drops ranges a node no longer holds. Gossip
// (membership.go) says only who is alive: liveness decides where requests
// go, never who owns what.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node/topology"
)

// Sentinel errors callers branch on; returned errors wrap them with context.
var (
	// ErrNotFound means the key has no live value (never written, or deleted).
	ErrNotFound = errors.New("node: not found")
	// ErrQuorum means the request could not reach its quorum: too few
	// replicas are up, or too many failed. The wrapped errors say which.
	ErrQuorum = errors.New("node: quorum not reached")
	// ErrNotReady means the node cannot coordinate yet (or any more): it has
	// not heard from enough peers to know the ring, or it is closed.
	ErrNotReady = errors.New("node: not ready")
	// ErrInvalidKey means a key is empty or longer than MaxKeyBytes.
	ErrInvalidKey = errors.New("node: invalid key")
	// ErrValueTooLarge means a value is longer than Config.MaxValueBytes.
	ErrValueTooLarge = errors.New("node: value too large")
	// ErrInvalidQuorum means a per-request W or R is outside 1..N.
	ErrInvalidQuorum = errors.New("node: invalid quorum")
	// ErrOverloaded means a peer refused a scan-heavy request (anti-entropy
	// leaves or keys, a stream page) because Config.MaxScanRequests were
	// in progress: try again later.
	ErrOverloaded = errors.New("node: overloaded")
)

// Node is one kvs node: coordinator of client requests and replica of its
// share of the keys. Its methods are safe for concurrent use.
type Node struct {
	cfg    Config
	log    *slog.Logger
	self   string
	selfV  uint32 // NodeHash(self)
	clock  *hlc
	store  Store
	tr     Transport
	rc     *replicaClient // every data-path request to another replica (replicaclient.go)
	mem    *membership
	hints  *hintStore
	met    *metrics
	wakeHO chan struct{}
	// aePageBytes bounds a keys reply page (aeKeysPageBytes).
	aePageBytes int
	// scans holds a token per scan-heavy request in progress, at most
	// MaxScanRequests (nil: no bound; scanlimit.go).
	scans chan struct{}

	// Anti-entropy (antientropy.go).
	trees      atomic.Pointer[treeSet]
	rebuilding atomic.Bool
	syncMu     sync.Mutex
	synced     map[string]uint64 // peer -> HLC reading at the start of the last round that left nothing to repair

	// Topology (topo.go).
	cur        atomic.Pointer[view]
	gate       sync.RWMutex // held shared by requests, exclusively to move to a new epoch
	adoptMu    sync.Mutex   // serializes adopt
	topoWake   chan struct{}
	behind     atomic.Bool   // a request came from a newer epoch
	wasMember  atomic.Bool   // this node has been a member since it started
	maintained atomic.Uint64 // last epoch the store was maintained for
	waiting    atomic.Pointer[string]
	logged     sync.Map   // keys of errors logged once
	logLimit   logLimiter // warnings logged at most once a minute per key (lograte.go)
	left       chan struct{}
	leftOnce   sync.Once
	freshStart bool          // no topology file when the node was created
	startedAt  time.Time     // when New ran, on the node's clock
	claimed    atomic.Bool   // this process founded the cluster or asked to join it
	dataLost   atomic.Bool   // a member by ID with a new data directory (topo.go)
	streaming  streamRun     // the gainer's pull in progress (streaming.go)
	cleaned    atomic.Uint64 // last epoch a cleanup pass completed at (cleanup.go)
	cleaning   atomic.Bool   // a cleanup pass runs

	started atomic.Bool
	cancel  context.CancelFunc
	loops   sync.WaitGroup
	unsubs  []func() error

	bgMu   sync.Mutex
	closed bool
	bg     sync.WaitGroup
}

// New validates cfg, loads the node's last known topology and opens the
// hint store. The
// node serves nothing until Start.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:       cfg,
		log:       cfg.Logger.With("node", cfg.ID),
		self:      cfg.ID,
		selfV:     NodeHash(cfg.ID),
		clock:     newHLC(cfg.Clock),
		store:     cfg.Store,
		tr:        cfg.Transport,
		wakeHO:    make(chan struct{}, 1),
		topoWake:  make(chan struct{}, 1),
		left:      make(chan struct{}),
		startedAt: cfg.Clock.Now(),

		aePageBytes: aeKeysPageBytes,
	}
	if cfg.MaxScanRequests > 0 {
		n.scans = make(chan struct{}, cfg.MaxScanRequests)
	}
	n.mem = newMembership(&n.cfg, n.log, n.wakeHandoff, func(reason string) { n.met.gossipDropped.WithLabelValues(reason).Inc() })
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("node: data dir: %w", err)
	}
	var err error
	if n.met, err = newMetrics(n, cfg.Registerer); err != nil {
		return nil, err
	}
	n.rc = newReplicaClient(n)
	if err := n.loadLocalTopology(); err != nil {
		return nil, err
	}
	hdb, err := openHintDB(filepath.Join(cfg.DataDir, "hints"), cfg.Clock, n.log)
	if err != nil {
		return nil, fmt.Errorf("node: open hint store: %w", err)
	}
	n.hints, err = newHintStore(hdb, n.clock, n.selfV, cfg.MaxHintBytesPerTarget, cfg.MaxHintBytes)
	if err != nil {
		hdb.Close()
		return nil, fmt.Errorf("node: open hint store: %w", err)
	}
	if cfg.Hooks != nil {
		cfg.Hooks.n.Store(n)
	}
	return n, nil
}

// Start registers the replica handlers on the transport and starts the gossip
// and handoff loops. The loops stop when ctx ends or at Close.
func (n *Node) Start(ctx context.Context) error {
	n.bgMu.Lock()
	closed := n.closed
	n.bgMu.Unlock()
	if closed {
		return fmt.Errorf("node: start: %w: closed", ErrNotReady)
	}
	if !n.started.CompareAndSwap(false, true) {
		return errors.New("node: already started")
	}
	for op, h := range map[string]Handler{
		OpPut: n.handlePut, OpGet: n.handleGet, OpHint: n.handleHint, OpBatch: n.handleBatch,
		OpRoots: n.handleRoots, OpLeaves: n.handleLeaves, OpKeys: n.handleKeys, OpStream: n.handleStream,
	} {
		unsub, err := n.tr.Handle(op, h)
		if err != nil {
			n.unsubscribe()
			return fmt.Errorf("node: serve %s: %w", op, err)
		}
		n.unsubs = append(n.unsubs, unsub)
	}
	unsub, err := n.tr.OnBroadcast(n.mem.onHeartbeat)
	if err != nil {
		n.unsubscribe()
		return fmt.Errorf("node: subscribe to gossip: %w", err)
	}
	n.unsubs = append(n.unsubs, unsub)
	lctx, cancel := context.WithCancel(ctx)
	n.cancel = cancel
	n.loops.Add(3)
	go n.gossipLoop(lctx)
	go n.handoffLoop(lctx)
	go n.topologyLoop(lctx)
	if n.cfg.AntiEntropyInterval > 0 {
		n.loops.Add(1)
		go n.antiEntropyLoop(lctx)
	}
	n.log.Info("node started", "cluster", n.cfg.Cluster, "epoch", n.epoch(),
		"ready", n.Ready() == nil, "n", n.cfg.N, "w", n.cfg.W, "r", n.cfg.R)
	return nil
}

func (n *Node) unsubscribe() {
	for _, u := range n.unsubs {
		if err := u(); err != nil {
			n.log.Warn("unsubscribe", "err", err)
		}
	}
	n.unsubs = nil
}

// Close stops serving, stops the loops, waits for the background completions
// of earlier requests (each bounded by RequestTimeout) and closes the hint
// store. It does not close Store or Transport, which the caller owns.
func (n *Node) Close() error {
	n.bgMu.Lock()
	if n.closed {
		n.bgMu.Unlock()
		return nil
	}
	n.closed = true
	n.bgMu.Unlock()
	n.mem.setClosed()
	n.unsubscribe()
	if n.cancel != nil {
		n.cancel()
	}
	n.loops.Wait()
	n.bg.Wait()
	n.rc.b.wait()
	if err := n.hints.close(); err != nil {
		return fmt.Errorf("node: close hint store: %w", err)
	}
	return nil
}

// goBG runs f in a background goroutine that Close waits for. It returns
// false, without running f, once the node is closed.
func (n *Node) goBG(f func()) bool {
	n.bgMu.Lock()
	if n.closed {
		n.bgMu.Unlock()
		return false
	}
	n.bg.Add(1)
	n.bgMu.Unlock()
	go func() {
		defer n.bg.Done()
		f()
	}()
	return true
}

// Ready returns nil when the node can coordinate requests, else an error
// wrapping ErrNotReady that says why. A node is ready once it knows a
// topology that counts it as a member (joining, normal or leaving) and
// agrees with its N and VNodes.
func (n *Node) Ready() error {
	n.bgMu.Lock()
	closed := n.closed
	n.bgMu.Unlock()
	switch {
	case closed:
		return fmt.Errorf("%w: closed", ErrNotReady)
	case !n.started.Load():
		return fmt.Errorf("%w: not started", ErrNotReady)
	}
	v := n.view()
	if v == nil {
		return fmt.Errorf("%w: no topology yet: %s", ErrNotReady, n.waitingFor())
	}
	select {
	case <-n.left:
		return fmt.Errorf("%w: %w at epoch %d", ErrNotReady, ErrRemoved, v.topo.Epoch)
	default:
	}
	if !v.topo.IsMember(n.self) && n.wasMember.Load() {
		return fmt.Errorf("%w: %w at epoch %d", ErrNotReady, ErrRemoved, v.topo.Epoch)
	}
	if !v.topo.IsMember(n.self) || n.dataLost.Load() {
		return fmt.Errorf("%w: not a member of the ring yet: %s", ErrNotReady, n.waitingFor())
	}
	if v.topo.N != n.cfg.N || v.topo.VNodes != n.cfg.VNodes {
		return fmt.Errorf("%w: configured with N=%d and %d vnodes, but the cluster has N=%d and %d vnodes",
			ErrNotReady, n.cfg.N, n.cfg.VNodes, v.topo.N, v.topo.VNodes)
	}
	return nil
}

func (n *Node) waitingFor() string {
	if s := n.waiting.Load(); s != nil && *s != "" {
		return *s
	}
	return "starting"
}

// LocalGet returns this node's own replica of key, tombstones included, or an
// error wrapping ErrNotFound.
func (n *Node) LocalGet(key []byte) (lsm.Record, error) {
	if err := n.checkKey(key); err != nil {
		return lsm.Record{}, err
	}
	rec, err := n.store.Get(key)
	if errors.Is(err, lsm.ErrNotFound) {
		return lsm.Record{}, fmt.Errorf("%w: %q", ErrNotFound, key)
	}
	if err != nil {
		return lsm.Record{}, fmt.Errorf("node: local get: %w", err)
	}
	n.clock.observe(rec.Version.Counter)
	return rec, nil
}

// LocalApply applies rec to this node's own replica if it is newer than the
// record held, and returns the version held afterwards. It validates the
// record and advances the clock past its version.
func (n *Node) LocalApply(rec lsm.Record) (held lsm.Version, applied bool, err error) {
	if err := n.checkRecord(&rec); err != nil {
		return lsm.Version{}, false, err
	}
	n.clock.observe(rec.Version.Counter)
	held, applied, err = n.store.Apply(rec)
	if err != nil {
		return held, applied, fmt.Errorf("node: local apply: %w", storeWriteErr(err))
	}
	return held, applied, nil
}

func (n *Node) checkKey(key []byte) error {
	if len(key) == 0 || len(key) > MaxKeyBytes {
		return fmt.Errorf("%w: length %d, want 1 to %d bytes", ErrInvalidKey, len(key), MaxKeyBytes)
	}
	return nil
}

func (n *Node) checkValue(v []byte) error {
	if len(v) > n.cfg.MaxValueBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrValueTooLarge, len(v), n.cfg.MaxValueBytes)
	}
	return nil
}

func (n *Node) checkRecord(rec *lsm.Record) error {
	if err := n.checkKey(rec.Key); err != nil {
		return err
	}
	if err := n.checkValue(rec.Value); err != nil {
		return err
	}
	if rec.Tombstone && len(rec.Value) != 0 {
		return fmt.Errorf("%w: tombstone with a value", ErrMalformed)
	}
	if rec.Version.IsZero() {
		return fmt.Errorf("%w: zero version", ErrMalformed)
	}
	if rec.Version.Counter > n.aheadLimit() {
		return fmt.Errorf("%w: version %v is more than %v ahead of this node's clock", ErrMalformed, rec.Version, MaxClockAhead)
	}
	return nil
}

// aheadLimit is the highest version counter this node accepts: its wall
// clock plus MaxClockAhead.
func (n *Node) aheadLimit() uint64 {
	return uint64(max(n.cfg.Clock.Now().Add(MaxClockAhead).UnixMilli(), 0)) << 16
}

// observeReply advances the clock past a version a peer reported, unless
// the version is more than MaxClockAhead ahead of this node's clock, which
// it reports with false. A peer's record or ack carries a version this node
// never checked; taking a far-future one into the clock would stamp every
// later write beyond what correct peers accept.
func (n *Node) observeReply(v lsm.Version) bool {
	if v.Counter > n.aheadLimit() {
		return false
	}
	n.clock.observe(v.Counter)
	return true
}

// MaxClockAhead bounds how far in the future a record's version may be. A
// version is a clock reading; accepting one far ahead would drag this
// node's clock (and every later write of the key) there, and a version near
// the top of the counter range would wedge the key for good. A node whose
// wall clock runs more than this ahead sees its writes rejected, loudly,
// rather than silently winning every conflict.
const MaxClockAhead = time.Hour

// ClusterStatus is a node's view of the cluster, for `kvs status` and
// /cluster.
type ClusterStatus struct {
	// Self is this node's ID; Cluster the cluster name.
	Self, Cluster string
	// Epoch is the topology epoch this node acts on (0: none yet).
	Epoch uint64
	// N, W, R are the effective replication factor and default quorums
	// (capped at the number of ring members).
	N, W, R int
	// Ready reports whether the node coordinates requests.
	Ready bool
	// Members are the ring's members (removed ones left out), sorted by ID.
	Members []MemberStatus
}

// MemberStatus is one ring member as this node sees it.
type MemberStatus struct {
	// ID is the member's node ID; HTTPAddr the address from its heartbeats
	// (or the one it joined with, before it is heard).
	ID, HTTPAddr string
	// State is the member's state in the topology: joining, normal or
	// leaving.
	State string
	// Alive reports whether the member was heard from within DownAfter
	// (always true for the node itself).
	Alive bool
	// LastSeen is when its last heartbeat arrived (zero if never since
	// this node started; now for the node itself).
	LastSeen time.Time
	// Epoch is the topology epoch its last heartbeat reported.
	Epoch uint64
	// Ownership is the fraction of the key space for which it is the
	// first replica.
	Ownership float64
	// HintsPending is the number of hints this node holds for it.
	HintsPending int
}

// Status returns this node's view of the cluster.
func (n *Node) Status() ClusterStatus {
	st := ClusterStatus{Self: n.self, Cluster: n.cfg.Cluster, Ready: n.Ready() == nil}
	v := n.view()
	if v == nil {
		return st
	}
	nEff := min(v.topo.N, max(v.place.Current.Len(), 1))
	st.Epoch, st.N, st.W, st.R = v.topo.Epoch, nEff, min(n.cfg.W, nEff), min(n.cfg.R, nEff)
	own := v.place.Current.Ownership()
	pending := n.hints.pendingByTarget()
	now := n.cfg.Clock.Now()
	for _, m := range v.topo.Members {
		if m.State == topology.Removed {
			continue
		}
		ms := MemberStatus{ID: m.ID, HTTPAddr: m.HTTP, State: string(m.State), Ownership: own[m.ID], HintsPending: pending[m.ID]}
		if m.ID == n.self {
			ms.HTTPAddr, ms.Alive, ms.LastSeen, ms.Epoch = n.cfg.HTTPAddr, true, now, v.topo.Epoch
		} else {
			p := n.mem.peer(m.ID)
			ms.Alive, ms.LastSeen, ms.Epoch = p.alive, p.lastSeen, p.epoch
			if p.http != "" {
				ms.HTTPAddr = p.http
			}
		}
		st.Members = append(st.Members, ms)
	}
	return st
}
