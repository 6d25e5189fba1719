package lsm

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// twoTables writes keys a000-a049 into one table and b000-b049 into a newer
// one and returns the older table's path.
func twoTables(t *testing.T, fs *MemFS, mod func(*Options)) (*DB, string) {
	t.Helper()
	db := openMem(t, fs, mod)
	for _, p := range []string{"a", "b"} {
		for i := 0; i < 50; i++ {
			mustApply(t, db, put(fmt.Sprintf("%s%03d", p, i), "v", v(uint64(i+1))))
		}
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	st := db.Stats()
	if st.Tables != 2 {
		t.Fatalf("%d tables", st.Tables)
	}
	db.mu.RLock()
	path := db.cur.tables[1].path
	db.mu.RUnlock()
	return db, path
}

func flipByte(fs *MemFS, path string, off int) {
	data, _ := fs.ReadFile(path)
	data[off] ^= 0x55
	fs.WriteFile(path, data)
}

func TestQuarantineOnOpen(t *testing.T) {
	fs := NewMemFS()
	db, path := twoTables(t, fs, nil)
	db.Close()
	data, _ := fs.ReadFile(path)
	flipByte(fs, path, len(data)-footerLen-3) // the index block

	if _, err := Open(Options{Dir: "/db", FS: fs}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open without quarantine = %v", err)
	}
	db = openMem(t, fs, func(o *Options) { o.QuarantineCorrupt = true })
	defer db.Close()
	st := db.Stats()
	if len(st.Quarantined) != 1 || !strings.HasSuffix(path, st.Quarantined[0].Table) {
		t.Fatalf("Quarantined = %+v", st.Quarantined)
	}
	if _, err := fs.ReadFile(path + quarantineSuffix); err != nil {
		t.Fatalf("table not moved aside: %v", err)
	}
	if _, err := db.Get([]byte("b007")); err != nil {
		t.Fatalf("Get from the healthy table: %v", err)
	}
	if _, err := db.Get([]byte("a007")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get from the quarantined table: %v", err)
	}
	mustApply(t, db, put("a007", "repaired", v(100)))
}

func TestQuarantineAtRuntime(t *testing.T) {
	fs := NewMemFS()
	db, path := twoTables(t, fs, func(o *Options) { o.QuarantineCorrupt = true; o.BlockCacheBytes = -1 })
	defer db.Close()
	flipByte(fs, path, 10) // the first data block
	if _, err := db.Get([]byte("a001")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get on the damaged block = %v", err)
	}
	for len(db.Stats().Quarantined) == 0 {
		runtime.Gosched()
	}
	if _, err := db.Get([]byte("a001")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after quarantine: %v", err)
	}
	if _, err := db.Get([]byte("b001")); err != nil {
		t.Fatalf("healthy table: %v", err)
	}
	mustApply(t, db, put("a001", "repaired", v(100)))
	db.Close()
	db = openMem(t, fs, nil)
	defer db.Close()
	if got, err := db.Get([]byte("a001")); err != nil || string(got.Value) != "repaired" {
		t.Fatalf("after reopen: %+v %v", got, err)
	}
	if _, err := fs.ReadFile(path + quarantineSuffix); err != nil {
		t.Fatalf("quarantined file: %v", err)
	}
}

func TestCompactionMeetsCorruption(t *testing.T) {
	for _, quarantine := range []bool{false, true} {
		t.Run(fmt.Sprint("quarantine=", quarantine), func(t *testing.T) {
			fs := NewMemFS()
			db, path := twoTables(t, fs, func(o *Options) { o.QuarantineCorrupt = quarantine; o.BlockCacheBytes = -1 })
			defer db.Close()
			flipByte(fs, path, 10)
			err := db.Compact()
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Compact = %v", err)
			}
			st := db.Stats()
			if st.ReadOnly != nil {
				t.Fatalf("read-only after corruption in compaction: %v", st.ReadOnly)
			}
			if st.CompactionHalted == quarantine || (len(st.Quarantined) == 1) != quarantine {
				t.Fatalf("halted=%v quarantined=%v", st.CompactionHalted, st.Quarantined)
			}
			mustApply(t, db, put("c", "still writable", v(1)))
			if _, err := db.Get([]byte("b001")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	fs := NewMemFS()
	db, path := twoTables(t, fs, func(o *Options) { o.QuarantineCorrupt = true })
	defer db.Close()
	if err := db.Check(); err != nil {
		t.Fatalf("Check on healthy tables: %v", err)
	}
	// Warm the cache: Check must still read the file.
	db.Get([]byte("a001"))
	flipByte(fs, path, 10)
	err := db.Check()
	var ce *CorruptionError
	if !errors.As(err, &ce) || !strings.HasSuffix(path, ce.File) {
		t.Fatalf("Check = %v", err)
	}
	for len(db.Stats().Quarantined) == 0 {
		runtime.Gosched()
	}
	if err := db.Check(); err != nil {
		t.Fatalf("Check after quarantine: %v", err)
	}
}
