package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kvs-db/kvs/node/topology"
)

// Operator commands on the topology: decommission, removenode, abort, and
// the ring's state for `kvs ring`. Each is one Propose on the store: it is
// applied whole or refused with the topology package's error (ErrBusy,
// ErrTooFew, ErrNotMember, ...), which callers branch on.

// ErrAlive means removenode was asked for a member that is alive; it takes
// Force to remove one.
var ErrAlive = errors.New("node: member is alive")

// Decommission begins this node's decommission: the members that take over
// its ranges stream them from it, then it is removed and Left is closed.
// It refuses (topology.ErrTooFew) when fewer than N members would remain.
func (n *Node) Decommission(ctx context.Context) error {
	return n.propose(ctx, topology.Command{Op: topology.OpLeave, Node: n.self})
}

// RemoveNode begins the removal of member id, which should be dead: the
// members that take over its ranges re-replicate them from the surviving
// replicas, and hints for it are dropped. Without force it refuses a member
// this node sees alive (ErrAlive). Of a member whose decommission is
// pending it makes a removal; of a joining member it abandons the join.
func (n *Node) RemoveNode(ctx context.Context, id string, force bool) error {
	if id == n.self {
		return fmt.Errorf("%w: a node cannot remove itself; decommission it, or remove it through another node", topology.ErrInvalid)
	}
	if n.mem.alive(id) && !force {
		return fmt.Errorf("%w: %s was heard from within %v; decommission it instead, or force the removal", ErrAlive, id, n.cfg.DownAfter)
	}
	return n.propose(ctx, topology.Command{Op: topology.OpRemove, Node: id})
}

// AbortChange abandons the pending change: a joining member is removed, a
// leaving one turns normal again.
func (n *Node) AbortChange(ctx context.Context) error {
	return n.propose(ctx, topology.Command{Op: topology.OpAbort})
}

func (n *Node) propose(ctx context.Context, c topology.Command) error {
	if v := n.view(); v == nil || v.rev == 0 {
		return fmt.Errorf("%w: the topology store has no topology of this node's yet", ErrNotReady)
	}
	t, rev, err := topology.Propose(ctx, n.cfg.Topology, c)
	if err != nil {
		return err
	}
	n.log.Info("topology command applied", "op", c.Op, "node", c.Node, "epoch", t.Epoch)
	n.adopt(t, rev)
	return nil
}

// RingStatus is the ring as this node knows it, for `kvs ring`.
type RingStatus struct {
	// Self answered; ClusterID and Epoch identify the topology; Revision is
	// its revision in the store (0: only this node has it).
	Self, ClusterID string
	Epoch, Revision uint64
	// N and VNodes are the cluster's.
	N, VNodes int
	// Members are every member, removed ones included, sorted by ID.
	Members []RingMember
	// Change is the pending change, nil when none is.
	Change *RingChange
}

// RingMember is one member of RingStatus.
type RingMember struct {
	ID, State, HTTP string
	// Since is the epoch it entered State at.
	Since uint64
	// Alive is its liveness as this node sees it; Epoch the epoch its last
	// heartbeat reported.
	Alive bool
	Epoch uint64
	// Ownership is its share of the key space as first replica on the
	// current ring; Replicated its share as any of the N replicas.
	Ownership, Replicated float64
}

// RingChange is the pending change with its transfers and the gainers'
// progress.
type RingChange struct {
	Kind, Node string
	Epoch      uint64
	Gainers    []string
	Streamed   []string
	Transfers  []topology.Transfer
	Progress   []topology.Progress
}

// Ring returns the ring as this node knows it. Progress comes from the
// store; when the store does not answer, it is left out.
func (n *Node) Ring(ctx context.Context) (RingStatus, error) {
	v := n.view()
	if v == nil {
		return RingStatus{}, fmt.Errorf("%w: no topology yet: %s", ErrNotReady, n.waitingFor())
	}
	t := v.topo
	rs := RingStatus{Self: n.self, ClusterID: t.ClusterID, Epoch: t.Epoch, Revision: v.rev, N: t.N, VNodes: t.VNodes}
	own := v.place.Current.Ownership()
	repl := replicatedShare(v)
	for _, m := range t.Members {
		rm := RingMember{ID: m.ID, State: string(m.State), HTTP: m.HTTP, Since: m.Since,
			Ownership: own[m.ID], Replicated: repl[m.ID]}
		if m.ID == n.self {
			rm.Alive, rm.Epoch = true, t.Epoch
		} else if m.State != topology.Removed {
			p := n.mem.peer(m.ID)
			rm.Alive, rm.Epoch = p.alive, p.epoch
		}
		rs.Members = append(rs.Members, rm)
	}
	if c := t.Change; c != nil {
		rc := &RingChange{Kind: string(c.Kind), Node: c.Node, Epoch: c.Epoch, Gainers: c.Gainers, Streamed: c.Streamed,
			Transfers: v.place.Transfers()}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if ps, err := n.cfg.Topology.Progress(sctx); err == nil {
			for _, p := range ps {
				if p.Epoch == c.Epoch {
					rc.Progress = append(rc.Progress, p)
				}
			}
		}
		rs.Change = rc
	}
	return rs, nil
}

// replicatedShare is each member's share of the key space as any of the N
// replicas on the current ring.
func replicatedShare(v *view) map[string]float64 {
	out := map[string]float64{}
	tokens := v.place.Current.Tokens()
	var prefs []string
	for i, hi := range tokens {
		lo := tokens[(i+len(tokens)-1)%len(tokens)]
		share := 1.0
		if lo != hi {
			share = float64(hi-lo) / (float64(1<<63) * 2)
		}
		prefs = v.place.Replicas(prefs[:0], hi)
		for _, id := range prefs {
			out[id] += share
		}
	}
	return out
}
