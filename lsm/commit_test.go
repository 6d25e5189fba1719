package lsm

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// stripeKeys returns n keys on distinct lock stripes, so that concurrent
// Applies of them never wait for each other's key lock.
func stripeKeys(prefix string, n int) []string {
	var keys []string
	used := map[uint64]bool{}
	for i := 0; len(keys) < n; i++ {
		k := fmt.Sprintf("%s-%04d", prefix, i)
		if s := bloomHash([]byte(k)) % stripes; !used[s] {
			used[s] = true
			keys = append(keys, k)
		}
	}
	return keys
}

// queuedKeys returns the keys of the requests waiting in the commit queue,
// in queue order.
func queuedKeys(db *DB) []string {
	db.cq.mu.Lock()
	defer db.cq.mu.Unlock()
	var keys []string
	for _, r := range db.cq.waiting {
		for _, rec := range r.recs {
			keys = append(keys, string(rec.Key))
		}
	}
	return keys
}

// waitQueued spins until n requests wait in the commit queue.
func waitQueued(t *testing.T, db *DB, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d queued commits", n), func() bool { return db.cq.queued() == n })
}

// TestCommitHandsTheLeadOn: while the first writer leads (blocked in its
// fsync), the others queue; when it is done, the first of them takes the
// lead and commits every one queued as a second group: two fsyncs in all,
// and the records reach the memtable (OnApply) in queue order.
func TestCommitHandsTheLeadOn(t *testing.T) {
	g := &syncGate{FS: NewMemFS(), open: make(chan struct{}), blocked: make(chan struct{})}
	var mu sync.Mutex
	var order []string
	db := openMem(t, g, func(o *Options) {
		o.OnApply = func(key []byte, _, _ Version) { mu.Lock(); order = append(order, string(key)); mu.Unlock() }
	})
	defer db.Close()
	keys := stripeKeys("lead", 20)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); mustApply(t, db, put(keys[0], "v", v(1))) }()
	<-g.blocked
	for _, k := range keys[1:] {
		wg.Add(1)
		go func() { defer wg.Done(); mustApply(t, db, put(k, "v", v(1))) }()
	}
	waitQueued(t, db, len(keys)-1)
	queued := queuedKeys(db)
	close(g.open)
	wg.Wait()
	g.mu.Lock()
	syncs := g.syncs
	g.mu.Unlock()
	if syncs != 2 {
		t.Fatalf("%d WAL syncs for a leader and one group of followers, want 2", syncs)
	}
	if st := db.Stats(); st.CommitGroups != 2 || st.Applies != uint64(len(keys)) {
		t.Fatalf("%d commit groups, %d applies; want 2, %d", st.CommitGroups, st.Applies, len(keys))
	}
	want := append([]string{keys[0]}, queued...)
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("OnApply order %v, want the leader's record then queue order %v", order, want)
	}
	if db.cq.leading || db.cq.queued() != 0 {
		t.Fatalf("after the last commit: leading %v, %d queued", db.cq.leading, db.cq.queued())
	}
}

// gatedErrorFS returns an ErrorFS over mem whose first WAL operation op
// after arm blocks until open is closed and then fails with cause
// (blocked is closed when it starts to wait). Later ones fail with cause
// while armed, without blocking.
func gatedErrorFS(mem *MemFS, op Op, cause error) (efs *ErrorFS, armed *atomic.Bool, blocked, open chan struct{}) {
	armed = new(atomic.Bool)
	blocked, open = make(chan struct{}), make(chan struct{})
	var once sync.Once
	efs = NewErrorFS(mem, func(o Op, name string) error {
		if !armed.Load() || o != op || !strings.HasSuffix(name, ".log") {
			return nil
		}
		once.Do(func() { close(blocked); <-open })
		return cause
	})
	return efs, armed, blocked, open
}

// TestCommitFatalErrorReachesFollowers: a WAL fsync fails (EIO) while
// writers wait behind the leader. The leader's Apply fails with the error,
// the DB turns read-only, and every follower is answered with ErrReadOnly,
// none hangs, none of their records is in the memtable or, after a power
// cut, on disk.
func TestCommitFatalErrorReachesFollowers(t *testing.T) {
	mem := NewMemFS()
	efs, armed, blocked, open := gatedErrorFS(mem, OpSync, EIO)
	db := openMem(t, efs, nil)
	defer func() { db.Close() }()
	mustApply(t, db, put("before", "v", v(1)))
	armed.Store(true)
	keys := stripeKeys("fatal", 9)
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _, _, errs[0] = db.Apply(put(keys[0], "v", v(1))) }()
	<-blocked
	for i, k := range keys[1:] {
		wg.Add(1)
		go func() { defer wg.Done(); _, _, errs[i+1] = db.Apply(put(k, "v", v(1))) }()
	}
	waitQueued(t, db, len(keys)-1)
	close(open)
	wg.Wait()
	if !errors.Is(errs[0], EIO) || errors.Is(errs[0], ErrTransient) {
		t.Fatalf("leader's Apply = %v, want EIO, not transient", errs[0])
	}
	for i, err := range errs[1:] {
		if !errors.Is(err, ErrReadOnly) || !errors.Is(err, EIO) {
			t.Fatalf("follower %d: Apply = %v, want ErrReadOnly wrapping EIO", i, err)
		}
		mustBeAbsent(t, db, keys[i+1])
	}
	if err := db.Writable(); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Writable = %v, want ErrReadOnly", err)
	}
	mem.Crash()
	db.Close()
	armed.Store(false)
	db = openMem(t, mem, nil)
	mustGetValue(t, db, "before", "v")
	for _, k := range keys[1:] {
		mustBeAbsent(t, db, k)
	}
}

// TestCommitTransientGroupOfFollowers: a group of followers, committed by
// a follower that took the lead, meets a transient WAL write failure. Every
// one of them fails with ErrTransient, the WAL is cut back, the DB heals by
// itself, and after a power cut the first group is there and none of the
// failed one.
func TestCommitTransientGroupOfFollowers(t *testing.T) {
	mem := NewMemFS()
	var failWrites atomic.Bool
	gate := &syncGate{FS: NewErrorFS(mem, func(op Op, name string) error {
		if failWrites.Load() && op == OpWrite && strings.HasSuffix(name, ".log") {
			return ENOSPC
		}
		return nil
	}), open: make(chan struct{}), blocked: make(chan struct{})}
	db := openMem(t, gate, fastRetry)
	defer func() { db.Close() }()
	keys := stripeKeys("trans", 12)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); mustApply(t, db, put(keys[0], "v", v(1))) }()
	<-gate.blocked
	errs := make([]error, len(keys))
	for i, k := range keys[1:] {
		wg.Add(1)
		go func() { defer wg.Done(); _, _, errs[i+1] = db.Apply(put(k, "v", v(1))) }()
	}
	waitQueued(t, db, len(keys)-1)
	failWrites.Store(true) // the leader's write is done; the followers' is next
	close(gate.open)
	wg.Wait()
	for i, err := range errs[1:] {
		if !errors.Is(err, ErrTransient) || !errors.Is(err, ENOSPC) {
			t.Fatalf("follower %d: Apply = %v, want ErrTransient wrapping ENOSPC", i, err)
		}
	}
	if st := db.Stats(); st.CommitGroups != 2 {
		t.Fatalf("%d commit groups, want 2: the followers were not one group", st.CommitGroups)
	}
	failWrites.Store(false)
	waitFor(t, "the write path to heal", func() bool { return db.Writable() == nil })
	checkWALsClean(t, mem) // the failed group's frames were cut back out
	mustApply(t, db, put("after", "v", v(1)))
	mem.Crash()
	db.Close()
	db = openMem(t, mem, nil)
	mustGetValue(t, db, keys[0], "v")
	mustGetValue(t, db, "after", "v")
	for _, k := range keys[1:] {
		mustBeAbsent(t, db, k)
	}
}

// TestApplyBatchResultsConcurrent: writers call ApplyBatchResults and Apply
// on a few shared keys at once, with random versions. Each result is what
// Apply would say: an applied record's key holds its version, a rejected
// one holds a version at least as new. The OnApply calls chain per key
// (prev is the previous call's cur), there is one per record reported
// applied, and each key ends at the newest version written to it.
func TestApplyBatchResultsConcurrent(t *testing.T) {
	var mu sync.Mutex
	last := map[string]Version{}
	calls := 0
	var chainErr error
	db := openMem(t, NewMemFS(), func(o *Options) {
		o.MemtableBytes = 4096
		o.OnApply = func(key []byte, prev, cur Version) {
			mu.Lock()
			defer mu.Unlock()
			if last[string(key)] != prev && chainErr == nil {
				chainErr = fmt.Errorf("key %s: OnApply prev %v, previous cur %v", key, prev, last[string(key)])
			}
			last[string(key)] = cur
			calls++
		}
	})
	defer db.Close()
	const writers, rounds, nkeys = 4, 150, 10
	var applied atomic.Int64
	newest := make([]atomic.Uint64, nkeys)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for r := 0; r < rounds && !t.Failed(); r++ {
				recs := make([]Record, 1+rng.IntN(6))
				for i := range recs {
					k := rng.IntN(nkeys)
					ver := Version{Counter: 1 + rng.Uint64N(500), Node: uint32(w)}
					for {
						old := newest[k].Load()
						if ver.Counter<<8|uint64(w) <= old || newest[k].CompareAndSwap(old, ver.Counter<<8|uint64(w)) {
							break
						}
					}
					recs[i] = put(fmt.Sprintf("key%02d", k), fmt.Sprint(ver), ver)
				}
				if w == 0 && len(recs) == 1 {
					held, ok, err := db.Apply(recs[0])
					checkResult(t, recs[0], ApplyResult{Held: held, Applied: ok}, err)
					if ok {
						applied.Add(1)
					}
					// Acknowledged means readable: a request answered early
					// (its reuse mixing up wake-ups) would fail here.
					if got, err := db.Get(recs[0].Key); err != nil || got.Version.Less(held) {
						t.Errorf("Get %s after Apply held %v: %v, %v", recs[0].Key, held, got.Version, err)
					}
					continue
				}
				res := make([]ApplyResult, len(recs))
				n, err := db.ApplyBatchResults(recs, res)
				got := 0
				for i := range recs {
					checkResult(t, recs[i], res[i], err)
					if res[i].Applied {
						got++
					}
				}
				if got != n {
					t.Errorf("ApplyBatchResults = %d, but %d results say applied", n, got)
				}
				applied.Add(int64(n))
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if chainErr != nil {
		t.Fatal(chainErr)
	}
	if int64(calls) != applied.Load() {
		t.Fatalf("%d OnApply calls for %d records reported applied", calls, applied.Load())
	}
	for k := range nkeys {
		nv := newest[k].Load()
		want := Version{Counter: nv >> 8, Node: uint32(nv & 0xff)}
		got, err := db.Get([]byte(fmt.Sprintf("key%02d", k)))
		if nv == 0 {
			continue
		}
		if err != nil || got.Version != want || string(got.Value) != fmt.Sprint(want) {
			t.Fatalf("key%02d = %q@%v, %v; want %v", k, got.Value, got.Version, err, want)
		}
	}
}

// checkResult fails the test unless res is a result Apply could give for
// rec.
func checkResult(t *testing.T, rec Record, res ApplyResult, err error) {
	t.Helper()
	switch {
	case err != nil:
		t.Errorf("%s@%v: %v", rec.Key, rec.Version, err)
	case res.Applied && res.Held != rec.Version:
		t.Errorf("%s@%v applied, but the result says %v is held", rec.Key, rec.Version, res.Held)
	case !res.Applied && res.Held.Less(rec.Version):
		t.Errorf("%s@%v rejected, but the result says the older %v is held", rec.Key, rec.Version, res.Held)
	}
}

// TestCloseWithWritersInFlight: Close while writers commit. Every Apply
// returns either nil or ErrClosed, none hangs, and after a reopen every
// acknowledged record is there.
func TestCloseWithWritersInFlight(t *testing.T) {
	mem := NewMemFS()
	db := openMem(t, mem, func(o *Options) { o.MemtableBytes = 8192 })
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				k := fmt.Sprintf("w%d-%05d", w, i)
				_, _, err := db.Apply(put(k, k, v(1)))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Apply %s: %v", k, err)
					return
				}
				mu.Lock()
				acked = append(acked, k)
				mu.Unlock()
			}
		}()
	}
	waitFor(t, "some writes", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) > 500 })
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	db = openMem(t, mem, nil)
	defer db.Close()
	for _, k := range acked {
		got, err := db.Get([]byte(k))
		if err != nil || !bytes.Equal(got.Value, []byte(k)) {
			t.Fatalf("acknowledged %s: %q, %v", k, got.Value, err)
		}
	}
	if n := countKeys(t, db); n < len(acked) {
		t.Fatalf("%d keys after reopen, %d acknowledged", n, len(acked))
	}
}
