package lsm

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func v(c uint64) Version { return Version{Counter: c, Node: 1} }

func put(k, val string, ver Version) Record {
	return Record{Key: []byte(k), Value: []byte(val), Version: ver}
}

func del(k string, ver Version) Record {
	return Record{Key: []byte(k), Version: ver, Tombstone: true}
}

func openMem(t testing.TB, fs FS, mod func(*Options)) *DB {
	t.Helper()
	// Test versions have tiny counters, which read as tombstones written in
	// 1970; a clock stopped at the epoch keeps them within their grace.
	o := Options{Dir: "/db", FS: fs, Now: func() time.Time { return time.UnixMilli(0) }}
	if mod != nil {
		mod(&o)
	}
	db, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return db
}

func mustApply(t testing.TB, db *DB, rec Record) {
	t.Helper()
	if _, ok, err := db.Apply(rec); err != nil || !ok {
		t.Fatalf("Apply(%q@%v) = %v, %v", rec.Key, rec.Version, ok, err)
	}
}

func TestApplyGet(t *testing.T) {
	type step struct {
		rec      Record
		wantOK   bool
		wantHeld Version
	}
	tests := []struct {
		name    string
		steps   []step
		key     string
		want    *Record // nil: ErrNotFound
		flushAt int     // flush after this many steps (-1: never)
	}{
		{
			name:    "put then get",
			steps:   []step{{put("a", "1", v(10)), true, v(10)}},
			key:     "a",
			want:    &Record{Value: []byte("1"), Version: v(10)},
			flushAt: -1,
		},
		{
			name:    "missing key",
			steps:   []step{{put("a", "1", v(10)), true, v(10)}},
			key:     "b",
			flushAt: -1,
		},
		{
			name: "overwrite with newer",
			steps: []step{
				{put("a", "1", v(10)), true, v(10)},
				{put("a", "2", v(11)), true, v(11)},
			},
			key:     "a",
			want:    &Record{Value: []byte("2"), Version: v(11)},
			flushAt: -1,
		},
		{
			name: "older version rejected",
			steps: []step{
				{put("a", "new", v(20)), true, v(20)},
				{put("a", "old", v(19)), false, v(20)},
			},
			key:     "a",
			want:    &Record{Value: []byte("new"), Version: v(20)},
			flushAt: -1,
		},
		{
			name: "equal version rejected",
			steps: []step{
				{put("a", "x", v(20)), true, v(20)},
				{put("a", "y", v(20)), false, v(20)},
			},
			key:     "a",
			want:    &Record{Value: []byte("x"), Version: v(20)},
			flushAt: -1,
		},
		{
			name: "node breaks ties",
			steps: []step{
				{put("a", "n1", Version{5, 1}), true, Version{5, 1}},
				{put("a", "n2", Version{5, 2}), true, Version{5, 2}},
				{put("a", "n0", Version{5, 0}), false, Version{5, 2}},
			},
			key:     "a",
			want:    &Record{Value: []byte("n2"), Version: Version{5, 2}},
			flushAt: -1,
		},
		{
			name: "tombstone shadows",
			steps: []step{
				{put("a", "1", v(10)), true, v(10)},
				{del("a", v(11)), true, v(11)},
				{put("a", "late", v(9)), false, v(11)},
			},
			key:     "a",
			want:    &Record{Version: v(11), Tombstone: true},
			flushAt: -1,
		},
		{
			name: "older version rejected against a table",
			steps: []step{
				{put("a", "new", v(20)), true, v(20)},
				{put("a", "old", v(19)), false, v(20)},
				{put("a", "newer", v(21)), true, v(21)},
			},
			key:     "a",
			want:    &Record{Value: []byte("newer"), Version: v(21)},
			flushAt: 1,
		},
		{
			name: "tombstone in table, put in memtable",
			steps: []step{
				{del("a", v(11)), true, v(11)},
				{put("a", "back", v(12)), true, v(12)},
			},
			key:     "a",
			want:    &Record{Value: []byte("back"), Version: v(12)},
			flushAt: 1,
		},
		{
			name:    "zero version never applied",
			steps:   []step{{put("a", "1", Version{}), false, Version{}}},
			key:     "a",
			flushAt: -1,
		},
		{
			name:    "expiry kept",
			steps:   []step{{Record{Key: []byte("a"), Value: []byte("e"), Version: v(3), Expiry: 12345}, true, v(3)}},
			key:     "a",
			want:    &Record{Value: []byte("e"), Version: v(3), Expiry: 12345},
			flushAt: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, reopen := range []bool{false, true} {
				fs := NewMemFS()
				db := openMem(t, fs, nil)
				for i, s := range tt.steps {
					if i == tt.flushAt {
						if err := db.Flush(); err != nil {
							t.Fatal(err)
						}
					}
					held, ok, err := db.Apply(s.rec)
					if err != nil || ok != s.wantOK || held != s.wantHeld {
						t.Fatalf("step %d: Apply = %v, %v, %v; want %v, %v", i, held, ok, err, s.wantHeld, s.wantOK)
					}
				}
				if tt.flushAt == len(tt.steps) {
					db.Flush()
				}
				if reopen {
					if err := db.Close(); err != nil {
						t.Fatal(err)
					}
					db = openMem(t, fs, nil)
				}
				got, err := db.Get([]byte(tt.key))
				if tt.want == nil {
					if !errors.Is(err, ErrNotFound) {
						t.Fatalf("reopen=%v: Get = %+v, %v; want ErrNotFound", reopen, got, err)
					}
				} else {
					tt.want.Key = []byte(tt.key)
					if err != nil || !recEqual(got, *tt.want) {
						t.Fatalf("reopen=%v: Get = %+v, %v; want %+v", reopen, got, err, *tt.want)
					}
				}
				db.Close()
			}
		})
	}
}

func recEqual(a, b Record) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) && a.Version == b.Version &&
		a.Tombstone == b.Tombstone && a.Expiry == b.Expiry && a.purged == b.purged
}

func TestApplyInvalid(t *testing.T) {
	db := openMem(t, NewMemFS(), nil)
	defer db.Close()
	for _, rec := range []Record{
		{Version: v(1)},
		{Key: []byte("k"), Value: []byte("v"), Version: v(1), Tombstone: true},
	} {
		if _, _, err := db.Apply(rec); err == nil {
			t.Errorf("Apply(%+v) succeeded", rec)
		}
	}
}

func TestCopiesSlices(t *testing.T) {
	db := openMem(t, NewMemFS(), nil)
	defer db.Close()
	k, val := []byte("key"), []byte("value")
	mustApply(t, db, Record{Key: k, Value: val, Version: v(1)})
	k[0], val[0] = 'X', 'X'
	got, err := db.Get([]byte("key"))
	if err != nil || string(got.Value) != "value" {
		t.Fatalf("Get = %q, %v", got.Value, err)
	}
	got.Value[0] = 'Y'
	again, _ := db.Get([]byte("key"))
	if string(again.Value) != "value" {
		t.Fatalf("caller's slice aliases the store: %q", again.Value)
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"defaults", Options{Dir: "d"}, ""},
		{"no dir", Options{}, "Dir is required"},
		{"bad sync", Options{Dir: "d", Sync: 7}, "invalid Options.Sync"},
		{"negative memtable", Options{Dir: "d", MemtableBytes: -1}, "MemtableBytes"},
		{"negative interval", Options{Dir: "d", SyncInterval: -time.Second}, "SyncInterval"},
		{"negative grace", Options{Dir: "d", TombstoneGrace: -time.Second}, "TombstoneGrace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				o := tt.opts
				if o.MemtableBytes != DefaultMemtableBytes || o.SyncInterval != DefaultSyncInterval ||
					o.TombstoneGrace != DefaultTombstoneGrace || o.FS == nil || o.Now == nil || o.Logger == nil {
					t.Fatalf("defaults not filled: %+v", o)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseSyncPolicy(t *testing.T) {
	tests := []struct {
		in   string
		want SyncPolicy
		ok   bool
	}{
		{"always", SyncAlways, true},
		{"Interval", SyncInterval, true},
		{" none ", SyncNone, true},
		{"sometimes", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseSyncPolicy(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseSyncPolicy(%q) = %v, %v", tt.in, got, err)
		}
		if tt.ok && got.String() != strings.ToLower(strings.TrimSpace(tt.in)) {
			t.Errorf("String() = %q", got.String())
		}
	}
}

func TestFlushReopenManyKeys(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncAlways, SyncInterval, SyncNone} {
		t.Run(policy.String(), func(t *testing.T) {
			fs := NewMemFS()
			mod := func(o *Options) { o.MemtableBytes = 8 << 10; o.Sync = policy }
			db := openMem(t, fs, mod)
			const n = 3000
			for i := 0; i < n; i++ {
				mustApply(t, db, put(fmt.Sprintf("key%06d", i%1000), fmt.Sprintf("val%d", i), v(uint64(i+1))))
			}
			for i := 0; i < 1000; i += 7 {
				mustApply(t, db, del(fmt.Sprintf("key%06d", i), v(uint64(n+i+1))))
			}
			check := func(db *DB) {
				t.Helper()
				for i := 0; i < 1000; i++ {
					got, err := db.Get([]byte(fmt.Sprintf("key%06d", i)))
					if err != nil {
						t.Fatalf("Get %d: %v", i, err)
					}
					if i%7 == 0 {
						if !got.Tombstone || got.Version != v(uint64(n+i+1)) {
							t.Fatalf("key %d: %+v, want tombstone", i, got)
						}
						continue
					}
					want := fmt.Sprintf("val%d", 2000+i)
					if string(got.Value) != want || got.Version != v(uint64(2000+i+1)) {
						t.Fatalf("key %d: %q@%v, want %q", i, got.Value, got.Version, want)
					}
				}
				var keys int
				err := db.Scan(nil, nil, func(r Record) bool { keys++; return true })
				if err != nil || keys != 1000 {
					t.Fatalf("Scan: %d keys, %v", keys, err)
				}
			}
			check(db)
			st := db.Stats()
			if st.Flushes == 0 || st.Tables == 0 {
				t.Fatalf("no flush happened: %+v", st)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db = openMem(t, fs, mod)
			check(db)
			if err := db.Flush(); err != nil {
				t.Fatal(err)
			}
			db.Close()
			db = openMem(t, fs, mod)
			check(db)
			db.Close()
		})
	}
}

func TestCloseTwiceAndUseAfterClose(t *testing.T) {
	db := openMem(t, NewMemFS(), nil)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v", err)
	}
	if _, _, err := db.Apply(put("a", "b", v(1))); !errors.Is(err, ErrClosed) {
		t.Fatalf("Apply after Close = %v", err)
	}
	if _, err := db.Get([]byte("a")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close = %v", err)
	}
	if err := db.Scan(nil, nil, func(Record) bool { return true }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Scan after Close = %v", err)
	}
	if err := db.Flush(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Flush after Close = %v", err)
	}
}

func TestOSFS(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(Options{Dir: dir, MemtableBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 500; i++ {
		mustApply(t, db, put(fmt.Sprintf("k%04d", i), strings.Repeat("v", i%50), v(uint64(i+1))))
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := 0; i < 500; i++ {
		got, err := db.Get([]byte(fmt.Sprintf("k%04d", i)))
		if err != nil || len(got.Value) != i%50 {
			t.Fatalf("k%04d: %v %v", i, got, err)
		}
	}
}

// syncGate is an FS whose WAL syncs block until the gate opens; it counts
// WAL writes and syncs.
type syncGate struct {
	FS
	mu      sync.Mutex
	open    chan struct{}
	blocked chan struct{}
	once    sync.Once
	syncs   int
	written int
}

type gateFile struct {
	File
	g   *syncGate
	wal bool
}

func (g *syncGate) Create(name string) (File, error) {
	f, err := g.FS.Create(name)
	if err != nil {
		return nil, err
	}
	return &gateFile{File: f, g: g, wal: strings.HasSuffix(name, ".log")}, nil
}

func (f *gateFile) Write(p []byte) (int, error) {
	if f.wal {
		f.g.mu.Lock()
		f.g.written += len(p)
		f.g.mu.Unlock()
	}
	return f.File.Write(p)
}

// Truncate passes the WAL's cut-back after a failed write on.
func (f *gateFile) Truncate(size int64) error {
	t, ok := f.File.(truncater)
	if !ok {
		return errors.New("gateFile: the inner file cannot truncate")
	}
	return t.Truncate(size)
}

func (f *gateFile) Sync() error {
	if f.wal {
		f.g.mu.Lock()
		f.g.syncs++
		f.g.mu.Unlock()
		f.g.once.Do(func() { close(f.g.blocked) })
		<-f.g.open
	}
	return f.File.Sync()
}

func TestGroupCommit(t *testing.T) {
	g := &syncGate{FS: NewMemFS(), open: make(chan struct{}), blocked: make(chan struct{})}
	db := openMem(t, g, nil)
	defer db.Close()
	const n = 64
	frame := len(appendFrame(nil, appendRecord(nil, &Record{Key: []byte("key-0000"), Value: []byte("value"), Version: v(1)})))
	// Keys on distinct lock stripes, so that no Apply waits for another's.
	var keys []string
	used := map[uint64]bool{}
	for i := 0; len(keys) < n; i++ {
		k := fmt.Sprintf("key-%04d", i)
		if s := bloomHash([]byte(k)) % stripes; !used[s] {
			used[s] = true
			keys = append(keys, k)
		}
	}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mustApply(t, db, put(keys[i], "value", v(uint64(i+1))))
		}()
	}
	// Wait until the first group is blocked in its fsync and every other
	// Apply is queued behind it.
	<-g.blocked
	for {
		g.mu.Lock()
		first := g.written / frame
		g.mu.Unlock()
		if first+db.cq.queued() == n {
			break
		}
		runtimeGosched()
	}
	close(g.open)
	wg.Wait()
	g.mu.Lock()
	syncs := g.syncs
	g.mu.Unlock()
	st := db.Stats()
	t.Logf("%d applies, %d WAL syncs, %d commit groups", n, syncs, st.CommitGroups)
	if syncs >= n || syncs > 2 {
		t.Fatalf("%d WAL syncs for %d applies: no group commit", syncs, n)
	}
	if st.Applies != n {
		t.Fatalf("Applies = %d", st.Applies)
	}
}

func TestConcurrentApplySameKey(t *testing.T) {
	db := openMem(t, NewMemFS(), func(o *Options) { o.MemtableBytes = 2048 })
	defer db.Close()
	const writers, per = 8, 200
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				ver := Version{Counter: uint64(i), Node: uint32(w)}
				held, ok, err := db.Apply(put("hot", fmt.Sprintf("%d/%d", i, w), ver))
				if err != nil {
					t.Error(err)
					return
				}
				if ok && held != ver || !ok && !ver.Less(held) && held != ver {
					t.Errorf("Apply(%v) = %v, %v", ver, held, ok)
				}
			}
		}()
	}
	wg.Wait()
	got, err := db.Get([]byte("hot"))
	want := Version{Counter: per - 1, Node: writers - 1}
	if err != nil || got.Version != want || string(got.Value) != fmt.Sprintf("%d/%d", per-1, writers-1) {
		t.Fatalf("Get = %q@%v, %v; want %v", got.Value, got.Version, err, want)
	}
}

func TestDirectoryLock(t *testing.T) {
	for _, tc := range []struct {
		name string
		fs   FS
		dir  string
	}{
		{"mem", NewMemFS(), "/db"},
		{"os", OSFS{}, t.TempDir()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := Open(Options{Dir: tc.dir, FS: tc.fs})
			if err != nil {
				t.Fatal(err)
			}
			if db2, err := Open(Options{Dir: tc.dir, FS: tc.fs}); err == nil {
				db2.Close()
				t.Fatal("second Open of the same directory succeeded")
			}
			db.Close()
			db, err = Open(Options{Dir: tc.dir, FS: tc.fs})
			if err != nil {
				t.Fatalf("Open after Close: %v", err)
			}
			db.Close()
		})
	}
}

// walNames returns the names of the WAL files in /db.
func walNames(t *testing.T, fs FS) []string {
	t.Helper()
	names, err := fs.List("/db")
	if err != nil {
		t.Fatal(err)
	}
	var logs []string
	for _, n := range names {
		if _, kind, ok := parseName(n); ok && kind == "log" {
			logs = append(logs, n)
		}
	}
	return logs
}

// TestReopenReusesEmptyWAL: an Open whose one WAL holds no record (after a
// Flush and a Close) starts that WAL again, empty, without a manifest
// update; an Open whose WAL holds records writes them to a table and moves
// to a new WAL. A power cut at any point of the reusing Open, even between
// emptying the WAL and syncing its directory entry, loses nothing.
func TestReopenReusesEmptyWAL(t *testing.T) {
	mem := NewMemFS()
	db := openMem(t, mem, nil)
	mustApply(t, db, put("a", "1", v(1)))
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	before := walNames(t, mem)
	db = openMem(t, mem, nil)
	if st := db.Stats(); st.ManifestWrites != 0 || fmt.Sprint(walNames(t, mem)) != fmt.Sprint(before) {
		t.Fatalf("reopen: %d manifest writes, WALs %v; want none and %v again", st.ManifestWrites, walNames(t, mem), before)
	}
	mustGetValue(t, db, "a", "1")
	mustApply(t, db, put("b", "2", v(2)))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// The WAL holds a record now: the general path.
	db = openMem(t, mem, nil)
	if st := db.Stats(); st.ManifestWrites != 1 || st.Flushes != 1 || fmt.Sprint(walNames(t, mem)) == fmt.Sprint(before) {
		t.Fatalf("reopen with a record: %d manifest writes, %d flushes, WALs %v", st.ManifestWrites, st.Flushes, walNames(t, mem))
	}
	mustGetValue(t, db, "b", "2")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for cut := int64(1); ; cut++ {
		img := NewMemFS()
		db := openMem(t, img, nil)
		mustApply(t, db, put("a", "1", v(1)))
		mustApply(t, db, put("b", "2", v(2)))
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
		db.Close()
		var ops atomic.Int64
		efs := NewErrorFS(img, func(Op, string) error {
			if ops.Add(1) > cut {
				return errPowerCut
			}
			return nil
		})
		db, err := Open(Options{Dir: "/db", FS: efs, Now: func() time.Time { return time.UnixMilli(0) }})
		if err == nil {
			db.Close()
		}
		img.Crash()
		db = openMem(t, img, nil)
		mustGetValue(t, db, "a", "1")
		mustGetValue(t, db, "b", "2")
		db.Close()
		if err == nil {
			break // the Open got through: every point before it was cut
		}
	}
}
