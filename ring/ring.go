// Package ring owns consistent hashing: it places members on a hash ring with
// a number of virtual nodes each and answers which members hold a key.
//
// A Ring is immutable. A membership change builds a new Ring (With, Without)
// that the caller swaps in whole, so readers never see a half-built ring and
// need no lock.
//
// Placement: member m owns the points Hash(m + "#" + i) for i in
// [0, VNodes). A key hashes to Hash(key); its preference list is the first n
// distinct members met walking clockwise (ascending hash, wrapping) from the
// first point at or after the key's hash.
package ring

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// DefaultVNodes is the number of virtual nodes per member when Config.VNodes
// is zero. 100 keeps each of three members within a few percent of a third
// of the keys while a ring build stays well under a millisecond.
const DefaultVNodes = 100

// ErrInvalidConfig is wrapped by Config.Validate errors.
var ErrInvalidConfig = errors.New("ring: invalid config")

// HashFunc maps bytes to a point on the ring.
type HashFunc func([]byte) uint64

// Config holds the ring's parameters.
type Config struct {
	// VNodes is the number of points each member owns on the ring.
	// Default DefaultVNodes (100).
	VNodes int
	// Hash places keys and virtual nodes. Default xxhash64 (xxhash.Sum64).
	// Tests inject a hand-computable hash.
	Hash HashFunc
}

// Validate fills defaults and reports invalid values.
func (c *Config) Validate() error {
	if c.VNodes == 0 {
		c.VNodes = DefaultVNodes
	}
	if c.VNodes < 0 || c.VNodes > 1<<16 {
		return fmt.Errorf("%w: VNodes %d out of range [1, 65536]", ErrInvalidConfig, c.VNodes)
	}
	if c.Hash == nil {
		c.Hash = xxhash.Sum64
	}
	return nil
}

type point struct {
	hash   uint64
	member int32 // index into Ring.members
}

// Ring is an immutable consistent hash ring. The zero value and a nil *Ring
// are empty rings.
type Ring struct {
	cfg     Config
	members []string // sorted, distinct
	points  []point  // sorted by hash, then member
}

// New builds a ring of the given members (duplicates and empty names are
// ignored) with cfg, whose defaults are filled in.
func New(members []string, cfg Config) (*Ring, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ms := make([]string, 0, len(members))
	for _, m := range members {
		if m != "" {
			ms = append(ms, m)
		}
	}
	slices.Sort(ms)
	ms = slices.Compact(ms)
	r := &Ring{cfg: cfg, members: ms, points: make([]point, 0, len(ms)*cfg.VNodes)}
	buf := make([]byte, 0, 64)
	for i, m := range ms {
		for v := 0; v < cfg.VNodes; v++ {
			buf = append(buf[:0], m...)
			buf = append(buf, '#')
			buf = strconv.AppendInt(buf, int64(v), 10)
			r.points = append(r.points, point{hash: cfg.Hash(buf), member: int32(i)})
		}
	}
	sort.Slice(r.points, func(a, b int) bool {
		pa, pb := r.points[a], r.points[b]
		if pa.hash != pb.hash {
			return pa.hash < pb.hash
		}
		return pa.member < pb.member
	})
	return r, nil
}

// Members returns the ring's members in ascending order. The caller owns the
// returned slice.
func (r *Ring) Members() []string {
	if r == nil {
		return nil
	}
	return slices.Clone(r.members)
}

// Len returns the number of members.
func (r *Ring) Len() int {
	if r == nil {
		return 0
	}
	return len(r.members)
}

// Has reports whether m is a member.
func (r *Ring) Has(m string) bool {
	if r == nil {
		return false
	}
	_, ok := slices.BinarySearch(r.members, m)
	return ok
}

// With returns a ring that also holds members ms, with the same Config. It
// returns r itself when every one is already a member.
func (r *Ring) With(ms ...string) *Ring {
	all := r.Members()
	for _, m := range ms {
		if m != "" && !r.Has(m) {
			all = append(all, m)
		}
	}
	if len(all) == r.Len() {
		return r
	}
	nr, _ := New(all, r.config()) // config already validated
	return nr
}

// Without returns a ring without member m, with the same Config.
func (r *Ring) Without(m string) *Ring {
	if !r.Has(m) {
		return r
	}
	all := slices.DeleteFunc(r.Members(), func(x string) bool { return x == m })
	nr, _ := New(all, r.config())
	return nr
}

func (r *Ring) config() Config {
	if r == nil {
		return Config{}
	}
	return r.cfg
}

// hash is the configured hash, xxhash64 for a zero Config.
func (c Config) hash() HashFunc {
	if c.Hash == nil {
		return xxhash.Sum64
	}
	return c.Hash
}

// PreferenceList returns the first n distinct members clockwise from key's
// hash: the key's replicas, in order of preference. It returns fewer than n
// when the ring has fewer members. The caller owns the returned slice.
func (r *Ring) PreferenceList(key []byte, n int) []string {
	return r.AppendPreferenceList(nil, key, n)
}

// AppendPreferenceList is PreferenceList appending to dst, so that a hot path
// can reuse a buffer.
func (r *Ring) AppendPreferenceList(dst []string, key []byte, n int) []string {
	if r == nil || len(r.points) == 0 || n <= 0 {
		return dst
	}
	return r.AppendPreferenceListAt(dst, r.cfg.Hash(key), n)
}

// Hash returns key's point on the ring: the configured hash of key.
func (r *Ring) Hash(key []byte) uint64 {
	return r.config().hash()(key)
}

// AppendPreferenceListAt is AppendPreferenceList for a key whose hash is h.
func (r *Ring) AppendPreferenceListAt(dst []string, h uint64, n int) []string {
	if r == nil || len(r.points) == 0 || n <= 0 {
		return dst
	}
	n = min(n, len(r.members))
	start := len(dst)
	i := r.search(h)
	for k := 0; k < len(r.points) && len(dst)-start < n; k++ {
		m := r.members[r.points[(i+k)%len(r.points)].member]
		if !slices.Contains(dst[start:], m) {
			dst = append(dst, m)
		}
	}
	return dst
}

// search returns the index of the first point at or after h, wrapping to 0.
func (r *Ring) search(h uint64) int {
	i := sort.Search(len(r.points), func(i int) bool { return r.points[i].hash >= h })
	if i == len(r.points) {
		return 0
	}
	return i
}

// Token returns the range a key hashing to h falls in, named by its token:
// the first point at or after h, wrapping past the top of the hash space.
// A range is the arc (previous token, token]; every key in it has the same
// preference list. An empty ring has the single token 0.
func (r *Ring) Token(h uint64) uint64 {
	if r == nil || len(r.points) == 0 {
		return 0
	}
	return r.points[r.search(h)].hash
}

// Tokens returns the ring's distinct tokens in ascending order: the ends of
// its ranges. The caller owns the returned slice.
func (r *Ring) Tokens() []uint64 {
	if r == nil {
		return nil
	}
	out := make([]uint64, 0, len(r.points))
	for _, p := range r.points {
		if len(out) == 0 || out[len(out)-1] != p.hash {
			out = append(out, p.hash)
		}
	}
	return out
}

// Ownership returns, for each member, the fraction of the hash space for
// which it is the first replica. The fractions add up to 1.
func (r *Ring) Ownership() map[string]float64 {
	own := make(map[string]float64, r.Len())
	if r == nil || len(r.points) == 0 {
		return own
	}
	const space = float64(1<<63) * 2
	for i, p := range r.points {
		prev := r.points[(i+len(r.points)-1)%len(r.points)].hash
		// A point owns the arc (prev, p.hash]; uint64 subtraction wraps.
		arc := p.hash - prev
		if len(r.points) == 1 {
			own[r.members[p.member]] = 1
			return own
		}
		own[r.members[p.member]] += float64(arc) / space
	}
	return own
}
