package topology

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/kvs-db/kvs/bus"
	"github.com/kvs-db/kvs/ring"
)

// State is a member's place in the ring.
type State string

// Member states. A member moves joining -> normal -> leaving -> removed; a
// removed member may join again.
const (
	// Joining: the member receives the writes of the ranges it will own
	// and streams their data; it serves no reads yet.
	Joining State = "joining"
	// Normal: the member owns its ranges.
	Normal State = "normal"
	// Leaving: the member still owns its ranges while the members that take
	// them over stream them (decommission), or while the survivors
	// re-replicate them (removenode of a dead member).
	Leaving State = "leaving"
	// Removed: the member owns nothing. It stays in the list so that the
	// node, should it come back with its old data, knows it left.
	Removed State = "removed"
)

func (s State) valid() bool {
	switch s {
	case Joining, Normal, Leaving, Removed:
		return true
	}
	return false
}

// Member is one node of the ring.
type Member struct {
	// ID is the node ID: a NATS subject token, at most 255 bytes.
	ID string `json:"id"`
	// State is the member's place in the ring.
	State State `json:"state"`
	// HTTP is the address the member's HTTP API is reached at, as it
	// advertised it when it joined. Informational.
	HTTP string `json:"http,omitempty"`
	// Since is the epoch at which the member entered State.
	Since uint64 `json:"since"`
}

// Kind is the kind of a topology change.
type Kind string

// Change kinds.
const (
	// KindJoin: a new member streams the ranges it will own from the
	// members that lose them.
	KindJoin Kind = "join"
	// KindLeave: a live member (decommission) hands its ranges to the
	// members that take them over; they stream from it.
	KindLeave Kind = "leave"
	// KindRemove: a dead member's ranges are re-replicated by the members
	// that take them over, from the surviving replicas.
	KindRemove Kind = "remove"
)

// Change is the one pending topology change.
type Change struct {
	// Kind is what the change does to Node.
	Kind Kind `json:"kind"`
	// Node is the member that joins, leaves or is removed.
	Node string `json:"node"`
	// Epoch is the epoch the change began at. It equals the topology's
	// epoch for as long as the change is pending: marking a gainer done
	// moves no data and does not change the epoch.
	Epoch uint64 `json:"epoch"`
	// Gainers are the members that receive ranges, sorted.
	Gainers []string `json:"gainers"`
	// Streamed are the gainers that have finished streaming, sorted. When
	// every gainer has, the change commits.
	Streamed []string `json:"streamed,omitempty"`
}

// Done reports whether gainer has finished streaming.
func (c *Change) Done(gainer string) bool {
	_, ok := slices.BinarySearch(c.Streamed, gainer)
	return ok
}

// Topology is the cluster's ring metadata: who the members are, in which
// state, and the one change in progress. It changes only through Apply, one
// epoch at a time.
type Topology struct {
	// ClusterID is chosen at bootstrap; a node that finds a topology of
	// another cluster ID in the store belongs to another cluster.
	ClusterID string `json:"cluster_id"`
	// FoundedMs is when the cluster was founded, Unix milliseconds on the
	// founding node's clock.
	FoundedMs int64 `json:"founded_ms,omitempty"`
	// Epoch counts the changes of placement. Zero means no cluster yet.
	Epoch uint64 `json:"epoch"`
	// N is the replication factor and VNodes the virtual nodes per member:
	// every node must place keys alike, so they are the cluster's, fixed at
	// bootstrap.
	N      int `json:"n"`
	VNodes int `json:"vnodes"`
	// Members are sorted by ID, removed ones included.
	Members []Member `json:"members"`
	// Change is the pending change, nil when none is.
	Change *Change `json:"change,omitempty"`
}

// ErrMalformed is wrapped by Decode errors.
var ErrMalformed = errors.New("topology: malformed document")

// maxDocBytes bounds a topology document. 4096 members fit easily.
const maxDocBytes = 1 << 20

// Member returns the member called id and whether there is one.
func (t *Topology) Member(id string) (Member, bool) {
	i, ok := slices.BinarySearchFunc(t.Members, id, func(m Member, id string) int { return cmpString(m.ID, id) })
	if !ok {
		return Member{}, false
	}
	return t.Members[i], true
}

// IsMember reports whether id is a member that is not removed.
func (t *Topology) IsMember(id string) bool {
	m, ok := t.Member(id)
	return ok && m.State != Removed
}

// Count returns how many members are in one of the states.
func (t *Topology) Count(states ...State) int {
	n := 0
	for _, m := range t.Members {
		if slices.Contains(states, m.State) {
			n++
		}
	}
	return n
}

// IDs returns the IDs of the members in one of the states, sorted.
func (t *Topology) IDs(states ...State) []string {
	var out []string
	for _, m := range t.Members {
		if slices.Contains(states, m.State) {
			out = append(out, m.ID)
		}
	}
	return out
}

// Clone returns a deep copy of t.
func (t Topology) Clone() Topology {
	t.Members = slices.Clone(t.Members)
	if t.Change != nil {
		c := *t.Change
		c.Gainers = slices.Clone(c.Gainers)
		c.Streamed = slices.Clone(c.Streamed)
		t.Change = &c
	}
	return t
}

// Encode returns t as JSON.
func (t *Topology) Encode() ([]byte, error) {
	b, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("topology: encode: %w", err)
	}
	return b, nil
}

// Decode parses and validates a topology document.
func Decode(b []byte) (Topology, error) {
	var t Topology
	if len(b) > maxDocBytes {
		return t, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(b), maxDocBytes)
	}
	if err := json.Unmarshal(b, &t); err != nil {
		return Topology{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := t.Validate(); err != nil {
		return Topology{}, err
	}
	return t, nil
}

// Validate checks that t is a topology Apply could have produced: members
// sorted and distinct with valid IDs and states, and a change consistent
// with them. Its errors wrap ErrMalformed.
func (t *Topology) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	if t.Epoch == 0 {
		return bad("epoch 0")
	}
	if t.N < 1 || t.N > 16 {
		return bad("n %d out of range [1, 16]", t.N)
	}
	if t.VNodes < 1 || t.VNodes > 1<<16 {
		return bad("vnodes %d out of range [1, 65536]", t.VNodes)
	}
	if t.ClusterID == "" {
		return bad("no cluster id")
	}
	for i, m := range t.Members {
		if err := ValidID(m.ID); err != nil {
			return bad("member %d: %v", i, err)
		}
		if i > 0 && t.Members[i-1].ID >= m.ID {
			return bad("members not sorted and distinct at %q", m.ID)
		}
		if !m.State.valid() {
			return bad("member %q: state %q", m.ID, m.State)
		}
		if m.Since > t.Epoch {
			return bad("member %q: since epoch %d, after epoch %d", m.ID, m.Since, t.Epoch)
		}
	}
	if t.Count(Normal, Leaving) == 0 {
		return bad("no member owns any range")
	}
	if c := t.Change; c != nil {
		return t.validateChange(c, bad)
	}
	if n := t.Count(Joining, Leaving); n > 0 {
		return bad("%d members joining or leaving with no change pending", n)
	}
	return nil
}

func (t *Topology) validateChange(c *Change, bad func(string, ...any) error) error {
	if c.Epoch != t.Epoch {
		return bad("change began at epoch %d, topology at %d", c.Epoch, t.Epoch)
	}
	m, ok := t.Member(c.Node)
	want := map[Kind]State{KindJoin: Joining, KindLeave: Leaving, KindRemove: Leaving}[c.Kind]
	if want == "" {
		return bad("change kind %q", c.Kind)
	}
	if !ok || m.State != want {
		return bad("%s of %q, which is not %s", c.Kind, c.Node, want)
	}
	if t.Count(Joining, Leaving) != 1 {
		return bad("more than one member joining or leaving")
	}
	if !slices.IsSorted(c.Gainers) || !slices.IsSorted(c.Streamed) {
		return bad("gainers not sorted")
	}
	for _, g := range c.Gainers {
		if gm, ok := t.Member(g); !ok || (gm.State != Normal && gm.State != Joining) {
			return bad("gainer %q is not a normal or joining member", g)
		}
	}
	for _, s := range c.Streamed {
		if _, ok := slices.BinarySearch(c.Gainers, s); !ok {
			return bad("%q streamed but is no gainer", s)
		}
	}
	return nil
}

// ValidID reports whether id can name a member: a NATS subject token of at
// most 255 bytes.
func ValidID(id string) error {
	if err := bus.ValidToken(id); err != nil {
		return err
	}
	if len(id) > 255 {
		return fmt.Errorf("member id longer than 255 bytes")
	}
	return nil
}

// RingConfig is the ring configuration of t's members.
func (t *Topology) RingConfig() ring.Config { return ring.Config{VNodes: t.VNodes} }

func cmpString(a, b string) int { return strings.Compare(a, b) }
