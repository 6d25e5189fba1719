package topology

import (
	"errors"
	"fmt"
	"slices"
)

// Op is a topology command.
type Op string

// Commands. Each is applied by Apply, which refuses what does not fit the
// current topology.
const (
	// OpBootstrap creates the topology of a new cluster: Members, all
	// normal, at epoch 1.
	OpBootstrap Op = "bootstrap"
	// OpJoin adds Node as joining and begins its join.
	OpJoin Op = "join"
	// OpLeave begins the decommission of Node, a normal member.
	OpLeave Op = "leave"
	// OpRemove begins the removal of Node, a dead member. Of a member whose
	// own decommission is pending, it turns the decommission into a
	// removal (the survivors stream instead of it); of a joining member, it
	// abandons the join.
	OpRemove Op = "remove"
	// OpStreamed records that gainer Node has streamed all its ranges; the
	// last gainer's commits the change.
	OpStreamed Op = "streamed"
	// OpAbort abandons the pending change: a joining member is removed, a
	// leaving one is normal again. Data already streamed stays where it
	// is until cleanup.
	OpAbort Op = "abort"
)

// Command is one topology command.
type Command struct {
	// Op is the command.
	Op Op `json:"op"`
	// Node is the member the command is about (every command but
	// OpBootstrap and OpAbort).
	Node string `json:"node,omitempty"`
	// HTTP is the joining member's HTTP address (OpJoin).
	HTTP string `json:"http,omitempty"`
	// Members, ClusterID, FoundedMs, N and VNodes describe a new cluster
	// (OpBootstrap).
	Members   []Member `json:"members,omitempty"`
	ClusterID string   `json:"cluster_id,omitempty"`
	FoundedMs int64    `json:"founded_ms,omitempty"`
	N         int      `json:"n,omitempty"`
	VNodes    int      `json:"vnodes,omitempty"`
}

// Sentinel errors of Apply; callers branch on them.
var (
	// ErrBusy means another change is pending: changes run one at a time.
	ErrBusy = errors.New("topology: another change is in progress")
	// ErrTooFew means a decommission would leave fewer normal members
	// than N.
	ErrTooFew = errors.New("topology: too few members would remain")
	// ErrNotMember means the command names no (live) member.
	ErrNotMember = errors.New("topology: not a member")
	// ErrState means the member is not in a state the command applies to.
	ErrState = errors.New("topology: member in the wrong state")
	// ErrExists means a cluster already exists (bootstrap) or the member
	// already belongs to the ring (join).
	ErrExists = errors.New("topology: already exists")
	// ErrNoChange means OpStreamed or OpAbort found no pending change
	// they apply to.
	ErrNoChange = errors.New("topology: no such pending change")
	// ErrInvalid means the command itself is malformed.
	ErrInvalid = errors.New("topology: invalid command")
)

// Apply returns the topology that results from applying c to t, or an
// error that says why c does not apply. It never modifies t. Every command
// that moves placement advances the epoch by one; OpStreamed advances it
// only when it commits the change.
func Apply(t Topology, c Command) (Topology, error) {
	if c.Op != OpBootstrap && t.Epoch == 0 {
		return t, fmt.Errorf("%w: %s: no cluster yet", ErrNoChange, c.Op)
	}
	if c.Op != OpBootstrap && c.Op != OpAbort {
		if err := ValidID(c.Node); err != nil {
			return t, fmt.Errorf("%w: %s: node: %w", ErrInvalid, c.Op, err)
		}
	}
	var (
		next Topology
		err  error
	)
	switch c.Op {
	case OpBootstrap:
		next, err = bootstrap(t, c)
	case OpJoin:
		next, err = join(t.Clone(), c)
	case OpLeave:
		next, err = leave(t.Clone(), c.Node, KindLeave)
	case OpRemove:
		next, err = remove(t.Clone(), c.Node)
	case OpStreamed:
		next, err = streamed(t.Clone(), c.Node)
	case OpAbort:
		next, err = abort(t.Clone())
	default:
		return t, fmt.Errorf("%w: unknown op %q", ErrInvalid, c.Op)
	}
	if err != nil {
		return t, err
	}
	if verr := next.Validate(); verr != nil {
		// A bug in this package, never a bad command: refuse to store it.
		return t, fmt.Errorf("topology: %s of %q would produce an invalid topology: %w", c.Op, c.Node, verr)
	}
	return next, nil
}

func bootstrap(t Topology, c Command) (Topology, error) {
	if t.Epoch != 0 {
		return t, fmt.Errorf("%w: cluster %s at epoch %d", ErrExists, t.ClusterID, t.Epoch)
	}
	if len(c.Members) == 0 || c.ClusterID == "" {
		return t, fmt.Errorf("%w: bootstrap needs members and a cluster id", ErrInvalid)
	}
	next := Topology{ClusterID: c.ClusterID, FoundedMs: c.FoundedMs, Epoch: 1, N: c.N, VNodes: c.VNodes}
	for _, m := range c.Members {
		if err := ValidID(m.ID); err != nil {
			return t, fmt.Errorf("%w: bootstrap member: %w", ErrInvalid, err)
		}
		next.Members = append(next.Members, Member{ID: m.ID, State: Normal, HTTP: m.HTTP, Since: 1})
	}
	slices.SortFunc(next.Members, func(a, b Member) int { return cmpString(a.ID, b.ID) })
	next.Members = slices.CompactFunc(next.Members, func(a, b Member) bool { return a.ID == b.ID })
	return next, nil
}

func join(t Topology, c Command) (Topology, error) {
	if m, ok := t.Member(c.Node); ok && m.State != Removed {
		return t, fmt.Errorf("%w: %q is %s", ErrExists, c.Node, m.State)
	}
	if t.Change != nil {
		return t, busy(t.Change)
	}
	t.Epoch++
	t.setMember(Member{ID: c.Node, State: Joining, HTTP: c.HTTP, Since: t.Epoch})
	t.Change = &Change{Kind: KindJoin, Node: c.Node, Epoch: t.Epoch, Gainers: []string{c.Node}}
	return t, nil
}

func leave(t Topology, id string, kind Kind) (Topology, error) {
	m, ok := t.Member(id)
	switch {
	case !ok || m.State == Removed:
		return t, fmt.Errorf("%w: %q", ErrNotMember, id)
	case t.Change != nil:
		return t, busy(t.Change)
	case m.State != Normal:
		return t, fmt.Errorf("%w: %q is %s", ErrState, id, m.State)
	}
	if kind == KindLeave && t.Count(Normal)-1 < t.N {
		return t, fmt.Errorf("%w: decommissioning %q would leave %d members, fewer than N=%d replicas",
			ErrTooFew, id, t.Count(Normal)-1, t.N)
	}
	if t.Count(Normal) < 2 {
		return t, fmt.Errorf("%w: %q is the last member", ErrTooFew, id)
	}
	t.Epoch++
	m.State, m.Since = Leaving, t.Epoch
	t.setMember(m)
	t.Change = &Change{Kind: kind, Node: id, Epoch: t.Epoch}
	return t.withGainers()
}

func remove(t Topology, id string) (Topology, error) {
	c := t.Change
	switch {
	case c != nil && c.Node == id && c.Kind == KindJoin:
		// The joining member is gone: abandon its join.
		return abort(t)
	case c != nil && c.Node == id && c.Kind == KindLeave:
		// It died while decommissioning: the survivors stream instead.
		// Gainers that finished have every range; the others switch sources.
		c.Kind = KindRemove
		return t, nil
	case c != nil && c.Node == id:
		return t, fmt.Errorf("%w: %q is already being removed", ErrExists, id)
	}
	return leave(t, id, KindRemove)
}

// withGainers fills in the gainers of the change just begun, and commits it
// at once when there are none (the remaining members hold every range).
func (t Topology) withGainers() (Topology, error) {
	p, err := t.Placement()
	if err != nil {
		return t, err
	}
	t.Change.Gainers = p.gainers()
	if len(t.Change.Gainers) == 0 {
		return commit(t), nil
	}
	return t, nil
}

func streamed(t Topology, gainer string) (Topology, error) {
	c := t.Change
	if c == nil {
		return t, fmt.Errorf("%w: %q streamed, but no change is pending", ErrNoChange, gainer)
	}
	i, ok := slices.BinarySearch(c.Gainers, gainer)
	if !ok {
		return t, fmt.Errorf("%w: %q is not a gainer of the %s of %q", ErrNoChange, gainer, c.Kind, c.Node)
	}
	if j, done := slices.BinarySearch(c.Streamed, c.Gainers[i]); !done {
		c.Streamed = slices.Insert(c.Streamed, j, gainer)
	}
	if len(c.Streamed) == len(c.Gainers) {
		return commit(t), nil
	}
	return t, nil
}

// commit ends the pending change as planned: the joining member turns
// normal, the leaving one removed.
func commit(t Topology) Topology {
	return end(t, t.Change.Kind == KindJoin)
}

// abort ends the pending change undone: a joining member is removed, a
// leaving one normal again.
func abort(t Topology) (Topology, error) {
	if t.Change == nil {
		return t, fmt.Errorf("%w: nothing to abort", ErrNoChange)
	}
	return end(t, t.Change.Kind != KindJoin), nil
}

// end closes the pending change at a new epoch, leaving its member normal
// or removed.
func end(t Topology, normal bool) Topology {
	t.Epoch++
	m, _ := t.Member(t.Change.Node)
	m.Since, m.State = t.Epoch, Removed
	if normal {
		m.State = Normal
	}
	t.setMember(m)
	t.Change = nil
	return t
}

// setMember inserts m or replaces the member with its ID, keeping Members
// sorted.
func (t *Topology) setMember(m Member) {
	i, ok := slices.BinarySearchFunc(t.Members, m.ID, func(x Member, id string) int { return cmpString(x.ID, id) })
	if ok {
		t.Members[i] = m
		return
	}
	t.Members = slices.Insert(t.Members, i, m)
}

func busy(c *Change) error {
	return fmt.Errorf("%w: the %s of %q, begun at epoch %d, is pending (%d of %d gainers done); wait for it, or abort it",
		ErrBusy, c.Kind, c.Node, c.Epoch, len(c.Streamed), len(c.Gainers))
}
