package ring

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
)

// goldenHash maps the virtual node names of members a, b, c to fixed points
// and decimal keys to their own value, so the expected walk can be worked out
// by hand (see testdata/walk.txt).
func goldenHash(b []byte) uint64 {
	points := map[string]uint64{
		"a#0": 10, "b#0": 20, "c#0": 30,
		"a#1": 60, "b#1": 70, "c#1": 80,
	}
	if p, ok := points[string(b)]; ok {
		return p
	}
	n, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		panic(fmt.Sprintf("goldenHash: unexpected input %q", b))
	}
	return n
}

func TestPreferenceListGolden(t *testing.T) {
	r, err := New([]string{"c", "a", "b", "a"}, Config{VNodes: 2, Hash: goldenHash})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("testdata/walk.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	cases := 0
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		in, want, ok := strings.Cut(text, "->")
		if !ok {
			t.Fatalf("walk.txt:%d: no '->'", line)
		}
		fields := strings.Fields(in)
		n, err := strconv.Atoi(fields[1])
		if err != nil {
			t.Fatalf("walk.txt:%d: %v", line, err)
		}
		got := strings.Join(r.PreferenceList([]byte(fields[0]), n), " ")
		if got != strings.TrimSpace(want) {
			t.Errorf("walk.txt:%d: PreferenceList(%s, %d) = %q, want %q", line, fields[0], n, got, strings.TrimSpace(want))
		}
		cases++
	}
	if cases < 10 {
		t.Fatalf("only %d golden cases read", cases)
	}
}

func TestOwnershipBalancedOverKeys(t *testing.T) {
	r, err := New([]string{"node1", "node2", "node3"}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	const keys = 100_000
	counts := map[string]int{}
	for i := 0; i < keys; i++ {
		counts[r.PreferenceList([]byte("key-"+strconv.Itoa(i)), 1)[0]]++
	}
	for _, m := range r.Members() {
		share := float64(counts[m]) / keys
		if math.Abs(share-1.0/3) > 0.05 {
			t.Errorf("%s owns %.3f of keys, want 0.333 ± 0.05", m, share)
		}
	}
	total := 0.0
	for m, f := range r.Ownership() {
		total += f
		if math.Abs(f-float64(counts[m])/keys) > 0.02 {
			t.Errorf("Ownership()[%s] = %.3f, measured %.3f", m, f, float64(counts[m])/keys)
		}
	}
	if math.Abs(total-1) > 1e-9 {
		t.Errorf("ownership adds up to %v, want 1", total)
	}
}

func TestAddingMemberMovesFewKeys(t *testing.T) {
	r3, err := New([]string{"node1", "node2", "node3"}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	r4 := r3.With("node4")
	if r4.Len() != 4 || r3.Len() != 3 {
		t.Fatalf("With changed the original or failed: %d, %d", r3.Len(), r4.Len())
	}
	const keys = 100_000
	moved := 0
	for i := 0; i < keys; i++ {
		k := []byte("key-" + strconv.Itoa(i))
		before, after := r3.PreferenceList(k, 1)[0], r4.PreferenceList(k, 1)[0]
		if before != after {
			if after != "node4" {
				t.Fatalf("key %s moved from %s to %s, not to the new member", k, before, after)
			}
			moved++
		}
	}
	if frac := float64(moved) / keys; frac > 0.30 {
		t.Errorf("adding a 4th member moved %.3f of keys, want <= 0.30", frac)
	}
}

func TestPreferenceListDistinctAndBounded(t *testing.T) {
	r, err := New([]string{"a", "b", "c", "d", "e"}, Config{VNodes: 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		for n := 0; n <= 7; n++ {
			pl := r.PreferenceList([]byte(strconv.Itoa(i)), n)
			if want := min(n, 5); len(pl) != want {
				t.Fatalf("len(PreferenceList(%d, %d)) = %d, want %d", i, n, len(pl), want)
			}
			seen := map[string]bool{}
			for _, m := range pl {
				if seen[m] {
					t.Fatalf("PreferenceList(%d, %d) = %v repeats %s", i, n, pl, m)
				}
				seen[m] = true
			}
		}
	}
}

func TestEmptyAndRemoval(t *testing.T) {
	var nilRing *Ring
	if got := nilRing.PreferenceList([]byte("k"), 3); len(got) != 0 {
		t.Fatalf("nil ring gave %v", got)
	}
	r, err := New(nil, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.PreferenceList([]byte("k"), 3); len(got) != 0 {
		t.Fatalf("empty ring gave %v", got)
	}
	r = r.With("a", "b")
	if r.Without("a").Members()[0] != "b" || r.Without("zz") != r {
		t.Fatal("Without misbehaves")
	}
	if r.With("a") != r {
		t.Fatal("With of an existing member built a new ring")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, v := range []int{-1, 1<<16 + 1} {
		c := Config{VNodes: v}
		if err := c.Validate(); err == nil {
			t.Errorf("VNodes %d accepted", v)
		}
	}
	c := Config{}
	if err := c.Validate(); err != nil || c.VNodes != DefaultVNodes || c.Hash == nil {
		t.Fatalf("defaults not filled: %+v, %v", c, err)
	}
}

func BenchmarkPreferenceList(b *testing.B) {
	r, _ := New([]string{"node1", "node2", "node3"}, Config{})
	key := []byte("some-key-of-typical-length")
	buf := make([]string, 0, 3)
	b.ReportAllocs()
	for b.Loop() {
		buf = r.AppendPreferenceList(buf[:0], key, 3)
	}
}

func TestTokens(t *testing.T) {
	r, err := New([]string{"a", "b", "c"}, Config{VNodes: 2, Hash: goldenHash})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(r.Tokens()), "[10 20 30 60 70 80]"; got != want {
		t.Fatalf("Tokens() = %s, want %s", got, want)
	}
	// A key belongs to the range ending at the first token at or after its
	// hash, wrapping past the top; every key of a range has the same list.
	for _, c := range []struct{ h, token uint64 }{{0, 10}, {10, 10}, {11, 20}, {59, 60}, {80, 80}, {81, 10}, {math.MaxUint64, 10}} {
		if got := r.Token(c.h); got != c.token {
			t.Errorf("Token(%d) = %d, want %d", c.h, got, c.token)
		}
		want := fmt.Sprint(r.PreferenceList([]byte(strconv.FormatUint(c.h, 10)), 3))
		if got := fmt.Sprint(r.AppendPreferenceListAt(nil, c.token, 3)); got != want {
			t.Errorf("list at token %d = %s, want the list of hash %d, %s", c.token, got, c.h, want)
		}
	}
	var empty *Ring
	if empty.Token(5) != 0 || empty.Tokens() != nil {
		t.Error("a nil ring has token 0 and no tokens")
	}
}
