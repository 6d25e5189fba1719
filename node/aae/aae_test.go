package aae

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/kvs-db/kvs/lsm"
)

// A tree kept up to date write by write equals one rebuilt from the final
// state, whatever the order of the writes; and two trees differ exactly in
// the segments of the keys whose versions differ.
func TestTreesTrackWrites(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	tokens := []uint64{100, 200}
	token := func(h uint64) uint64 { return tokens[h%2] }
	live := New(tokens)
	state := map[string]lsm.Version{}
	for i := 0; i < 5000; i++ {
		key := []byte(fmt.Sprintf("k%03d", rng.IntN(300)))
		prev := state[string(key)]
		cur := lsm.Version{Counter: uint64(i + 1), Node: 1}
		if rng.IntN(10) == 0 {
			cur = lsm.Version{} // a purge
		}
		h := xxhash.Sum64(key)
		live.Update(token(h), Segment(h), Delta(key, prev, cur))
		state[string(key)] = cur
	}
	rebuilt := New(tokens)
	keys := make([]string, 0, len(state))
	for k := range state {
		keys = append(keys, k)
	}
	rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	for _, k := range keys {
		h := xxhash.Sum64String(k)
		rebuilt.Update(token(h), Segment(h), EntryHash([]byte(k), state[k]))
	}
	if !slices.Equal(live.Roots(tokens), rebuilt.Roots(tokens)) {
		t.Fatalf("roots differ: %v vs %v", live.Roots(tokens), rebuilt.Roots(tokens))
	}
	for _, tok := range tokens {
		if d := DiffLeaves(live.Leaves(nil, tok), rebuilt.Leaves(nil, tok)); len(d) != 0 {
			t.Fatalf("range %d: leaves differ at %v", tok, d)
		}
	}
	// One key changes on one side: exactly its range's root and its
	// segment differ.
	key := []byte("k007")
	h := xxhash.Sum64(key)
	rebuilt.Update(token(h), Segment(h), Delta(key, state["k007"], lsm.Version{Counter: 99999, Node: 2}))
	roots, other := live.Roots(tokens), rebuilt.Roots(tokens)
	for i, tok := range tokens {
		if (roots[i] != other[i]) != (tok == token(h)) {
			t.Errorf("range %d: roots %x and %x", tok, roots[i], other[i])
		}
	}
	if d := DiffLeaves(live.Leaves(nil, token(h)), rebuilt.Leaves(nil, token(h))); !slices.Equal(d, []int{Segment(h)}) {
		t.Errorf("differing segments %v, want [%d]", d, Segment(h))
	}
	if live.Update(999, 0, 1) {
		t.Error("an update to a range not in the set reported true")
	}
	if r := live.Roots([]uint64{999}); r[0] != 0 {
		t.Error("a range not in the set has a root")
	}
}

func BenchmarkUpdate(b *testing.B) {
	tr := New([]uint64{1})
	key := []byte("user:12345678")
	for i := 0; b.Loop(); i++ {
		h := xxhash.Sum64(key)
		tr.Update(1, Segment(h), Delta(key, lsm.Version{Counter: uint64(i)}, lsm.Version{Counter: uint64(i + 1)}))
	}
}
