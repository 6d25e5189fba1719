package lsm

import (
	"fmt"
	"testing"
)

func TestOSReopenManyWALs(t *testing.T) {
	dir := t.TempDir()
	for round := 0; round < 5; round++ {
		db, err := Open(Options{Dir: dir, MemtableBytes: 2048, Sync: SyncNone})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 300; i++ {
			mustApply(t, db, put(fmt.Sprintf("r%d-%04d", round, i), "value", v(uint64(round*1000+i+1))))
		}
		// Close without waiting for flushes: several WALs may be replayed.
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	db, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n := countKeys(t, db); n != 1500 {
		t.Fatalf("%d keys", n)
	}
}
