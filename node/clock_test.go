package node

import (
	"sync"
	"testing"
	"time"
)

func TestHLC(t *testing.T) {
	c := newManualClock()
	h := newHLC(c)
	wall := uint64(c.Now().UnixMilli()) << 16

	if got := h.now(); got != wall {
		t.Fatalf("first reading = %d, want wall<<16 = %d", got, wall)
	}
	// Same millisecond: the counter counts on.
	if got := h.now(); got != wall+1 {
		t.Errorf("second reading = %d, want %d", got, wall+1)
	}
	// The wall clock moves on: it wins.
	c.Advance(5 * time.Millisecond)
	wall5 := wall + 5<<16
	if got := h.now(); got != wall5 {
		t.Errorf("after 5ms = %d, want %d", got, wall5)
	}
	// The wall clock goes back: readings still increase.
	c.Advance(-time.Hour)
	if got := h.now(); got != wall5+1 {
		t.Errorf("after a backwards step = %d, want %d", got, wall5+1)
	}
	// Observing a version from the future moves the clock past it.
	future := wall5 + 1000<<16
	h.observe(future)
	if got := h.now(); got != future+1 {
		t.Errorf("after observe = %d, want %d", got, future+1)
	}
	// Observing the past changes nothing.
	h.observe(1)
	if got := h.now(); got != future+2 {
		t.Errorf("after observing the past = %d, want %d", got, future+2)
	}
}

func TestHLCConcurrentReadingsAreUnique(t *testing.T) {
	h := newHLC(newManualClock())
	const workers, each = 8, 1000
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]uint64, 0, each)
			for i := range each {
				if i%10 == 0 {
					h.observe(uint64(w * i))
				}
				local = append(local, h.now())
			}
			for i := 1; i < len(local); i++ {
				if local[i] <= local[i-1] {
					t.Errorf("readings not increasing: %d then %d", local[i-1], local[i])
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for _, v := range local {
				if seen[v] {
					t.Errorf("reading %d issued twice", v)
				}
				seen[v] = true
			}
		}()
	}
	wg.Wait()
}

func TestNodeHash(t *testing.T) {
	// Stable across releases: versions are stored.
	if NodeHash("n1") == NodeHash("n2") {
		t.Error("n1 and n2 hash alike")
	}
	if got, want := NodeHash(""), uint32(0xef46db3751d8e999&0xffffffff); got != want {
		t.Errorf("NodeHash(\"\") = %#x, want low 32 bits of xxhash64(\"\") %#x", got, want)
	}
}
