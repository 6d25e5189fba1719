package node

import (
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Clock is the source of wall-clock time. Tests inject a manual clock so that
// versions and liveness are deterministic.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// hlc is a hybrid logical clock. A reading is
//
//	max(wall-clock ms << 16, last + 1)
//
// and every version the node sees (a write it receives, a reply it reads)
// advances last with observe. Readings are strictly increasing, so a node
// never issues the same counter twice; and a write coordinated after a node
// has seen version v gets a counter above v's, whatever the wall clocks say.
// The low 16 bits leave room for 65536 readings per millisecond before the
// counter runs ahead of the wall clock (it then simply counts on).
type hlc struct {
	clock Clock
	last  atomic.Uint64
}

func newHLC(c Clock) *hlc { return &hlc{clock: c} }

// now returns a new, strictly increasing reading.
func (h *hlc) now() uint64 {
	wall := uint64(max(h.clock.Now().UnixMilli(), 0)) << 16
	for {
		last := h.last.Load()
		next := max(wall, last+1)
		if h.last.CompareAndSwap(last, next) {
			return next
		}
	}
}

// observe advances the clock to at least c, so that later readings exceed it.
func (h *hlc) observe(c uint64) {
	for {
		last := h.last.Load()
		if c <= last || h.last.CompareAndSwap(last, c) {
			return
		}
	}
}

// NodeHash returns the Node field of the versions a node with this ID
// issues: the low 32 bits of xxhash64(id). Version ties between two nodes
// need equal counters and equal hashes; the membership logs a collision.
func NodeHash(id string) uint32 { return uint32(xxhash.Sum64String(id)) }
