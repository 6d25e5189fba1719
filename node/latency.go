package node

import (
	"sync"
	"time"
)

// Bounds of the wait before a read asks one more replica (speculateAfter).
const (
	// speculateFirst is the wait for a peer with no latency history yet.
	speculateFirst = 50 * time.Millisecond
	// speculateMin is the shortest wait: below it a replica that is not
	// slow at all, only descheduled for a moment, would cost an extra read.
	speculateMin = time.Millisecond
)

// latencies tracks the latency of each peer's read replies as TCP tracks a
// round trip (RFC 6298): a smoothed mean and a smoothed mean deviation,
// from which a read decides how long a replica may take before it is
// "slower than usual" and another is asked. Latency is measured on the
// machine's monotonic clock, not Config.Clock: it is a duration on this
// machine, not a version.
type latencies struct {
	mu    sync.Mutex
	peers map[string]*rtt
}

type rtt struct {
	srtt, rttvar time.Duration
	seen         bool
}

// observe records one reply of peer that took d.
func (l *latencies) observe(peer string, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.peers == nil {
		l.peers = map[string]*rtt{}
	}
	r := l.peers[peer]
	if r == nil {
		r = &rtt{}
		l.peers[peer] = r
	}
	if !r.seen {
		r.srtt, r.rttvar, r.seen = d, d/2, true
		return
	}
	dev := r.srtt - d
	if dev < 0 {
		dev = -dev
	}
	r.rttvar += (dev - r.rttvar) / 4
	r.srtt += (d - r.srtt) / 8
}

// speculateAfter is how long a read waits for peer's reply before it asks
// another replica: its smoothed latency plus four deviations, at least
// speculateMin and at most limit (speculateFirst, or limit if lower,
// without history).
func (l *latencies) speculateAfter(peer string, limit time.Duration) time.Duration {
	l.mu.Lock()
	r := l.peers[peer]
	var d time.Duration
	if r == nil || !r.seen {
		d = speculateFirst
	} else {
		d = r.srtt + 4*r.rttvar
	}
	l.mu.Unlock()
	return min(max(d, speculateMin), limit)
}
