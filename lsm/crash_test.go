package lsm

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var crashSeeds = flag.Int("crash.seeds", 1000, "number of seeded crash trials in TestCrashRecovery")

var errPowerCut = errors.New("simulated power cut")

// attempt is one write the model knows about.
type attempt struct {
	value     string
	tombstone bool
}

// crashModel tracks, per key, what the running DB holds, the states a
// recovery may show and every version ever sent. A state is the version
// held; the zero Version stands for no record (never written, or purged).
// A recovered key must show its last durable state or a later one, and a
// recovered record must have the content written with its version. Versions
// alone do not order the states: after a purge, an older version may be
// applied again.
type crashModel struct {
	cur      map[string]Version   // what the running DB holds
	states   map[string][]Version // the last durable state of each key, then every later one
	purged   map[string]Version   // the last version purged, to be sent again
	attempts map[string]map[Version]attempt
}

func newCrashModel() *crashModel {
	return &crashModel{
		cur:      map[string]Version{},
		states:   map[string][]Version{},
		purged:   map[string]Version{},
		attempts: map[string]map[Version]attempt{},
	}
}

func (m *crashModel) sent(rec Record) {
	k := string(rec.Key)
	if m.attempts[k] == nil {
		m.attempts[k] = map[Version]attempt{}
	}
	m.attempts[k][rec.Version] = attempt{string(rec.Value), rec.Tombstone}
}

// allowed returns the states a recovery may show for k.
func (m *crashModel) allowed(k string) []Version {
	if m.states[k] == nil {
		return []Version{{}}
	}
	return m.states[k]
}

// maybe records a state the DB may have reached: an operation that
// returned an error may or may not survive.
func (m *crashModel) maybe(k string, ver Version) {
	m.states[k] = append(m.allowed(k), ver)
}

// step records that the DB holds ver for k now; if durable, no earlier
// state may show after a crash.
func (m *crashModel) step(k string, ver Version, durable bool) {
	m.cur[k] = ver
	if durable {
		m.states[k] = []Version{ver}
	} else {
		m.maybe(k, ver)
	}
}

// synced records that every state held now is durable: a Flush returned.
func (m *crashModel) synced() {
	for k, ver := range m.cur {
		m.states[k] = []Version{ver}
	}
}

// TestCrashRecovery runs seeded trials: random Applies (puts, overwrites,
// tombstones, older versions arriving late, purged versions sent again),
// ApplyBatches of such records (a key more than once, too), Purges (of the
// version held or of another), Flushes and full and partial compactions on
// a DB with a tiny memtable, a power cut after a random number of
// file-system operations (possibly during recovery itself), and a reopen
// checked against a model: every Apply, ApplyBatch and Purge acknowledged
// under SyncAlways, and everything before a Flush that returned, is there
// (a purged key absent); a key never shows a state older than that;
// nothing never written appears.
func TestCrashRecovery(t *testing.T) {
	n := *crashSeeds
	if testing.Short() {
		n = min(n, 200)
	}
	start := time.Now()
	var crashes int
	for seed := 0; seed < n; seed++ {
		crashes += crashTrial(t, uint64(seed))
		if t.Failed() {
			t.Fatalf("seed %d failed", seed)
		}
	}
	t.Logf("%d trials, %d crash points, %v", n, crashes, time.Since(start))
}

// crashOp is one random operation of a crash trial on key k. It returns
// false when the operation failed: the power is cut.
type crashOp struct {
	t       *testing.T
	seed    uint64
	rng     *rand.Rand
	m       *crashModel
	db      *DB
	durable bool // SyncAlways
	counter *uint64
	keys    []string
}

func (o *crashOp) run(k string) bool {
	switch r := o.rng.IntN(14); {
	case r < 9, r == 11:
		rec, ok := o.record(k, r)
		if !ok {
			return true
		}
		return o.apply(k, o.m.cur[k], rec)
	case r < 11:
		return o.purge(k, o.m.cur[k])
	default:
		return o.batch(k)
	}
}

// record returns a record for k of the kind r (as run draws it), or false
// if there is none of that kind to send now.
func (o *crashOp) record(k string, r int) (Record, bool) {
	cur := o.m.cur[k]
	switch {
	case r < 6:
		*o.counter++
		return Record{Key: []byte(k), Value: []byte(fmt.Sprintf("v%d-%d", *o.counter, o.rng.IntN(1000))), Version: Version{*o.counter, uint32(o.rng.IntN(3))}}, true
	case r < 8:
		*o.counter++
		return Record{Key: []byte(k), Version: Version{*o.counter, 1}, Tombstone: true}, true
	case r < 9:
		if cur.IsZero() {
			return Record{}, false
		}
		// An older version arriving late.
		return Record{Key: []byte(k), Value: []byte("late"), Version: Version{cur.Counter - 1, 9}}, true
	default:
		// A purged version sent again (a range that moved back): it applies.
		pv := o.m.purged[k]
		if !cur.IsZero() || pv.IsZero() {
			return Record{}, false
		}
		a := o.m.attempts[k][pv]
		rec := Record{Key: []byte(k), Value: []byte(a.value), Version: pv, Tombstone: a.tombstone}
		if a.value == "" {
			rec.Value = nil
		}
		return rec, true
	}
}

// batch sends up to six records of the kinds Apply gets, for k and other
// keys (a key more than once, now and then), in one ApplyBatch. Per key
// the newest record (the first of equal versions) applies if it is newer
// than the version held; if the batch fails, each may or may not have.
func (o *crashOp) batch(k string) bool {
	kinds := [...]int{0, 1, 2, 3, 4, 5, 6, 7, 8, 11}
	var recs []Record
	for range 1 + o.rng.IntN(6) {
		key := k
		if o.rng.IntN(2) == 0 {
			key = o.keys[o.rng.IntN(len(o.keys))]
		}
		if rec, ok := o.record(key, kinds[o.rng.IntN(len(kinds))]); ok {
			o.m.sent(rec)
			recs = append(recs, rec)
		}
	}
	newest := map[string]Version{}
	var wins []string // the keys whose newest record applies, in batch order
	for _, rec := range recs {
		if k := string(rec.Key); newest[k].Less(rec.Version) {
			newest[k] = rec.Version
		}
	}
	for _, rec := range recs {
		k := string(rec.Key)
		if newest[k] == rec.Version && o.m.cur[k].Less(rec.Version) && !slices.Contains(wins, k) {
			wins = append(wins, k)
		}
	}
	applied, err := o.db.ApplyBatch(recs)
	if err != nil {
		for _, k := range wins {
			o.m.maybe(k, newest[k])
		}
		return false
	}
	if applied != len(wins) {
		o.t.Errorf("seed %d: ApplyBatch(%v) applied %d, want %d (%v)", o.seed, recs, applied, len(wins), wins)
		return false
	}
	for _, k := range wins {
		o.m.step(k, newest[k], o.durable)
	}
	return true
}

func (o *crashOp) apply(k string, cur Version, rec Record) bool {
	o.m.sent(rec)
	want := cur.Less(rec.Version)
	held, ok, err := o.db.Apply(rec)
	if err != nil {
		if want {
			o.m.maybe(k, rec.Version)
		}
		return false
	}
	if ok != want {
		o.t.Errorf("seed %d: Apply(%s@%v) applied=%v, holding %v", o.seed, k, rec.Version, ok, cur)
		return false
	}
	if ok {
		o.m.step(k, rec.Version, o.durable)
	} else if held != cur {
		o.t.Errorf("seed %d: Apply(%s@%v) held %v, want %v", o.seed, k, rec.Version, held, cur)
		return false
	}
	return true
}

// purge purges the version held, or now and then another one (a newer
// write that got in first, a key purged already).
func (o *crashOp) purge(k string, cur Version) bool {
	pv := cur
	switch {
	case cur.IsZero():
		pv = o.m.purged[k]
	case o.rng.IntN(4) == 0:
		pv.Node++
	}
	want := !cur.IsZero() && pv == cur
	ok, err := o.db.Purge([]byte(k), pv)
	if err != nil {
		if want {
			o.m.maybe(k, Version{})
		}
		return false
	}
	if ok != want {
		o.t.Errorf("seed %d: Purge(%s, %v) = %v, holding %v", o.seed, k, pv, ok, cur)
		return false
	}
	if ok {
		o.m.purged[k] = pv
		o.m.step(k, Version{}, o.durable)
	}
	return true
}

func crashTrial(t *testing.T, seed uint64) int {
	rng := rand.New(rand.NewPCG(seed, 0xc0ffee))
	mem := NewMemFS()
	m := newCrashModel()
	keys := make([]string, 4+rng.IntN(20))
	for i := range keys {
		keys[i] = fmt.Sprintf("k%02d", i)
	}
	counter := uint64(1000)
	memBytes := int64(300 + rng.IntN(2000))
	cycles := 1 + rng.IntN(3)
	crashes := 0
	for c := 0; c < cycles; c++ {
		var ops atomic.Int64
		crashAt := int64(rng.IntN(120))
		efs := NewErrorFS(mem, func(Op, string) error {
			if ops.Add(1) > crashAt {
				return errPowerCut
			}
			return nil
		})
		// Mostly SyncAlways, whose acknowledged writes must survive; some
		// cycles run unsynced, where only a Flush makes writes durable.
		sync := SyncAlways
		if rng.IntN(4) == 0 {
			sync = SyncNone
		}
		opts := Options{Dir: "/db", FS: efs, Sync: sync, MemtableBytes: memBytes, Now: func() time.Time { return time.UnixMilli(0) }}
		db, err := Open(opts)
		if err == nil {
			op := &crashOp{t: t, seed: seed, rng: rng, m: m, db: db, durable: sync == SyncAlways, counter: &counter, keys: keys}
			for i := 0; i < 40; i++ {
				k := keys[rng.IntN(len(keys))]
				switch rng.IntN(30) {
				case 0, 1:
					if err := db.Flush(); err != nil {
						goto crash
					}
					m.synced()
					continue
				case 2:
					if err := db.Compact(); err != nil {
						goto crash
					}
					continue
				case 3:
					// The newest tables only: markers and tombstones stay.
					if err := db.compact(0, 2+rng.IntN(2)); err != nil {
						goto crash
					}
					continue
				}
				if !op.run(k) {
					if t.Failed() {
						return crashes
					}
					goto crash
				}
			}
		}
	crash:
		// Power cut: the process dies (nothing more reaches the disk), then
		// everything not synced is lost.
		efs.Kill()
		if db != nil {
			db.Close()
		}
		mem.Crash()
		crashes++

		// Reopen without faults and compare with the model. What is seen now
		// is durable (recovery writes it to a synced table), so it becomes
		// the only state allowed until the next write.
		opts.FS = mem
		db2, err := Open(opts)
		if err != nil {
			t.Errorf("seed %d cycle %d: reopen: %v", seed, c, err)
			return crashes
		}
		checkRecovered(t, seed, c, db2, keys, m)
		if err := db2.Close(); err != nil {
			t.Errorf("seed %d: close: %v", seed, err)
		}
		if t.Failed() {
			return crashes
		}
	}
	return crashes
}

// checkRecovered compares a reopened DB with the model and makes what it
// holds the model's durable state.
func checkRecovered(t *testing.T, seed uint64, c int, db *DB, keys []string, m *crashModel) {
	seen := map[string]bool{}
	err := db.Scan(nil, nil, func(r Record) bool {
		seen[string(r.Key)] = true
		return true
	})
	if err != nil {
		t.Errorf("seed %d: scan: %v", seed, err)
	}
	for k := range seen {
		if m.attempts[k] == nil {
			t.Errorf("seed %d: phantom key %q", seed, k)
		}
	}
	for _, k := range keys {
		got, err := db.Get([]byte(k))
		var ver Version
		switch {
		case errors.Is(err, ErrNotFound):
			if seen[k] {
				t.Errorf("seed %d: scan saw %s, Get did not", seed, k)
			}
		case err != nil:
			t.Errorf("seed %d: Get %s: %v", seed, k, err)
			continue
		default:
			ver = got.Version
			a, ok := m.attempts[k][ver]
			if !ok || a.value != string(got.Value) || a.tombstone != got.Tombstone {
				t.Errorf("seed %d: key %s holds %q@%v (tomb %v), never written so", seed, k, got.Value, ver, got.Tombstone)
			}
			if !seen[k] {
				t.Errorf("seed %d: Get found %s, scan did not", seed, k)
			}
		}
		if allowed := m.allowed(k); !slices.Contains(allowed, ver) {
			t.Errorf("seed %d cycle %d: key %s recovered at %v (0.0: absent), want one of %v", seed, c, k, ver, allowed)
		}
		m.cur[k] = ver
		m.states[k] = []Version{ver}
	}
}

// TestMemFSCrashWithLiveDB crashes the MemFS under a DB that keeps running
// (writers, flushes, compactions), as in-process cluster tests do: nothing
// the dead DB does after the cut reaches the "disk", every write
// acknowledged before the cut is there after a reopen, and nothing else is.
func TestMemFSCrashWithLiveDB(t *testing.T) {
	for seed := uint64(0); seed < 20; seed++ {
		mem := NewMemFS()
		db, err := Open(Options{Dir: "/db", FS: mem, MemtableBytes: 1024, Now: func() time.Time { return time.UnixMilli(0) }})
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		acked := map[string]bool{}
		crashed := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					k := fmt.Sprintf("w%d-%05d", w, i)
					_, ok, err := db.Apply(put(k, "v", v(uint64(i+1))))
					if err != nil {
						return
					}
					if ok {
						mu.Lock()
						acked[k] = true
						mu.Unlock()
					}
					if i%50 == 49 {
						db.Flush()
					}
					select {
					case <-crashed:
						if i > 400 {
							return
						}
					default:
					}
				}
			}()
		}
		// Crash once enough has been acknowledged.
		for {
			mu.Lock()
			n := len(acked)
			mu.Unlock()
			if n > 200+int(seed)*20 {
				break
			}
			runtime.Gosched()
		}
		mu.Lock()
		mem.Crash()
		before := map[string]bool{}
		for k := range acked {
			before[k] = true
		}
		mu.Unlock()
		close(crashed)
		wg.Wait()
		db.Close()

		db, err = Open(Options{Dir: "/db", FS: mem})
		if err != nil {
			t.Fatalf("seed %d: reopen: %v", seed, err)
		}
		for k := range before {
			if _, err := db.Get([]byte(k)); err != nil {
				t.Fatalf("seed %d: acknowledged %s lost: %v", seed, k, err)
			}
		}
		if err := db.Scan(nil, nil, func(Record) bool { return true }); err != nil {
			t.Fatalf("seed %d: scan: %v", seed, err)
		}
		db.Close()
	}
}
