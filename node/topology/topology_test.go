package topology

import (
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
)

func mustApply(t *testing.T, topo Topology, c Command) Topology {
	t.Helper()
	next, err := Apply(topo, c)
	if err != nil {
		t.Fatalf("Apply(%+v): %v", c, err)
	}
	return next
}

func bootstrapped(t *testing.T, ids ...string) Topology {
	c := Command{Op: OpBootstrap, ClusterID: "c1", N: 3, VNodes: 16}
	for _, id := range ids {
		c.Members = append(c.Members, Member{ID: id})
	}
	return mustApply(t, Topology{}, c)
}

// TestRandomCommands applies random command sequences and checks, after
// every step, that the topology is valid, that a refused command changed
// nothing, that the epoch moved by exactly what the command says, and the
// placement invariants that make a change safe: for every key, the pending
// replicas are exactly its next replicas missing from its current ones, and
// a key's next replicas not in its current ones are its gainers' ranges.
func TestRandomCommands(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ops := []Op{OpJoin, OpLeave, OpRemove, OpStreamed, OpAbort}
	for trial := 0; trial < 200; trial++ {
		topo := bootstrapped(t, "n0", "n1", "n2", "n3")
		for step := 0; step < 30; step++ {
			c := Command{Op: ops[rng.IntN(len(ops))], Node: "n" + strconv.Itoa(rng.IntN(8))}
			if c.Op == OpStreamed && topo.Change != nil && rng.IntN(2) == 0 {
				c.Node = topo.Change.Gainers[rng.IntN(len(topo.Change.Gainers))]
			}
			before := topo.Clone()
			next, err := Apply(topo, c)
			if err != nil {
				if !reflect.DeepEqual(topo, before) {
					t.Fatalf("refused %+v changed its input", c)
				}
				continue
			}
			if err := next.Validate(); err != nil {
				t.Fatalf("%+v gave an invalid topology: %v", c, err)
			}
			if d := next.Epoch - topo.Epoch; d > 2 {
				t.Fatalf("%+v advanced the epoch by %d", c, d)
			}
			checkPlacement(t, &next)
			topo = next
		}
	}
}

func checkPlacement(t *testing.T, topo *Topology) {
	t.Helper()
	p, err := topo.Placement()
	if err != nil {
		t.Fatal(err)
	}
	gainers := map[string]bool{}
	if topo.Change != nil {
		for _, g := range topo.Change.Gainers {
			gainers[g] = true
		}
	}
	for k := 0; k < 200; k++ {
		h := xxhash.Sum64String("key" + strconv.Itoa(k))
		cur := p.Replicas(nil, h)
		if len(cur) != min(topo.N, topo.Count(Normal, Leaving)) {
			t.Fatalf("key %d: %d replicas, want %d", k, len(cur), topo.N)
		}
		pending := p.Pending(nil, h, cur)
		for _, id := range p.NextReplicas(nil, h) {
			if slices.Contains(cur, id) == slices.Contains(pending, id) {
				t.Fatalf("key %d: %s is both or neither current and pending", k, id)
			}
			if slices.Contains(pending, id) && !gainers[id] {
				t.Fatalf("key %d: pending replica %s is not a gainer %v", k, id, topo.Change.Gainers)
			}
		}
		for _, id := range append(cur, pending...) {
			if !p.Holds(id, h) {
				t.Fatalf("key %d: Holds(%s) false for a replica", k, id)
			}
		}
	}
}

func TestStreamsMatchesTransfers(t *testing.T) {
	topo := mustApply(t, bootstrapped(t, "a", "b", "c", "d"), Command{Op: OpJoin, Node: "e"})
	p, err := topo.Placement()
	if err != nil {
		t.Fatal(err)
	}
	// Every key e gains, it gains from exactly one loser, which is also its
	// source; the counts follow the transfers' shares.
	counts := map[string]int{}
	const keys = 20000
	for k := 0; k < keys; k++ {
		h := xxhash.Sum64String("k" + strconv.Itoa(k))
		var from []string
		for _, l := range []string{"a", "b", "c", "d"} {
			if p.Streams(h, "e", l, l) {
				from = append(from, l)
			}
		}
		if len(from) > 1 {
			t.Fatalf("key %d streams to e from %v", k, from)
		}
		gains := !slices.Contains(p.Replicas(nil, h), "e") && slices.Contains(p.NextReplicas(nil, h), "e")
		if gains != (len(from) == 1) {
			t.Fatalf("key %d: gains=%v but streams from %v", k, gains, from)
		}
		if len(from) == 1 {
			counts[from[0]]++
		}
	}
	for _, tr := range p.Transfers() {
		got := float64(counts[tr.Loser]) / keys
		if d := got - tr.Share; d > 0.02 || d < -0.02 {
			t.Errorf("e <- %s: %.3f of keys, share %.3f", tr.Loser, got, tr.Share)
		}
	}
}

func TestProposeSerializesConcurrentChanges(t *testing.T) {
	ctx := context.Background()
	s := NewMemStore()
	if _, _, err := Propose(ctx, s, Command{Op: OpBootstrap, ClusterID: "c", N: 3, VNodes: 8,
		Members: []Member{{ID: "a"}, {ID: "b"}, {ID: "c"}}}); err != nil {
		t.Fatal(err)
	}
	var seen []uint64
	var mu sync.Mutex
	wctx, stop := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		_ = s.Watch(wctx, func(t Topology, rev uint64) {
			mu.Lock()
			seen = append(seen, rev)
			mu.Unlock()
		})
	}()
	// Eight nodes ask to join at once: exactly one join begins, the others
	// are refused as busy, and nothing is half applied.
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = Propose(ctx, s, Command{Op: OpJoin, Node: "j" + strconv.Itoa(i)})
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrBusy):
			t.Errorf("concurrent join: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d joins began, want 1", ok)
	}
	topo, rev, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if topo.Epoch != 2 || topo.Count(Joining) != 1 || rev != 2 {
		t.Fatalf("after the race: epoch %d, %d joining, rev %d", topo.Epoch, topo.Count(Joining), rev)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		done := len(seen) > 0 && seen[len(seen)-1] == rev
		mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	stop()
	<-watched
	if !slices.IsSorted(seen) || len(seen) == 0 || seen[len(seen)-1] != rev {
		t.Fatalf("watch saw revisions %v, want increasing up to %d", seen, rev)
	}
}

func TestMemStoreUnavailable(t *testing.T) {
	ctx := context.Background()
	s := NewMemStore()
	s.SetUnavailable(true)
	if _, _, err := s.Load(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Load: %v, want ErrUnavailable", err)
	}
	if _, _, err := Propose(ctx, s, Command{Op: OpBootstrap, ClusterID: "c", N: 1, VNodes: 1, Members: []Member{{ID: "a"}}}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Propose: %v, want ErrUnavailable", err)
	}
	s.SetUnavailable(false)
	if _, _, err := s.Load(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load: %v, want ErrNotFound", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	good := mustApply(t, bootstrapped(t, "a", "b", "c", "d"), Command{Op: OpLeave, Node: "a"})
	b, err := good.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(b); err != nil {
		t.Fatalf("Decode of a valid document: %v", err)
	}
	for name, mutate := range map[string]func(*Topology){
		"epoch 0":           func(t *Topology) { t.Epoch = 0 },
		"unsorted members":  func(t *Topology) { t.Members[0], t.Members[1] = t.Members[1], t.Members[0] },
		"bad id":            func(t *Topology) { t.Members[1].ID = "b.x" },
		"bad state":         func(t *Topology) { t.Members[1].State = "gone" },
		"change epoch":      func(t *Topology) { t.Change.Epoch-- },
		"no change":         func(t *Topology) { t.Change = nil },
		"gainer not member": func(t *Topology) { t.Change.Gainers = []string{"zz"} },
		"n 0":               func(t *Topology) { t.N = 0 },
	} {
		bad := good.Clone()
		mutate(&bad)
		b, err := bad.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Decode = %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	topo := bootstrapped(&testing.T{}, "a", "b", "c")
	b, _ := topo.Encode()
	f.Add(b)
	f.Add([]byte(`{"epoch":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		topo, err := Decode(b)
		if err != nil {
			return
		}
		if _, err := topo.Placement(); err != nil {
			t.Fatalf("a decoded topology has no placement: %v", err)
		}
	})
}
