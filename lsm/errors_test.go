package lsm

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
)

// TestWriteErrors injects fatal errors into the write path (EIO anywhere;
// any errno from an fsync): the Apply (or Flush) that meets the error fails
// with it, later writes fail with ErrReadOnly, reads keep working, and a
// reopen loses no acknowledged record. transient_test.go has the errors a
// DB recovers from.
func TestWriteErrors(t *testing.T) {
	tests := []struct {
		name  string
		op    Op
		file  string // suffix of the file name to fail
		err   error
		flush bool // the error is met by Flush, not Apply
	}{
		{"WAL write EIO (short write)", OpWrite, ".log", EIO, false},
		{"WAL sync EIO", OpSync, ".log", EIO, false},
		{"WAL sync ENOSPC (a failed fsync is fatal whatever its errno)", OpSync, ".log", ENOSPC, false},
		{"WAL sync EMFILE", OpSync, ".log", EMFILE, false},
		{"table create EIO", OpCreate, ".sst.tmp", EIO, true},
		{"table write EIO", OpWrite, ".sst.tmp", EIO, true},
		{"table sync EIO", OpSync, ".sst.tmp", EIO, true},
		{"table sync ENOSPC", OpSync, ".sst.tmp", ENOSPC, true},
		{"table rename EIO", OpRename, ".sst", EIO, true},
		{"manifest write EIO", OpWrite, "MANIFEST.tmp", EIO, true},
		{"manifest sync EIO", OpSync, "MANIFEST.tmp", EIO, true},
		{"manifest rename EIO", OpRename, "MANIFEST", EIO, true},
		{"new WAL create EIO", OpCreate, ".log", EIO, true},
		{"dir sync EIO", OpSyncDir, "/db", EIO, true},
		{"dir sync ENOSPC", OpSyncDir, "/db", ENOSPC, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := NewMemFS()
			var armed atomic.Bool
			efs := NewErrorFS(mem, func(op Op, name string) error {
				if armed.Load() && op == tt.op && strings.HasSuffix(name, tt.file) {
					return tt.err
				}
				return nil
			})
			db := openMem(t, efs, nil)
			for i := 0; i < 10; i++ {
				mustApply(t, db, put(fmt.Sprintf("k%d", i), "v", v(uint64(i+1))))
			}
			armed.Store(true)
			var err error
			if tt.flush {
				err = db.Flush()
			} else {
				_, _, err = db.Apply(put("k-failed", "v", v(100)))
			}
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			armed.Store(false)
			if _, _, err := db.Apply(put("k-later", "v", v(101))); !errors.Is(err, ErrReadOnly) || !errors.Is(err, tt.err) {
				t.Fatalf("later Apply = %v, want ErrReadOnly wrapping the cause", err)
			}
			if err := db.Flush(); !errors.Is(err, ErrReadOnly) {
				t.Fatalf("later Flush = %v, want ErrReadOnly", err)
			}
			if st := db.Stats(); !errors.Is(st.ReadOnly, tt.err) {
				t.Fatalf("Stats.ReadOnly = %v", st.ReadOnly)
			}
			for i := 0; i < 10; i++ {
				if _, err := db.Get([]byte(fmt.Sprintf("k%d", i))); err != nil {
					t.Fatalf("Get k%d after the error: %v", i, err)
				}
			}
			db.Close()
			db = openMem(t, mem, nil)
			defer db.Close()
			for i := 0; i < 10; i++ {
				if _, err := db.Get([]byte(fmt.Sprintf("k%d", i))); err != nil {
					t.Fatalf("Get k%d after reopen: %v", i, err)
				}
			}
			if _, err := db.Get([]byte("k-later")); !errors.Is(err, ErrNotFound) {
				t.Fatalf("refused write is present: %v", err)
			}
			mustApply(t, db, put("k-new", "v", v(200)))
		})
	}
}

// TestCompactionError fails the background compaction at each of its
// write steps with a fatal error: the DB turns read-only, keeps serving
// reads, and a reopen has everything.
func TestCompactionError(t *testing.T) {
	tests := []struct {
		name string
		op   Op
		file string
		err  error
	}{
		{"table create EIO", OpCreate, ".sst.tmp", EIO},
		{"table write EIO", OpWrite, ".sst.tmp", EIO},
		{"table sync EIO", OpSync, ".sst.tmp", EIO},
		{"table sync ENOSPC", OpSync, ".sst.tmp", ENOSPC},
		{"table rename EIO", OpRename, ".sst", EIO},
		{"manifest write EIO", OpWrite, "MANIFEST.tmp", EIO},
		{"manifest rename EIO", OpRename, "MANIFEST", EIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := NewMemFS()
			var armed atomic.Bool
			var seen atomic.Int32
			efs := NewErrorFS(mem, func(op Op, name string) error {
				// Once armed, the last flush does each of these steps
				// once; the compaction it triggers is the second user.
				if armed.Load() && op == tt.op && strings.HasSuffix(name, tt.file) && seen.Add(1) >= 2 {
					return tt.err
				}
				return nil
			})
			db := openMem(t, efs, nil)
			for f := 0; f < compactionMinRun-1; f++ {
				for i := 0; i < 10; i++ {
					mustApply(t, db, put(fmt.Sprintf("k%d", i), fmt.Sprint(f), v(uint64(f*10+i+1))))
				}
				if err := db.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			// The next flush succeeds but the compaction it triggers does not.
			for i := 0; i < 10; i++ {
				mustApply(t, db, put(fmt.Sprintf("k%d", i), "last", v(uint64(1000+i))))
			}
			db.mu.RLock()
			nTables := len(db.cur.tables)
			db.mu.RUnlock()
			if nTables != compactionMinRun-1 {
				t.Fatalf("%d tables before the last flush", nTables)
			}
			armed.Store(true)
			if err := db.Flush(); err != nil {
				t.Fatal(err)
			}
			<-db.roCh // the background compaction failed
			if st := db.Stats(); !errors.Is(st.ReadOnly, tt.err) || st.Compactions != 0 {
				t.Fatalf("stats after failed compaction: %+v", st)
			}
			if _, _, err := db.Apply(put("x", "y", v(5000))); !errors.Is(err, ErrReadOnly) {
				t.Fatalf("Apply = %v", err)
			}
			got, err := db.Get([]byte("k3"))
			if err != nil || string(got.Value) != "last" {
				t.Fatalf("Get = %+v, %v", got, err)
			}
			db.Close()
			db = openMem(t, mem, nil)
			defer db.Close()
			if got := countKeys(t, db); got != 10 {
				t.Fatalf("%d keys after reopen", got)
			}
			if got, err := db.Get([]byte("k3")); err != nil || string(got.Value) != "last" {
				t.Fatalf("after reopen: %+v, %v", got, err)
			}
		})
	}
}
