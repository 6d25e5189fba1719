package lsm

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
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

// crashModel tracks, per key, the version that must be held (floor) and every
// version ever sent, so that a recovered record can be checked: its version
// is at least the floor and its content is what was written with it.
type crashModel struct {
	cur      map[string]Version // what the running DB holds
	floor    map[string]Version // what must survive a crash
	attempts map[string]map[Version]attempt
}

func (m *crashModel) sent(rec Record) {
	k := string(rec.Key)
	if m.attempts[k] == nil {
		m.attempts[k] = map[Version]attempt{}
	}
	m.attempts[k][rec.Version] = attempt{string(rec.Value), rec.Tombstone}
}

// TestCrashRecovery runs seeded trials: random Applies (puts, overwrites,
// tombstones, older versions arriving late) and Flushes on a DB with a tiny
// memtable (so flushes and compactions happen), a power cut after a random
// number of file-system operations (possibly during recovery itself), and a
// reopen checked against a model: every Apply acknowledged under SyncAlways
// is there with its version, nothing never written appears, versions never
// go backwards.
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

func crashTrial(t *testing.T, seed uint64) int {
	rng := rand.New(rand.NewPCG(seed, 0xc0ffee))
	mem := NewMemFS()
	m := &crashModel{cur: map[string]Version{}, floor: map[string]Version{}, attempts: map[string]map[Version]attempt{}}
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
		// cycles run unsynced, where only the other properties hold.
		sync := SyncAlways
		if rng.IntN(4) == 0 {
			sync = SyncNone
		}
		opts := Options{Dir: "/db", FS: efs, Sync: sync, MemtableBytes: memBytes, Now: func() time.Time { return time.UnixMilli(0) }}
		db, err := Open(opts)
		if err == nil {
			for i := 0; i < 40; i++ {
				k := keys[rng.IntN(len(keys))]
				switch rng.IntN(30) {
				case 0, 1:
					if err := db.Flush(); err != nil {
						goto crash
					}
					continue
				case 2:
					if err := db.Compact(); err != nil {
						goto crash
					}
					continue
				}
				fl := m.cur[k]
				var rec Record
				switch r := rng.IntN(10); {
				case r < 6:
					counter++
					rec = Record{Key: []byte(k), Value: []byte(fmt.Sprintf("v%d-%d", counter, rng.IntN(1000))), Version: Version{counter, uint32(rng.IntN(3))}}
				case r < 8:
					counter++
					rec = Record{Key: []byte(k), Version: Version{counter, 1}, Tombstone: true}
				default:
					if fl.IsZero() {
						continue
					}
					// An older version arriving late.
					rec = Record{Key: []byte(k), Value: []byte("late"), Version: Version{fl.Counter - 1, 9}}
				}
				m.sent(rec)
				held, ok, err := db.Apply(rec)
				if err != nil {
					goto crash // ambiguous: it may or may not survive
				}
				want := fl.Less(rec.Version)
				if ok != want {
					t.Errorf("seed %d: Apply(%s@%v) applied=%v, floor %v", seed, k, rec.Version, ok, fl)
					return crashes
				}
				if ok {
					m.cur[k] = rec.Version
					if sync == SyncAlways {
						m.floor[k] = rec.Version
					}
				} else if held != fl {
					t.Errorf("seed %d: Apply(%s@%v) held %v, want %v", seed, k, rec.Version, held, fl)
					return crashes
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
		// the floor: versions must never go backwards after this.
		opts.FS = mem
		db2, err := Open(opts)
		if err != nil {
			t.Errorf("seed %d cycle %d: reopen: %v", seed, c, err)
			return crashes
		}
		seen := map[string]bool{}
		err = db2.Scan(nil, nil, func(r Record) bool {
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
			got, err := db2.Get([]byte(k))
			fl := m.floor[k]
			if errors.Is(err, ErrNotFound) {
				if !fl.IsZero() {
					t.Errorf("seed %d cycle %d: key %s lost, acknowledged at %v", seed, c, k, fl)
				}
				if seen[k] {
					t.Errorf("seed %d: scan saw %s, Get did not", seed, k)
				}
				delete(m.cur, k)
				continue
			}
			if err != nil {
				t.Errorf("seed %d: Get %s: %v", seed, k, err)
				continue
			}
			if got.Version.Less(fl) {
				t.Errorf("seed %d cycle %d: key %s went back from %v to %v", seed, c, k, fl, got.Version)
			}
			a, ok := m.attempts[k][got.Version]
			if !ok || a.value != string(got.Value) || a.tombstone != got.Tombstone {
				t.Errorf("seed %d: key %s holds %q@%v (tomb %v), never written so", seed, k, got.Value, got.Version, got.Tombstone)
			}
			if !seen[k] {
				t.Errorf("seed %d: Get found %s, scan did not", seed, k)
			}
			m.floor[k] = got.Version
			m.cur[k] = got.Version
		}
		if err := db2.Close(); err != nil {
			t.Errorf("seed %d: close: %v", seed, err)
		}
		if t.Failed() {
			return crashes
		}
	}
	return crashes
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
