package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kvs-db/kvs/node/atomicfile"
	"github.com/kvs-db/kvs/node/topology"
)

// The node's side of the topology (package topology owns the document and
// its commands): it watches the store and adopts every newer topology,
// founds a new cluster or joins an existing one, streams the ranges it
// gains in a change, drops the ranges it lost once a change commits, and
// fences requests by epoch.
//
// Epoch fencing. Every put and get carries the epoch its coordinator
// planned it at. A replica refuses a request from an older epoch than its
// own, and a replica moves to a new epoch only once every request it
// admitted under the old one has finished (gate). So once a stream source
// has moved to a change's epoch, no write planned before the change can
// still land on it: its scan, which starts later, sees every such write.
// And a coordinator that missed a change cannot count an ack from a node
// that has already moved on (and may already have dropped the range).

// topologyFile is this node's last known topology in DataDir. A restarted
// node acts on it at once, before the store answers.
const topologyFile = "topology.json"

// ErrRemoved means this node was removed from its cluster (decommission or
// removenode). It will not serve again with its old data directory.
var ErrRemoved = errors.New("node: removed from the cluster")

// view is the topology this node acts on, with the placement it implies.
// It is immutable; the node swaps views whole.
type view struct {
	topo  topology.Topology
	rev   uint64 // the store's revision; 0 for a topology not yet in the store
	place *topology.Placement
}

func (n *Node) view() *view { return n.cur.Load() }

// epoch is the epoch this node acts on, 0 before it knows a topology.
func (n *Node) epoch() uint64 {
	if v := n.view(); v != nil {
		return v.topo.Epoch
	}
	return 0
}

// loadLocalTopology adopts DataDir/topology.json, if any. It refuses to go
// on when the file says this node was removed.
func (n *Node) loadLocalTopology() error {
	path := filepath.Join(n.cfg.DataDir, topologyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		n.freshStart = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("node: read topology: %w", err)
	}
	t, err := topology.Decode(b)
	if err != nil {
		return fmt.Errorf("node: topology file %s: %w", path, err)
	}
	if m, ok := t.Member(n.self); ok && m.State == topology.Removed {
		return fmt.Errorf("%w: %s left cluster %s at epoch %d; start it with an empty data directory to join again",
			ErrRemoved, n.self, t.ClusterID, m.Since)
	}
	n.adopt(t, 0)
	return nil
}

// adopt makes t, at store revision rev, the topology this node acts on, if
// it is newer than the current one and of the same cluster. A new epoch is
// installed under the gate: requests admitted under the old epoch finish
// first.
func (n *Node) adopt(t topology.Topology, rev uint64) {
	n.adoptMu.Lock()
	defer n.adoptMu.Unlock()
	old := n.view()
	if old != nil {
		if t.ClusterID != old.topo.ClusterID {
			n.logOnce("foreign", "the topology store holds another cluster's ring: ignoring it",
				"ours", old.topo.ClusterID, "store", t.ClusterID)
			return
		}
		if t.Epoch < old.topo.Epoch || (t.Epoch == old.topo.Epoch && rev <= old.rev) {
			return
		}
	}
	place, err := t.Placement()
	if err != nil {
		n.log.Error("topology without a placement", "epoch", t.Epoch, "err", err)
		return
	}
	v := &view{topo: t, rev: rev, place: place}
	if old == nil || old.topo.Epoch != t.Epoch {
		n.gate.Lock()
		n.cur.Store(v)
		n.gate.Unlock()
		n.logTopology(t)
	} else {
		n.cur.Store(v)
	}
	n.mem.setMembers(t.IDs(topology.Joining, topology.Normal, topology.Leaving))
	if t.IsMember(n.self) && !n.wasMember.Load() && n.lostData(t) {
		n.dataLost.Store(true)
		n.logOnce("lost", "this node's ID is a member of the ring, but its data directory is new: its data is lost. "+
			"It serves nothing. Remove it from another node (kvs removenode "+n.self+" --force) and it joins again with "+
			"its ranges streamed, or restart it with its old data directory", "cluster_id", t.ClusterID)
	}
	if t.IsMember(n.self) && !n.dataLost.Load() {
		n.wasMember.Store(true)
	}
	if !t.IsMember(n.self) {
		n.dataLost.Store(false)
	}
	if err := n.persistTopology(t); err != nil {
		n.log.Error("persist topology", "err", err)
	}
	n.wakeTopology()
}

func (n *Node) logTopology(t topology.Topology) {
	args := []any{"epoch", t.Epoch, "cluster_id", t.ClusterID}
	for _, m := range t.Members {
		if m.State != topology.Removed {
			args = append(args, m.ID, string(m.State))
		}
	}
	if c := t.Change; c != nil {
		args = append(args, "change", fmt.Sprintf("%s %s (gainers %v, streamed %v)", c.Kind, c.Node, c.Gainers, c.Streamed))
	}
	n.log.Info("topology", args...)
}

// persistTopology writes t to DataDir/topology.json atomically.
func (n *Node) persistTopology(t topology.Topology) error {
	b, err := t.Encode()
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(n.cfg.DataDir, topologyFile), append(b, '\n'))
}

// lostData reports whether t counts this node as a member although this
// process started with no topology file and did not itself found or join
// the cluster: a node whose disk was wiped or replaced, restarted under its
// old ID. Serving would make it a replica that holds none of its ranges. A
// node that took part in founding the cluster adopts it from the store
// like this too, so a topology still at its first epoch and founded around
// when this process started (within the clock skew nodes tolerate,
// 3 × MaxClockAhead) is taken as that.
func (n *Node) lostData(t topology.Topology) bool {
	if !n.freshStart || n.claimed.Load() {
		return false
	}
	founding := t.Epoch == 1 && t.FoundedMs >= n.startedAt.Add(-3*MaxClockAhead).UnixMilli()
	return !founding
}

// fence runs f with this node's epoch held steady, unless epoch (the one
// the request was planned at) is older than this node's: then f does not
// run and fence returns the refusal. A request from a newer epoch runs, and
// makes this node look for the newer topology.
func (n *Node) fence(epoch uint64, f func()) *StaleError {
	n.gate.RLock()
	defer n.gate.RUnlock()
	cur := n.epoch()
	if epoch < cur {
		n.met.staleRefused.Inc()
		return &StaleError{Epoch: cur}
	}
	if epoch > cur {
		n.behind.Store(true)
		n.wakeTopology()
	}
	f()
	return nil
}

// refresh loads the stored topology and adopts it if newer, so that a
// coordinator that met a replica at a later epoch catches up before it
// plans again.
func (n *Node) refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	t, rev, err := n.cfg.Topology.Load(ctx)
	if err != nil {
		n.log.Debug("refresh topology", "err", err)
		return
	}
	n.adopt(t, rev)
}

func (n *Node) wakeTopology() {
	select {
	case n.topoWake <- struct{}{}:
	default:
	}
}

// topologyLoop watches the store and reconciles this node with the
// topology: every GossipInterval, and at once when something changed.
func (n *Node) topologyLoop(ctx context.Context) {
	defer n.loops.Done()
	n.loops.Add(1)
	go n.watchTopology(ctx)
	t := time.NewTicker(n.cfg.GossipInterval)
	defer t.Stop()
	for {
		n.reconcile(ctx)
		select {
		case <-ctx.Done():
			n.stopStreaming()
			return
		case <-t.C:
		case <-n.topoWake:
		}
	}
}

func (n *Node) watchTopology(ctx context.Context) {
	defer n.loops.Done()
	for ctx.Err() == nil {
		err := n.cfg.Topology.Watch(ctx, n.adopt)
		if ctx.Err() != nil {
			return
		}
		n.log.Warn("topology watch ended; watching again", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(n.cfg.GossipInterval):
		}
	}
}

// reconcile does what the current topology asks of this node.
func (n *Node) reconcile(ctx context.Context) {
	if n.behind.Swap(false) {
		n.refresh(ctx)
	}
	v := n.view()
	if v == nil {
		n.found(ctx)
		return
	}
	if v.rev == 0 {
		n.publishTopology(ctx, v)
	}
	m, ok := v.topo.Member(n.self)
	switch {
	case n.dataLost.Load():
		n.setWaiting("this node's data directory is new but the ring counts it as a member: remove it (kvs removenode " + n.self + " --force) to have it join again")
	case (!ok || m.State == topology.Removed) && n.wasMember.Load():
		n.markLeft(v)
	case !ok || m.State == topology.Removed:
		n.join(ctx, v)
	default:
		n.setWaiting("")
		n.reconcileTrees(ctx, v)
		n.reconcileStreaming(ctx, v)
		n.reconcileCleanup(ctx, v)
		n.maintainStore(ctx, v)
	}
}

// storeCtx bounds one store operation of the topology loop.
func (n *Node) storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, n.cfg.RequestTimeout)
}

// found looks for the cluster's topology and, when there is none, founds
// the cluster.
func (n *Node) found(ctx context.Context) {
	sctx, cancel := n.storeCtx(ctx)
	defer cancel()
	t, rev, err := n.cfg.Topology.Load(sctx)
	switch {
	case err == nil:
		n.adopt(t, rev)
	case errors.Is(err, topology.ErrNotFound):
		n.bootstrap(ctx, true)
	case errors.Is(err, topology.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded):
		n.bootstrap(ctx, false)
	default:
		n.setWaiting("reading the topology store: " + err.Error())
	}
}

// bootstrap founds a new cluster of this node and the non-members it hears,
// once it hears NeedPeers of them and none knows a cluster already. With
// the store up, the first node to propose wins and the others adopt its
// topology; with the store unavailable, only a lone node (NeedPeers 0,
// nobody heard) founds its cluster by itself, and publishes it later.
func (n *Node) bootstrap(ctx context.Context, storeUp bool) {
	ids, https, maxEpoch := n.mem.candidates()
	switch {
	case maxEpoch > 0:
		n.setWaiting(fmt.Sprintf("a peer knows a cluster (epoch %d); waiting for the topology store", maxEpoch))
		return
	case len(ids) < n.cfg.NeedPeers:
		n.setWaiting(fmt.Sprintf("heard from %d of the %d peers needed to found a cluster", len(ids), n.cfg.NeedPeers))
		return
	case !storeUp && (n.cfg.NeedPeers > 0 || len(ids) > 0):
		n.setWaiting("waiting for the topology store to found the cluster")
		return
	}
	cmd := topology.Command{Op: topology.OpBootstrap, ClusterID: newClusterID(), N: n.cfg.N, VNodes: n.cfg.VNodes,
		FoundedMs: n.cfg.Clock.Now().UnixMilli(), Members: []topology.Member{{ID: n.self, HTTP: n.cfg.HTTPAddr}}}
	n.claimed.Store(true)
	for _, id := range ids {
		cmd.Members = append(cmd.Members, topology.Member{ID: id, HTTP: https[id]})
	}
	if !storeUp {
		t, err := topology.Apply(topology.Topology{}, cmd)
		if err != nil {
			n.log.Error("found a cluster of one", "err", err)
			return
		}
		n.log.Info("founded a cluster of one; it goes to the topology store once another node joins", "cluster_id", t.ClusterID)
		n.adopt(t, 0)
		return
	}
	sctx, cancel := n.storeCtx(ctx)
	defer cancel()
	t, rev, err := topology.Propose(sctx, n.cfg.Topology, cmd)
	if err != nil {
		// Another node founded it first (ErrExists): the next round finds it.
		n.setWaiting("founding the cluster: " + err.Error())
		return
	}
	n.log.Info("founded the cluster", "cluster_id", t.ClusterID, "members", t.IDs(topology.Normal))
	n.adopt(t, rev)
}

func newClusterID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// publishTopology puts a topology only this node has (a lone node's) into the
// store, once the store answers and holds none.
func (n *Node) publishTopology(ctx context.Context, v *view) {
	sctx, cancel := n.storeCtx(ctx)
	defer cancel()
	t, rev, err := n.cfg.Topology.Load(sctx)
	switch {
	case err == nil:
		n.adopt(t, rev)
	case errors.Is(err, topology.ErrNotFound):
		rev, err := n.cfg.Topology.Create(sctx, v.topo)
		if err == nil {
			n.log.Info("topology published to the store", "epoch", v.topo.Epoch)
			n.adopt(v.topo, rev)
		}
	}
}

// join asks to join the cluster: this node enters as joining and streams
// the ranges it will own; another change in progress makes it wait.
func (n *Node) join(ctx context.Context, v *view) {
	if v.rev == 0 {
		return // only from a stored topology
	}
	sctx, cancel := n.storeCtx(ctx)
	defer cancel()
	n.claimed.Store(true)
	t, rev, err := topology.Propose(sctx, n.cfg.Topology, topology.Command{Op: topology.OpJoin, Node: n.self, HTTP: n.cfg.HTTPAddr})
	if err != nil {
		n.setWaiting("joining: " + err.Error())
		if !errors.Is(err, topology.ErrBusy) {
			n.log.Warn("join", "err", err)
		}
		return
	}
	n.log.Info("joining the cluster", "epoch", t.Epoch, "cluster_id", t.ClusterID)
	n.adopt(t, rev)
}

// markLeft is called once the topology has removed this node: it stops
// coordinating and tells whoever waits on Left.
func (n *Node) markLeft(v *view) {
	n.leftOnce.Do(func() {
		n.log.Info("removed from the ring; this node no longer serves", "epoch", v.topo.Epoch)
		close(n.left)
	})
}

// Left is closed when this node has been removed from the ring (its
// decommission finished, or it was removed): the process should stop.
func (n *Node) Left() <-chan struct{} { return n.left }

// maintainStore keeps the topology store fit for the topology: the bucket
// replicated min(3, members) ways, removed members out of its Raft group.
// One node does it: the alive normal member with the lowest ID.
func (n *Node) maintainStore(ctx context.Context, v *view) {
	mt, ok := n.cfg.Topology.(topology.Maintainer)
	if !ok || v.rev == 0 || n.maintained.Load() == v.topo.Epoch {
		return
	}
	for _, id := range v.topo.IDs(topology.Normal) {
		if id == n.self {
			break
		}
		if n.mem.alive(id) {
			return
		}
	}
	sctx, cancel := n.storeCtx(ctx)
	defer cancel()
	if err := mt.Maintain(sctx, v.topo); err != nil {
		n.log.Warn("maintain the topology store", "epoch", v.topo.Epoch, "err", err)
		return
	}
	n.maintained.Store(v.topo.Epoch)
}

// setWaiting records why the node is not ready yet ("" when it is), for
// Ready's error.
func (n *Node) setWaiting(s string) {
	n.waiting.Store(&s)
}

func (n *Node) logOnce(key, msg string, args ...any) {
	if _, loaded := n.logged.LoadOrStore(key, true); !loaded {
		n.log.Error(msg, args...)
	}
}
