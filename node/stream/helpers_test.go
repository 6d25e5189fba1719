package stream

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/kvs-db/kvs/lsm"
)

// memStore is a store of records in a map, with apply-if-newer and a
// Scanner in key order: the fake of both a source's and a gainer's lsm.DB.
type memStore struct {
	mu   sync.Mutex
	recs map[string]lsm.Record
}

func newMemStore(recs ...lsm.Record) *memStore {
	s := &memStore{recs: map[string]lsm.Record{}}
	_ = s.apply(recs)
	return s
}

// apply stores each record unless the store holds a newer or equal version.
func (s *memStore) apply(recs []lsm.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		if old, ok := s.recs[string(r.Key)]; ok && !old.Version.Less(r.Version) {
			continue
		}
		r.Key, r.Value = bytes.Clone(r.Key), bytes.Clone(r.Value)
		s.recs[string(r.Key)] = r
	}
	return nil
}

// sorted returns the records in key order.
func (s *memStore) sorted() []lsm.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]lsm.Record, 0, len(s.recs))
	for _, r := range s.recs {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b lsm.Record) int { return bytes.Compare(a.Key, b.Key) })
	return out
}

func (s *memStore) scan(start []byte, fn func(lsm.Record) bool) error {
	for _, r := range s.sorted() {
		if bytes.Compare(r.Key, start) >= 0 && !fn(r) {
			return nil
		}
	}
	return nil
}

// filtered returns the records whose key include reports, in key order.
func (s *memStore) filtered(include func([]byte) bool) []lsm.Record {
	var out []lsm.Record
	for _, r := range s.sorted() {
		if include(r.Key) {
			out = append(out, r)
		}
	}
	return out
}

// genRecords returns n records with keys prefix0000.., values of size
// bytes, every seventh a tombstone, every fifth with an expiry.
func genRecords(prefix string, n, size int, counter uint64) []lsm.Record {
	out := make([]lsm.Record, n)
	for i := range out {
		r := lsm.Record{Key: fmt.Appendf(nil, "%s%05d", prefix, i), Version: lsm.Version{Counter: counter, Node: 1}}
		switch {
		case i%7 == 3:
			r.Tombstone = true
		default:
			r.Value = bytes.Repeat([]byte{byte(i)}, size)
		}
		if i%5 == 1 {
			r.Expiry = int64(1e12 + i)
		}
		out[i] = r
	}
	return out
}

// merged returns the newest record of each key of the record lists, in
// key order.
func merged(lists ...[]lsm.Record) []lsm.Record {
	s := newMemStore()
	for _, l := range lists {
		_ = s.apply(l)
	}
	return s.sorted()
}

// stepClock is a clock whose every reading advances it by step.
type stepClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *stepClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

// skipClock is a Clock on which waiting takes no real time: After moves
// the clock forward by d and fires at once. Virtual time is then exactly
// the sum of the waits, so lower bounds on it are deterministic.
type skipClock struct {
	mu sync.Mutex
	t  time.Time
}

func newSkipClock() *skipClock { return &skipClock{t: time.Unix(1_000_000, 0)} }

func (c *skipClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *skipClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(max(d, 0))
	ch := make(chan time.Time, 1)
	ch <- c.t
	return ch
}
