package node

import (
	"math"
	"sync"
	"time"
)

// Bounds of the wait before a read asks one more replica (speculateAfter).
const (
	// speculateFirst is the wait for a peer with too little latency
	// history (fewer than latencyMinSamples replies).
	speculateFirst = 50 * time.Millisecond
	// speculateMin is the shortest wait: below it a replica that is not
	// slow at all, only descheduled for a moment, would cost an extra read.
	speculateMin = time.Millisecond
	// speculateQuantile is the share of a peer's replies that come before
	// a read asks one more replica: as Cassandra's default "99p"
	// speculative retry, about one read in a hundred asks a third replica
	// when nothing is wrong.
	speculateQuantile = 0.99
)

// Latency histogram of one peer: bucket i counts replies that took less
// than latencyBase * 2^(i/2) (the last bucket counts the rest), halved every
// latencyDecay replies so that the quantile follows the peer's recent
// behaviour.
const (
	latencyBuckets    = 40
	latencyBase       = 50 * time.Microsecond
	latencyDecay      = 4096
	latencyMinSamples = 64
)

// latencyBound is the upper bound of histogram bucket i.
func latencyBound(i int) time.Duration {
	return time.Duration(float64(latencyBase) * math.Pow(2, float64(i)/2))
}

// latencyBucket is the bucket of a reply that took d.
func latencyBucket(d time.Duration) int {
	if d <= latencyBase {
		return 0
	}
	i := int(math.Ceil(2 * math.Log2(float64(d)/float64(latencyBase))))
	return min(i, latencyBuckets-1)
}

// latencies tracks the latency of each peer's read replies (and of this
// node's own local reads, under its ID), from which a
// read decides how long a replica may take before it is "slower than
// usual" and another is asked: the speculateQuantile of its recent
// replies. Latency is measured on the machine's monotonic clock, not
// Config.Clock: it is a duration on this machine, not a version.
type latencies struct {
	mu    sync.Mutex
	peers map[string]*latencyHist
}

type latencyHist struct {
	counts [latencyBuckets]uint32
	total  uint32
	seen   uint32 // replies since the last decay
}

// observe records one reply of peer that took d.
func (l *latencies) observe(peer string, d time.Duration) {
	b := latencyBucket(d)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.peers == nil {
		l.peers = map[string]*latencyHist{}
	}
	h := l.peers[peer]
	if h == nil {
		h = &latencyHist{}
		l.peers[peer] = h
	}
	h.counts[b]++
	h.total++
	if h.seen++; h.seen == latencyDecay {
		h.seen, h.total = 0, 0
		for i := range h.counts {
			h.counts[i] /= 2
			h.total += h.counts[i]
		}
	}
}

// speculateAfter is how long a read waits for peer's reply before it asks
// another replica: the speculateQuantile of its recent replies (the upper
// bound of that bucket), at least speculateMin and at most limit
// (speculateFirst, or limit if lower, with too little history).
func (l *latencies) speculateAfter(peer string, limit time.Duration) time.Duration {
	d := speculateFirst
	l.mu.Lock()
	if h := l.peers[peer]; h != nil && h.total >= latencyMinSamples {
		want := uint32(math.Ceil(speculateQuantile * float64(h.total)))
		var sum uint32
		for i, c := range h.counts {
			if sum += c; sum >= want {
				d = latencyBound(i)
				break
			}
		}
	}
	l.mu.Unlock()
	return min(max(d, speculateMin), limit)
}
