package lsm

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fastRetry makes the retries of a test DB quick, so that waiting for a
// recovery takes milliseconds.
func fastRetry(o *Options) {
	o.RetryBackoff = time.Millisecond
	o.RetryBackoffMax = 5 * time.Millisecond
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// mustGetValue fails unless key holds value.
func mustGetValue(t *testing.T, db *DB, key, value string) {
	t.Helper()
	got, err := db.Get([]byte(key))
	if err != nil || string(got.Value) != value {
		t.Fatalf("Get %s = %q, %v; want %q", key, got.Value, err, value)
	}
}

func mustBeAbsent(t *testing.T, db *DB, key string) {
	t.Helper()
	if got, err := db.Get([]byte(key)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get %s = %+v, %v; want not found", key, got, err)
	}
}

func TestIsTransient(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"EMFILE", fmt.Errorf("lsm: create WAL: %w", syscall.EMFILE), true},
		{"ENFILE", syscall.ENFILE, true},
		{"ENOSPC", fmt.Errorf("write: %w", syscall.ENOSPC), true},
		{"EDQUOT", syscall.EDQUOT, true},
		{"EIO", syscall.EIO, false},
		{"unknown", errors.New("something else"), false},
		{"fsync ENOSPC", fmt.Errorf("lsm: sync WAL: %w", &syncError{syscall.ENOSPC}), false},
		{"read-only wrapping ENOSPC", fmt.Errorf("%w: %w", ErrReadOnly, syscall.ENOSPC), false},
		{"corruption", corruptf("000001.sst", 12, "bad block"), false},
		{"nil", nil, false},
	} {
		if got := isTransient(tt.err); got != tt.want {
			t.Errorf("isTransient(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestTransientWALWrite fails a WAL write half-way (ErrorFS writes half the
// buffer) with an error the DB recovers from. The batch that met it fails
// with ErrTransient; while the fault lasts, writes keep failing and the
// memtable does not move; once it clears, the DB takes writes again by
// itself, with no reopen. After a power cut every acknowledged record is
// there and none of the failed batch, though the half it wrote held whole
// frames: the WAL was cut back before anything else was written.
func TestTransientWALWrite(t *testing.T) {
	for _, cause := range []error{ENOSPC, syscall.EDQUOT, EMFILE} {
		for _, emptyMem := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/empty memtable %v", cause, emptyMem), func(t *testing.T) {
				mem := NewMemFS()
				var armed, noFlush atomic.Bool
				efs := NewErrorFS(mem, func(op Op, name string) error {
					switch {
					case armed.Load() && op == OpWrite && strings.HasSuffix(name, ".log"):
						return cause
					case noFlush.Load() && op == OpCreate && strings.HasSuffix(name, ".sst.tmp"):
						// Keep the memtable the heal freezes, and so the WAL
						// the failure met, until the crash.
						return ENOSPC
					}
					return nil
				})
				db := openMem(t, efs, fastRetry)
				defer func() { db.Close() }()
				for i := range 10 {
					mustApply(t, db, put(fmt.Sprintf("k%d", i), "v", v(uint64(i+1))))
				}
				if emptyMem {
					if err := db.Flush(); err != nil {
						t.Fatal(err)
					}
				}
				before := db.Stats()
				armed.Store(true)
				noFlush.Store(true)
				// Three frames of the same size: the half that reaches the
				// file holds a whole one and half of the next.
				failed := []Record{put("f0", "xxxxxxxx", v(50)), put("f1", "xxxxxxxx", v(50)), put("f2", "xxxxxxxx", v(50))}
				if n, err := db.ApplyBatch(failed); n != 0 || !errors.Is(err, ErrTransient) || !errors.Is(err, cause) {
					t.Fatalf("ApplyBatch = %d, %v; want 0 and ErrTransient wrapping %v", n, err, cause)
				}
				if err := db.Writable(); !errors.Is(err, ErrTransient) || !errors.Is(err, cause) {
					t.Fatalf("Writable = %v, want ErrTransient wrapping %v", err, cause)
				}
				// The heals fail too while the fault lasts (the new WAL's
				// header is a write): writes keep failing.
				waitFor(t, "a failed heal", func() bool { return db.Stats().TransientErrors >= 3 })
				if _, _, err := db.Apply(put("refused", "v", v(60))); !errors.Is(err, ErrTransient) {
					t.Fatalf("Apply while failing = %v, want ErrTransient", err)
				}
				st := db.Stats()
				if !errors.Is(st.Stalled, cause) || st.ReadOnly != nil || st.MemtableRecords != before.MemtableRecords {
					t.Fatalf("stats while failing: Stalled %v ReadOnly %v memtable %d records (before %d)",
						st.Stalled, st.ReadOnly, st.MemtableRecords, before.MemtableRecords)
				}
				for _, r := range failed {
					mustBeAbsent(t, db, string(r.Key))
				}

				armed.Store(false)
				waitFor(t, "the write path to recover without a write", func() bool { return db.Writable() == nil })
				if st := db.Stats(); st.Recoveries != 1 || st.Stalled != nil {
					t.Fatalf("after recovery: Recoveries %d, Stalled %v", st.Recoveries, st.Stalled)
				}
				for i := 10; i < 20; i++ {
					mustApply(t, db, put(fmt.Sprintf("k%d", i), "v", v(uint64(i+1))))
				}
				// Every WAL ends cleanly: the one the failure met was cut back.
				checkWALsClean(t, mem)

				mem.Crash()
				db.Close()
				noFlush.Store(false)
				db = openMem(t, mem, nil)
				for i := range 20 {
					mustGetValue(t, db, fmt.Sprintf("k%d", i), "v")
				}
				for _, r := range append(failed, put("refused", "", v(60))) {
					mustBeAbsent(t, db, string(r.Key))
				}
			})
		}
	}
}

// checkWALsClean fails if a WAL file in /db ends in a torn record.
func checkWALsClean(t *testing.T, mem *MemFS) {
	t.Helper()
	names, err := mem.List("/db")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if _, kind, ok := parseName(n); !ok || kind != "log" {
			continue
		}
		data, err := mem.ReadFile(join("/db", n))
		if err != nil {
			t.Fatal(err)
		}
		end, tail, err := decodeWAL(n, data, nil)
		if err != nil || tail == walTorn {
			t.Fatalf("WAL %s: tail %v at %d, err %v", n, tail, end, err)
		}
	}
}

// TestTransientRotation runs out of file descriptors when a full memtable
// needs a new WAL: the write that filled it is acknowledged, the writes
// after it fail with ErrTransient and leave the memtable as it is, and once
// files can be created the DB rotates by itself and takes writes again.
func TestTransientRotation(t *testing.T) {
	mem := NewMemFS()
	var armed atomic.Bool
	efs := NewErrorFS(mem, func(op Op, name string) error {
		if armed.Load() && op == OpCreate && strings.HasSuffix(name, ".log") {
			return EMFILE
		}
		return nil
	})
	db := openMem(t, efs, func(o *Options) { fastRetry(o); o.MemtableBytes = 2048 })
	defer func() { db.Close() }()
	armed.Store(true)
	acked := 0
	for ; ; acked++ {
		_, _, err := db.Apply(put(fmt.Sprintf("k%04d", acked), "value", v(uint64(acked+1))))
		if err != nil {
			if !errors.Is(err, ErrTransient) || !errors.Is(err, syscall.EMFILE) {
				t.Fatalf("Apply %d = %v, want ErrTransient wrapping EMFILE", acked, err)
			}
			break
		}
		if acked > 1000 {
			t.Fatal("the memtable never rotated")
		}
	}
	if err := db.Writable(); !errors.Is(err, ErrTransient) {
		t.Fatalf("Writable = %v", err)
	}
	held := db.Stats().MemtableBytes
	for i := range 50 {
		if _, _, err := db.Apply(put(fmt.Sprintf("x%d", i), "value", v(5000))); !errors.Is(err, ErrTransient) {
			t.Fatalf("Apply while stalled = %v", err)
		}
	}
	if got := db.Stats().MemtableBytes; got != held {
		t.Fatalf("memtable grew from %d to %d bytes while stalled", held, got)
	}
	if err := db.Flush(); !errors.Is(err, ErrTransient) {
		t.Fatalf("Flush while stalled = %v", err)
	}
	armed.Store(false)
	waitFor(t, "the write path to recover without a write", func() bool { return db.Writable() == nil })
	mustApply(t, db, put("after", "v", v(9000)))
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	mem.Crash()
	db.Close()
	db = openMem(t, mem, nil)
	for i := range acked {
		mustGetValue(t, db, fmt.Sprintf("k%04d", i), "value")
	}
	mustGetValue(t, db, "after", "v")
	mustBeAbsent(t, db, "x0")
}

// TestTransientFlush fails the flush's table creation: Flush fails with
// ErrTransient, writes go on while the memtables have room and then fail
// with ErrTransient rather than wait, and once tables can be created the
// flusher catches up by itself and writes go through again.
func TestTransientFlush(t *testing.T) {
	mem := NewMemFS()
	var armed atomic.Bool
	efs := NewErrorFS(mem, func(op Op, name string) error {
		if armed.Load() && op == OpCreate && strings.HasSuffix(name, ".sst.tmp") {
			return EMFILE
		}
		return nil
	})
	db := openMem(t, efs, func(o *Options) { fastRetry(o); o.MemtableBytes = 2048 })
	defer func() { db.Close() }()
	mustApply(t, db, put("a", "v", v(1)))
	armed.Store(true)
	if err := db.Flush(); !errors.Is(err, ErrTransient) || !errors.Is(err, syscall.EMFILE) {
		t.Fatalf("Flush = %v, want ErrTransient wrapping EMFILE", err)
	}
	if st := db.Stats(); st.ReadOnly != nil || !errors.Is(st.FlushRetrying, syscall.EMFILE) {
		t.Fatalf("stats: ReadOnly %v, FlushRetrying %v", st.ReadOnly, st.FlushRetrying)
	}
	// Writes fill the memtable and the frozen ones, then stall with an
	// error instead of waiting for a flush that does not come.
	acked := 0
	for ; ; acked++ {
		_, _, err := db.Apply(put(fmt.Sprintf("k%04d", acked), "value", v(uint64(acked+10))))
		if err != nil {
			if !errors.Is(err, ErrTransient) {
				t.Fatalf("Apply %d = %v, want ErrTransient", acked, err)
			}
			break
		}
		if acked > 5000 {
			t.Fatal("writes never stalled")
		}
	}
	if st := db.Stats(); st.ImmutableMemtables != maxImmutable || st.Flushes != 0 {
		t.Fatalf("%d frozen memtables, %d flushes", st.ImmutableMemtables, st.Flushes)
	}
	armed.Store(false)
	waitFor(t, "the flusher and the write path to recover", func() bool {
		st := db.Stats()
		return db.Writable() == nil && st.FlushRetrying == nil && st.Flushes >= maxImmutable
	})
	mustApply(t, db, put("after", "v", v(90000)))
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = openMem(t, mem, nil)
	mustGetValue(t, db, "a", "v")
	for i := range acked {
		mustGetValue(t, db, fmt.Sprintf("k%04d", i), "value")
	}
	mustGetValue(t, db, "after", "v")
}

// TestTransientCompaction fails a background compaction on a full disk: the
// DB stays writable, reports the compaction as retrying, and the compaction
// runs once space is back.
func TestTransientCompaction(t *testing.T) {
	mem := NewMemFS()
	var armed atomic.Bool
	var creates atomic.Int32
	efs := NewErrorFS(mem, func(op Op, name string) error {
		// Once armed, the last flush creates its table; the compaction
		// it triggers is the second.
		if armed.Load() && op == OpCreate && strings.HasSuffix(name, ".sst.tmp") && creates.Add(1) >= 2 {
			return ENOSPC
		}
		return nil
	})
	db := openMem(t, efs, fastRetry)
	defer func() { db.Close() }()
	for f := range compactionMinRun {
		if f == compactionMinRun-1 {
			armed.Store(true)
		}
		for i := range 10 {
			mustApply(t, db, put(fmt.Sprintf("k%d", i), fmt.Sprint(f), v(uint64(f*10+i+1))))
		}
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the compaction to fail", func() bool { return db.Stats().CompactionRetrying != nil })
	if st := db.Stats(); st.ReadOnly != nil || st.Compactions != 0 || !errors.Is(st.CompactionRetrying, ENOSPC) {
		t.Fatalf("stats: ReadOnly %v, Compactions %d, CompactionRetrying %v", st.ReadOnly, st.Compactions, st.CompactionRetrying)
	}
	mustApply(t, db, put("during", "v", v(500)))
	if err := db.Compact(); !errors.Is(err, ErrTransient) {
		t.Fatalf("Compact while the disk is full = %v, want ErrTransient", err)
	}
	armed.Store(false)
	waitFor(t, "the compaction to run", func() bool {
		st := db.Stats()
		return st.Compactions >= 1 && st.CompactionRetrying == nil
	})
	db.Close()
	db = openMem(t, mem, nil)
	mustGetValue(t, db, "k3", fmt.Sprint(compactionMinRun-1))
	mustGetValue(t, db, "during", "v")
}

// TestTransientManifestDirSync cannot open the directory to sync it right
// after a new manifest was renamed into place: that manifest is what the
// next Open reads, so the flush neither drops its table nor gives up; it
// syncs again until it can. A Close meanwhile leaves a store that opens
// with everything.
func TestTransientManifestDirSync(t *testing.T) {
	for _, closeFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("close while failing %v", closeFirst), func(t *testing.T) {
			mem := NewMemFS()
			var armed, renamed atomic.Bool
			efs := NewErrorFS(mem, func(op Op, name string) error {
				if !armed.Load() {
					return nil
				}
				switch {
				case op == OpRename && strings.HasSuffix(name, manifestName):
					renamed.Store(true)
				case op == OpSyncDir && renamed.Load():
					return EMFILE
				}
				return nil
			})
			db := openMem(t, efs, fastRetry)
			defer func() { db.Close() }()
			for i := range 10 {
				mustApply(t, db, put(fmt.Sprintf("k%d", i), "v", v(uint64(i+1))))
			}
			armed.Store(true)
			if err := db.Flush(); !errors.Is(err, ErrTransient) {
				t.Fatalf("Flush = %v, want ErrTransient", err)
			}
			if closeFirst {
				if err := db.Close(); err != nil {
					t.Fatalf("Close while the sync is retried: %v", err)
				}
			} else {
				armed.Store(false)
				waitFor(t, "the flush to finish", func() bool { return db.Stats().Flushes == 1 })
				if err := db.Flush(); err != nil {
					t.Fatal(err)
				}
				if st := db.Stats(); st.ReadOnly != nil || st.Tables != 1 {
					t.Fatalf("stats: ReadOnly %v, %d tables", st.ReadOnly, st.Tables)
				}
				db.Close()
			}
			db = openMem(t, mem, nil)
			for i := range 10 {
				mustGetValue(t, db, fmt.Sprintf("k%d", i), "v")
			}
		})
	}
}
