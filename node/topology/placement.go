package topology

import (
	"fmt"
	"slices"

	"github.com/kvs-db/kvs/ring"
)

// Placement is where keys live at one epoch: the rings a topology implies.
// It is immutable and safe for concurrent use.
//
// Current holds the normal and leaving members: a key's first N members on
// it are its replicas, which answer reads and whose acks make a write's W.
// While a change is pending, Next holds the normal and joining members: the
// ring once the change commits. A key's members on Next that are not on
// Current are its pending replicas: writes go to them too, and wait for one
// more ack per pending replica (Cassandra's rule), so that whatever the
// change's outcome, W of the key's replicas hold every acknowledged write.
type Placement struct {
	// Epoch is the topology epoch the placement belongs to.
	Epoch uint64
	// N is the replication factor.
	N int
	// Current is the ring of normal and leaving members.
	Current *ring.Ring
	// Next is the ring of normal and joining members while a change is
	// pending, nil otherwise.
	Next *ring.Ring
	// Change is the pending change, nil when none is.
	Change *Change
}

// Placement builds the rings of t.
func (t *Topology) Placement() (*Placement, error) {
	cfg := t.RingConfig()
	cur, err := ring.New(t.IDs(Normal, Leaving), cfg)
	if err != nil {
		return nil, fmt.Errorf("topology: ring: %w", err)
	}
	p := &Placement{Epoch: t.Epoch, N: t.N, Current: cur}
	if t.Change != nil {
		c := t.Change.clone()
		p.Change = &c
		if p.Next, err = ring.New(t.IDs(Normal, Joining), cfg); err != nil {
			return nil, fmt.Errorf("topology: ring: %w", err)
		}
	}
	return p, nil
}

func (c *Change) clone() Change {
	d := *c
	d.Gainers = slices.Clone(c.Gainers)
	d.Streamed = slices.Clone(c.Streamed)
	return d
}

// Replicas appends to dst the replicas of the key whose hash is h: its
// first N members on Current.
func (p *Placement) Replicas(dst []string, h uint64) []string {
	return p.Current.AppendPreferenceListAt(dst, h, p.N)
}

// Pending appends to dst the key's pending replicas: its members on Next
// that are not among replicas (its members on Current). None when no change
// is pending.
func (p *Placement) Pending(dst []string, h uint64, replicas []string) []string {
	if p.Next == nil {
		return dst
	}
	start := len(dst)
	dst = p.Next.AppendPreferenceListAt(dst, h, p.N)
	out := dst[:start]
	for _, id := range dst[start:] {
		if !slices.Contains(replicas, id) {
			out = append(out, id)
		}
	}
	return out
}

// NextReplicas appends to dst the key's replicas once the pending change
// commits (its Current replicas when none is pending).
func (p *Placement) NextReplicas(dst []string, h uint64) []string {
	if p.Next == nil {
		return p.Replicas(dst, h)
	}
	return p.Next.AppendPreferenceListAt(dst, h, p.N)
}

// Holds reports whether id replicates the key whose hash is h now or will
// once the pending change commits: whether it should keep the key's data.
func (p *Placement) Holds(id string, h uint64) bool {
	var buf [16]string
	if slices.Contains(p.Replicas(buf[:0], h), id) {
		return true
	}
	return p.Next != nil && slices.Contains(p.Next.AppendPreferenceListAt(buf[:0], h, p.N), id)
}

// Streams reports whether, in the pending change, gainer receives the key
// whose hash is h in place of loser, and source holds it: gainer is one of
// the key's next replicas and not a current one, loser is a current replica
// and not a next one, and source is a current replica. A gainer streams
// such keys from source = loser, or, when loser is dead, from every other
// current replica.
//
// loser == gainer stands for the keys gainer receives that no member gives
// up: a ring of fewer than N members that grows keeps every replica and
// adds one. Those come from every current replica.
func (p *Placement) Streams(h uint64, gainer, loser, source string) bool {
	if p.Next == nil {
		return false
	}
	var cb, nb [16]string
	cur := p.Replicas(cb[:0], h)
	next := p.Next.AppendPreferenceListAt(nb[:0], h, p.N)
	if !slices.Contains(next, gainer) || slices.Contains(cur, gainer) || !slices.Contains(cur, source) {
		return false
	}
	if loser == gainer {
		return len(leaving(cur, next)) == 0
	}
	return slices.Contains(cur, loser) && !slices.Contains(next, loser)
}

// leaving returns the members of cur not in next.
func leaving(cur, next []string) []string {
	var out []string
	for _, id := range cur {
		if !slices.Contains(next, id) {
			out = append(out, id)
		}
	}
	return out
}

// Transfer is one stream of a pending change: the ranges Gainer receives in
// place of Loser. Loser == Gainer stands for the ranges Gainer receives
// that no member gives up (see Streams).
type Transfer struct {
	// Gainer receives the ranges; Loser gives them up.
	Gainer, Loser string
	// Share is the fraction of the hash space the ranges cover.
	Share float64
}

// Transfers returns the streams of the pending change, sorted by gainer
// then loser; none when no change is pending.
func (p *Placement) Transfers() []Transfer {
	if p.Next == nil {
		return nil
	}
	share := map[[2]string]float64{}
	p.eachRange(func(lo, hi uint64, cur, next []string) {
		for _, g := range next {
			if slices.Contains(cur, g) {
				continue
			}
			losers := leaving(cur, next)
			if len(losers) == 0 {
				share[[2]string{g, g}] += arc(lo, hi)
			}
			for _, l := range losers {
				share[[2]string{g, l}] += arc(lo, hi)
			}
		}
	})
	out := make([]Transfer, 0, len(share))
	for k, s := range share {
		out = append(out, Transfer{Gainer: k[0], Loser: k[1], Share: s})
	}
	slices.SortFunc(out, func(a, b Transfer) int {
		if c := cmpString(a.Gainer, b.Gainer); c != 0 {
			return c
		}
		return cmpString(a.Loser, b.Loser)
	})
	return out
}

// gainers returns the members that receive a range in the pending change.
func (p *Placement) gainers() []string {
	var out []string
	for _, t := range p.Transfers() {
		if !slices.Contains(out, t.Gainer) {
			out = append(out, t.Gainer)
		}
	}
	slices.Sort(out)
	return out
}

// eachRange calls fn for every arc (lo, hi] of the union of Current's and
// Next's tokens, with the arc's replicas on each. Within such an arc both
// preference lists are constant.
func (p *Placement) eachRange(fn func(lo, hi uint64, cur, next []string)) {
	tokens := append(p.Current.Tokens(), p.Next.Tokens()...)
	slices.Sort(tokens)
	tokens = slices.Compact(tokens)
	if len(tokens) == 0 {
		return
	}
	var cb, nb []string
	for i, hi := range tokens {
		lo := tokens[(i+len(tokens)-1)%len(tokens)]
		cb = p.Current.AppendPreferenceListAt(cb[:0], hi, p.N)
		nb = p.Next.AppendPreferenceListAt(nb[:0], hi, p.N)
		fn(lo, hi, cb, nb)
	}
}

// arc returns the fraction of the hash space in (lo, hi], wrapping; a ring
// with a single token (lo == hi) covers all of it.
func arc(lo, hi uint64) float64 {
	if lo == hi {
		return 1
	}
	return float64(hi-lo) / (float64(1<<63) * 2)
}
