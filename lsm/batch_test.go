package lsm

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestRecordFrame: appendRecordFrame writes the frame appendFrame writes,
// frameLen is its size, the record it returns equals the one encoded, and
// the frames decode back to the records.
func TestRecordFrame(t *testing.T) {
	recs := []Record{
		put("k", "v", v(1)),
		del("tomb", Version{Counter: 1 << 40, Node: 7}),
		{Key: bytes.Repeat([]byte("k"), 300), Value: bytes.Repeat([]byte("v"), 70000), Version: v(3), Expiry: -5},
		{Key: []byte("e"), Value: []byte{}, Version: v(4), Expiry: 1 << 50},
	}
	buf := walFileHeader()
	for i := range recs {
		want := appendFrame(nil, appendRecord(nil, &recs[i]))
		if n := frameLen(&recs[i]); n != len(want) {
			t.Fatalf("record %d: frameLen %d, frame is %d bytes", i, n, len(want))
		}
		start := len(buf)
		var got Record
		buf, got = appendRecordFrame(buf, &recs[i])
		if !bytes.Equal(buf[start:], want) {
			t.Fatalf("record %d: appendRecordFrame differs from appendFrame", i)
		}
		if !recEqual(got, recs[i]) {
			t.Fatalf("record %d: returned %+v, want %+v", i, got, recs[i])
		}
	}
	var decoded []Record
	if _, tail, err := decodeWAL("x.log", buf, func(_ int64, r Record) error {
		decoded = append(decoded, r)
		return nil
	}); err != nil || tail != walClean || len(decoded) != len(recs) {
		t.Fatalf("decodeWAL: %d records, %v, %v", len(decoded), tail, err)
	}
	for i := range recs {
		if !recEqual(decoded[i], recs[i]) {
			t.Fatalf("record %d decoded as %+v", i, decoded[i])
		}
	}
}

// TestApplyBatchMatchesApply applies random batches (duplicate keys, equal
// and older versions, the zero version, tombstones, expiries) to one DB with
// ApplyBatch and the same records one by one to another with Apply, with
// flushes, purges and reopens in between, and checks after each batch:
// both DBs hold the same records, which are the model's; ApplyBatch applied
// exactly the newest record of each key that was newer than the one held
// (the first of equal versions), and OnApply was called for each of them,
// in batch order, with the version held before; Stats counted them.
func TestApplyBatchMatchesApply(t *testing.T) {
	for seed := uint64(0); seed < 20; seed++ {
		batchMatchesApply(t, seed)
		if t.Failed() {
			t.Fatalf("seed %d failed", seed)
		}
	}
}

func batchMatchesApply(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 42))
	fsB, fsR := NewMemFS(), NewMemFS()
	hooks := &hookRecorder{}
	small := func(o *Options) { o.MemtableBytes = 1024 }
	withHook := func(o *Options) { small(o); o.OnApply = hooks.onApply }
	bdb := openMem(t, fsB, withHook)
	rdb := openMem(t, fsR, small)
	defer func() { bdb.Close(); rdb.Close() }()
	held := map[string]Version{} // the model: the version held per key

	for step := 0; step < 150; step++ {
		switch rng.IntN(20) {
		case 0:
			if err := bdb.Flush(); err != nil {
				t.Fatal(err)
			}
			continue
		case 1:
			k := fmt.Sprintf("k%02d", rng.IntN(24))
			if ver := held[k]; !ver.IsZero() {
				okB, errB := bdb.Purge([]byte(k), ver)
				okR, errR := rdb.Purge([]byte(k), ver)
				if !okB || !okR || errB != nil || errR != nil {
					t.Fatalf("step %d: Purge(%s, %v) = %v, %v and %v, %v", step, k, ver, okB, errB, okR, errR)
				}
				held[k] = Version{}
				hooks.take()
			}
			continue
		case 2:
			if err := bdb.Close(); err != nil {
				t.Fatal(err)
			}
			bdb = openMem(t, fsB, withHook)
			if c := hooks.take(); len(c) != 0 {
				t.Fatalf("step %d: OnApply calls during replay: %v", step, c)
			}
			continue
		}

		recs := make([]Record, rng.IntN(40))
		for i := range recs {
			k := fmt.Sprintf("k%02d", rng.IntN(24))
			// Counter 0 and node 0 together make the zero version now and then.
			rec := Record{Key: []byte(k), Version: Version{Counter: uint64(rng.IntN(60)), Node: uint32(rng.IntN(3))}}
			if rng.IntN(5) == 0 {
				rec.Tombstone = true
			} else {
				// Equal versions of one key may carry different values: the
				// first one sent must win, as one by one.
				rec.Value = fmt.Appendf(nil, "%s@%v#%d", k, rec.Version, rng.IntN(3))
			}
			if rng.IntN(4) == 0 {
				rec.Expiry = rng.Int64N(1 << 45)
			}
			recs[i] = rec
		}
		// The records that should apply: per key, the first of the newest.
		best := map[string]int{}
		for i, r := range recs {
			if b, ok := best[string(r.Key)]; !ok || recs[b].Version.Less(r.Version) {
				best[string(r.Key)] = i
			}
		}
		var wantCalls []hookCall
		for i, r := range recs {
			k := string(r.Key)
			if best[k] == i && held[k].Less(r.Version) {
				wantCalls = append(wantCalls, hookCall{k, held[k], r.Version})
			}
		}
		for _, r := range recs {
			if _, _, err := rdb.Apply(r); err != nil {
				t.Fatal(err)
			}
		}
		before := bdb.Stats()
		applied, err := bdb.ApplyBatch(recs)
		if err != nil {
			t.Fatalf("step %d: ApplyBatch: %v", step, err)
		}
		after := bdb.Stats()
		if applied != len(wantCalls) {
			t.Fatalf("step %d: applied %d of %d, want %d", step, applied, len(recs), len(wantCalls))
		}
		if got := hooks.take(); fmt.Sprint(got) != fmt.Sprint(wantCalls) {
			t.Fatalf("step %d: OnApply calls\n%v\nwant\n%v", step, got, wantCalls)
		}
		if a, r := after.Applies-before.Applies, after.Rejected-before.Rejected; a != uint64(applied) || r != uint64(len(recs)-applied) {
			t.Fatalf("step %d: Stats counted %d applied and %d rejected, want %d and %d", step, a, r, applied, len(recs)-applied)
		}
		for _, c := range wantCalls {
			held[c.key] = c.curr
		}
		got, want := scanAll(t, bdb), scanAll(t, rdb)
		if !slices.EqualFunc(got, want, recEqual) {
			t.Fatalf("step %d: ApplyBatch left\n%v\none by one:\n%v", step, got, want)
		}
		n := 0
		for k, ver := range held {
			if !ver.IsZero() {
				n++
				if i := slices.IndexFunc(got, func(r Record) bool { return string(r.Key) == k }); i < 0 || got[i].Version != ver {
					t.Fatalf("step %d: %s not at %v in %v", step, k, ver, got)
				}
			}
		}
		if n != len(got) {
			t.Fatalf("step %d: %d records, the model holds %d", step, len(got), n)
		}
	}
}

func scanAll(t *testing.T, db *DB) []Record {
	t.Helper()
	var out []Record
	if err := db.Scan(nil, nil, func(r Record) bool { out = append(out, r); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestApplyBatchCopies: the DB keeps nothing of the caller's slices.
func TestApplyBatchCopies(t *testing.T) {
	db := openMem(t, NewMemFS(), nil)
	defer db.Close()
	recs := []Record{put("b", "value-b", v(1)), put("a", "value-a", v(1))}
	if n, err := db.ApplyBatch(recs); n != 2 || err != nil {
		t.Fatalf("ApplyBatch = %d, %v", n, err)
	}
	for _, r := range recs {
		r.Key[0], r.Value[0] = 'X', 'X'
	}
	for _, k := range []string{"a", "b"} {
		got, err := db.Get([]byte(k))
		if err != nil || string(got.Value) != "value-"+k {
			t.Fatalf("Get(%s) = %q, %v", k, got.Value, err)
		}
	}
}

// TestApplyBatchConcurrent races batch writers, single-record writers, a
// purger and Flush on 16 keys under -race. Each key's newest version is
// sent by one writer and never purged, so whatever the interleaving each
// key must end at it; every OnApply call's prev must be the previous call's
// cur, which fails if a check and a write of one key ever interleave with
// another's. A deadlock between the stripe locks hangs the test.
func TestApplyBatchConcurrent(t *testing.T) {
	const keys, batchWriters, applyWriters, ops = 16, 4, 2, 150
	var (
		mu       sync.Mutex
		last     = map[string]Version{}
		chainErr error
	)
	hook := func(key []byte, prev, cur Version) {
		mu.Lock()
		defer mu.Unlock()
		if l := last[string(key)]; l != prev && chainErr == nil {
			chainErr = fmt.Errorf("OnApply(%s, %v, %v): the previous call left %v", key, prev, cur, l)
		}
		last[string(key)] = cur
	}
	db := openMem(t, NewMemFS(), func(o *Options) { o.MemtableBytes = 4096; o.OnApply = hook })
	defer db.Close()

	// A record's content is a function of its key and version, so that
	// the final state can be checked whichever copy won.
	mk := func(k string, ver Version) Record {
		if ver.Counter%7 == 0 {
			return del(k, ver)
		}
		return put(k, fmt.Sprintf("%s@%v", k, ver), ver)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	newest := map[string]Version{}
	plans := make([][][]Record, batchWriters+applyWriters)
	for w := range plans {
		for range ops {
			batch := make([]Record, 1+rng.IntN(40))
			if w >= batchWriters {
				batch = batch[:1]
			}
			for i := range batch {
				k := fmt.Sprintf("k%02d", rng.IntN(keys))
				ver := Version{Counter: 1 + uint64(rng.IntN(5000)), Node: uint32(w)}
				batch[i] = mk(k, ver)
				if newest[k].Less(ver) {
					newest[k] = ver
				}
			}
			plans[w] = append(plans[w], batch)
		}
	}

	// Every key starts at a version older than any writer's, which the
	// purger purges first, before the writers start: it purges something
	// whatever the timing.
	for i := range keys {
		mustApply(t, db, mk(fmt.Sprintf("k%02d", i), Version{Counter: 0, Node: 1}))
	}
	started := make(chan struct{})
	var wg sync.WaitGroup
	for w, plan := range plans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-started
			for i, batch := range plan {
				var err error
				if w < batchWriters {
					_, err = db.ApplyBatch(batch)
				} else {
					_, _, err = db.Apply(batch[0])
				}
				if err != nil {
					t.Error(err)
					return
				}
				if i%50 == 49 {
					if err := db.Flush(); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	done := make(chan struct{})
	var purges atomic.Int64
	var pwg sync.WaitGroup
	pwg.Add(1)
	go func() {
		defer pwg.Done()
		prng := rand.New(rand.NewPCG(5, 6))
		for !isClosed(done) {
			k := fmt.Sprintf("k%02d", prng.IntN(keys))
			got, err := db.Get([]byte(k))
			if err != nil || got.Version == newest[k] {
				continue
			}
			ok, err := db.Purge([]byte(k), got.Version)
			if err != nil {
				t.Error(err)
				return
			}
			if ok && purges.Add(1) == 1 {
				close(started)
			}
		}
	}()
	wg.Wait()
	close(done)
	pwg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if chainErr != nil {
		t.Fatal(chainErr)
	}
	for k, ver := range newest {
		got, err := db.Get([]byte(k))
		if err != nil || !recEqual(got, mk(k, ver)) {
			t.Fatalf("%s = %+v, %v; want %+v", k, got, err, mk(k, ver))
		}
		if last[k] != ver {
			t.Fatalf("%s: the last OnApply call left %v, want %v", k, last[k], ver)
		}
	}
	st := db.Stats()
	t.Logf("%d applied, %d rejected, %d purges, %d commit groups, %d flushes", st.Applies, st.Rejected, purges.Load(), st.CommitGroups, st.Flushes)
}

// walCounter is an FS that records the size of every WAL write and counts
// WAL syncs. hook, if set, may fail a WAL write (given its size).
type walCounter struct {
	FS
	mu     sync.Mutex
	writes []int
	syncs  int
	hook   func(n int) error
}

type walCounterFile struct {
	File
	c *walCounter
}

func (c *walCounter) Create(name string) (File, error) {
	f, err := c.FS.Create(name)
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return &walCounterFile{File: f, c: c}, nil
}

func (f *walCounterFile) Write(p []byte) (int, error) {
	f.c.mu.Lock()
	f.c.writes = append(f.c.writes, len(p))
	hook := f.c.hook
	f.c.mu.Unlock()
	if hook != nil {
		if err := hook(len(p)); err != nil {
			return 0, err
		}
	}
	return f.File.Write(p)
}

func (f *walCounterFile) Sync() error {
	f.c.mu.Lock()
	f.c.syncs++
	f.c.mu.Unlock()
	return f.File.Sync()
}

// take returns the WAL writes (but those of a new WAL's file header) and
// syncs since the last take.
func (c *walCounter) take() (writes []int, syncs int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.writes {
		if n != walFileHeaderLen {
			writes = append(writes, n)
		}
	}
	syncs = c.syncs
	c.writes, c.syncs = nil, 0
	return writes, syncs
}

// TestApplyBatchOneWriteOneSync: under SyncAlways a batch of 1000 records
// costs one WAL write and one fsync, counted through the FS seam; a batch
// of which nothing applies costs neither.
func TestApplyBatchOneWriteOneSync(t *testing.T) {
	c := &walCounter{FS: NewMemFS()}
	db := openMem(t, c, nil)
	defer db.Close()
	c.take()
	recs := make([]Record, 1000)
	for i := range recs {
		// Not in key order, to take the sorting path.
		recs[i] = put(fmt.Sprintf("key%04d", (i*7919)%1000), strings.Repeat("v", 100), v(uint64(i+1)))
	}
	if n, err := db.ApplyBatch(recs); n != 1000 || err != nil {
		t.Fatalf("ApplyBatch = %d, %v", n, err)
	}
	writes, syncs := c.take()
	if len(writes) != 1 || syncs != 1 {
		t.Fatalf("%d WAL writes %v and %d syncs for one batch, want 1 and 1", len(writes), writes, syncs)
	}
	if st := db.Stats(); st.CommitGroups != 1 || st.WALSyncs != 1 || st.Applies != 1000 {
		t.Fatalf("Stats: %d commit groups, %d syncs, %d applies", st.CommitGroups, st.WALSyncs, st.Applies)
	}
	if n, err := db.ApplyBatch(recs); n != 0 || err != nil {
		t.Fatalf("ApplyBatch again = %d, %v", n, err)
	}
	if writes, syncs := c.take(); len(writes) != 0 || syncs != 0 {
		t.Fatalf("a batch that applied nothing wrote %v and synced %d times", writes, syncs)
	}
	if st := db.Stats(); st.Rejected != 1000 {
		t.Fatalf("Rejected = %d", st.Rejected)
	}
}

// TestApplyBatchGroupsWithApply: a batch goes through the commit queue like
// an Apply, so it shares a WAL write and an fsync with the Applies queued
// beside it.
func TestApplyBatchGroupsWithApply(t *testing.T) {
	g := &syncGate{FS: NewMemFS(), open: make(chan struct{}), blocked: make(chan struct{})}
	db := openMem(t, g, nil)
	defer db.Close()
	// The first Apply blocks in its fsync; the batch and the later Applies
	// use other stripes, so that none waits for another's key lock.
	const singles = 8
	var first string
	var later, batch []string
	used := map[uint64]bool{}
	for i := 0; len(batch) < 100; i++ {
		k := fmt.Sprintf("key-%04d", i)
		s := bloomHash([]byte(k)) % stripes
		switch {
		case first == "":
			first, used[s] = k, true
		case len(later) < singles && !used[s]:
			later, used[s] = append(later, k), true
		case !used[s]:
			batch = append(batch, k)
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); mustApply(t, db, put(first, "v", v(1))) }()
	<-g.blocked
	recs := make([]Record, len(batch))
	for i, k := range batch {
		recs[i] = put(k, "v", v(1))
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if n, err := db.ApplyBatch(recs); n != len(recs) || err != nil {
			t.Errorf("ApplyBatch = %d, %v", n, err)
		}
	}()
	for _, k := range later {
		wg.Add(1)
		go func() { defer wg.Done(); mustApply(t, db, put(k, "v", v(1))) }()
	}
	for db.cq.queued() != 1+singles {
		runtimeGosched()
	}
	close(g.open)
	wg.Wait()
	g.mu.Lock()
	syncs := g.syncs
	g.mu.Unlock()
	if st := db.Stats(); syncs != 2 || st.CommitGroups != 2 || st.Applies != uint64(1+singles+len(batch)) {
		t.Fatalf("%d WAL syncs, %d commit groups, %d applies; want 2, 2, %d", syncs, st.CommitGroups, st.Applies, 1+singles+len(batch))
	}
}

// largeBatch returns a batch of about 10.5 MiB of WAL frames, more than two
// commits' worth: 2600 records of 4000-byte values, "dup" at both ends
// (the newer last).
func largeBatch() []Record {
	recs := []Record{put("dup", "old", v(1))}
	val := strings.Repeat("x", 4000)
	for i := range 2600 {
		recs = append(recs, put(fmt.Sprintf("big%05d", i), val, v(uint64(i+1))))
	}
	return append(recs, put("dup", "new", v(2)))
}

// TestApplyBatchLargerThanACommit: a batch of more WAL frames than one
// commit takes is applied in commits of at most maxCommitBytes, one WAL
// write and one fsync each, and all of it survives a reopen.
func TestApplyBatchLargerThanACommit(t *testing.T) {
	c := &walCounter{FS: NewMemFS()}
	db := openMem(t, c, nil)
	c.take()
	recs := largeBatch()
	frames := 0
	for i := range recs {
		frames += frameLen(&recs[i])
	}
	n, err := db.ApplyBatch(recs)
	if err != nil || n != len(recs)-1 {
		t.Fatalf("ApplyBatch = %d, %v; want %d", n, err, len(recs)-1)
	}
	writes, syncs := c.take()
	t.Logf("%d bytes of frames: WAL writes %v, %d syncs", frames, writes, syncs)
	// 2601 frames of 4030 bytes: 1040 fit in 4 MiB.
	if len(writes) != 3 || syncs != 3 {
		t.Fatalf("%d WAL writes %v and %d syncs, want 3 and 3", len(writes), writes, syncs)
	}
	total := 0
	for _, w := range writes {
		if w > maxCommitBytes {
			t.Fatalf("a WAL write of %d bytes", w)
		}
		total += w
	}
	if total != frames-frameLen(&recs[0]) {
		t.Fatalf("%d bytes written, want the %d bytes of the frames that apply", total, frames-frameLen(&recs[0]))
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openMem(t, c, nil)
	defer db.Close()
	got := scanAll(t, db)
	if len(got) != len(recs)-1 {
		t.Fatalf("%d records after reopen, want %d", len(got), len(recs)-1)
	}
	if r, err := db.Get([]byte("dup")); err != nil || string(r.Value) != "new" {
		t.Fatalf("dup = %q, %v", r.Value, err)
	}
}

// TestApplyBatchErrors: validation fails the call before anything is
// written, naming the record; ErrClosed; an I/O error fails the call,
// leaves the DB read-only and loses nothing acknowledged; one met by the
// second commit of a batch leaves the first applied and durable.
func TestApplyBatchErrors(t *testing.T) {
	t.Run("invalid record", func(t *testing.T) {
		db := openMem(t, NewMemFS(), nil)
		defer db.Close()
		for _, tt := range []struct {
			bad  Record
			want string
		}{
			{Record{Version: v(1)}, "record 2: lsm: empty key"},
			{Record{Key: []byte("t"), Value: []byte("v"), Version: v(1), Tombstone: true}, "record 2: lsm: tombstone with a value"},
		} {
			n, err := db.ApplyBatch([]Record{put("a", "v", v(1)), put("b", "v", v(1)), tt.bad, put("c", "v", v(1))})
			if err == nil || n != 0 || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ApplyBatch = %d, %v; want an error naming %q", n, err, tt.want)
			}
		}
		if st := db.Stats(); st.WALBytes != 0 || st.Applies != 0 || st.Rejected != 0 {
			t.Fatalf("an invalid batch wrote %d WAL bytes, applied %d, rejected %d", st.WALBytes, st.Applies, st.Rejected)
		}
		if _, err := db.Get([]byte("a")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a record of an invalid batch is present: %v", err)
		}
	})
	t.Run("empty and closed", func(t *testing.T) {
		db := openMem(t, NewMemFS(), nil)
		if n, err := db.ApplyBatch(nil); n != 0 || err != nil {
			t.Fatalf("ApplyBatch(nil) = %d, %v", n, err)
		}
		db.Close()
		if _, err := db.ApplyBatch([]Record{put("a", "v", v(1))}); !errors.Is(err, ErrClosed) {
			t.Fatalf("ApplyBatch after Close = %v", err)
		}
	})
	for _, tt := range []struct {
		name string
		op   Op
		err  error
	}{
		{"WAL write EIO (short write)", OpWrite, EIO},
		{"WAL sync EIO", OpSync, EIO},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mem := NewMemFS()
			var armed atomic.Bool
			efs := NewErrorFS(mem, func(op Op, name string) error {
				if armed.Load() && op == tt.op && strings.HasSuffix(name, ".log") {
					return tt.err
				}
				return nil
			})
			db := openMem(t, efs, nil)
			if n, err := db.ApplyBatch([]Record{put("a", "v", v(1)), put("b", "v", v(1))}); n != 2 || err != nil {
				t.Fatalf("ApplyBatch = %d, %v", n, err)
			}
			armed.Store(true)
			if n, err := db.ApplyBatch([]Record{put("c", "v", v(1)), put("d", "v", v(1))}); n != 0 || !errors.Is(err, tt.err) {
				t.Fatalf("ApplyBatch = %d, %v; want 0, %v", n, err, tt.err)
			}
			armed.Store(false)
			if _, err := db.ApplyBatch([]Record{put("e", "v", v(1))}); !errors.Is(err, ErrReadOnly) || !errors.Is(err, tt.err) {
				t.Fatalf("later ApplyBatch = %v, want ErrReadOnly wrapping the cause", err)
			}
			if _, _, err := db.Apply(put("e", "v", v(1))); !errors.Is(err, ErrReadOnly) {
				t.Fatalf("later Apply = %v, want ErrReadOnly", err)
			}
			db.Close()
			db = openMem(t, mem, nil)
			defer db.Close()
			for _, k := range []string{"a", "b"} {
				if _, err := db.Get([]byte(k)); err != nil {
					t.Fatalf("acknowledged %s lost: %v", k, err)
				}
			}
			if _, err := db.Get([]byte("e")); !errors.Is(err, ErrNotFound) {
				t.Fatalf("refused write is present: %v", err)
			}
		})
	}
	t.Run("second commit fails", func(t *testing.T) {
		mem := NewMemFS()
		c := &walCounter{FS: mem}
		db := openMem(t, c, nil)
		var commits atomic.Int32
		c.mu.Lock()
		c.hook = func(n int) error {
			if n != walFileHeaderLen && commits.Add(1) == 2 {
				return EIO
			}
			return nil
		}
		c.mu.Unlock()
		recs := largeBatch()
		first := commitLen(recs, newestPerKey(recs))
		n, err := db.ApplyBatch(recs)
		if n != first || !errors.Is(err, EIO) {
			t.Fatalf("ApplyBatch = %d, %v; want %d, EIO", n, err, first)
		}
		db.Close()
		db = openMem(t, mem, nil)
		defer db.Close()
		// The first commit's records (the newest of each key, in batch
		// order: not "dup", whose newest record is the batch's last) are
		// durable.
		for _, r := range recs[1 : 1+first] {
			if got, err := db.Get(r.Key); err != nil || !recEqual(got, r) {
				t.Fatalf("%s of the first commit lost after reopen: %v", r.Key, err)
			}
		}
	})
}

// TestApplyBatchResults: the version ApplyBatchResults reports for each record is
// the one its key holds once the call is done (what a replica acks), never
// older than the record, for records that apply, records older than what
// is held, and records that lose to a newer one of their key in the batch.
func TestApplyBatchResults(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	db := openMem(t, NewMemFS(), func(o *Options) { o.MemtableBytes = 2048 })
	defer db.Close()
	for round := range 200 {
		recs := make([]Record, 1+rng.IntN(12))
		for i := range recs {
			k := fmt.Sprintf("k%d", rng.IntN(8))
			ver := Version{Counter: uint64(1 + rng.IntN(1000)), Node: uint32(rng.IntN(3))}
			if rng.IntN(4) == 0 {
				recs[i] = del(k, ver)
			} else {
				recs[i] = put(k, fmt.Sprint(round), ver)
			}
		}
		res := make([]ApplyResult, len(recs))
		for i := range res {
			res[i] = ApplyResult{Held: v(999999), Applied: true} // overwritten
		}
		before := map[string]Version{}
		for _, r := range recs {
			if got, err := db.Get(r.Key); err == nil {
				before[string(r.Key)] = got.Version
			}
		}
		applied, err := db.ApplyBatchResults(recs, res)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		n := 0
		for i, r := range recs {
			got, err := db.Get(r.Key)
			if err != nil {
				t.Fatalf("round %d: get %s: %v", round, r.Key, err)
			}
			if res[i].Held != got.Version || res[i].Held.Less(r.Version) {
				t.Fatalf("round %d: record %d (%s at %v): held %v, key holds %v", round, i, r.Key, r.Version, res[i].Held, got.Version)
			}
			// Applied: this record is what the key holds now, and it was
			// newer than what the key held before.
			wantApplied := got.Version == r.Version && before[string(r.Key)].Less(r.Version) && firstOfVersion(recs, i)
			if res[i].Applied != wantApplied {
				t.Fatalf("round %d: record %d (%s at %v): applied %v, want %v (held before %v)", round, i, r.Key, r.Version, res[i].Applied, wantApplied, before[string(r.Key)])
			}
			if res[i].Applied {
				n++
			}
		}
		if n != applied {
			t.Fatalf("round %d: %d records report applied, the call says %d", round, n, applied)
		}
	}
	if _, err := db.ApplyBatchResults([]Record{put("a", "b", v(1))}, nil); err == nil {
		t.Error("ApplyBatchResults took a result slice of the wrong length")
	}
}

// firstOfVersion reports whether recs[i] is the first record of its key and
// version in recs (of equal ones, ApplyBatch applies the first).
func firstOfVersion(recs []Record, i int) bool {
	for j := range i {
		if bytes.Equal(recs[j].Key, recs[i].Key) && recs[j].Version == recs[i].Version {
			return false
		}
	}
	return true
}
