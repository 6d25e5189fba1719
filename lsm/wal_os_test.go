package lsm

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

// TestOSCloseTrimsWAL: the WAL is preallocated while the DB is open, and
// Close cuts the reserved zeros off, so that the next Open does not read
// them; the records are all there after the reopen, and the trimmed WAL
// takes appends again once replayed.
func TestOSCloseTrimsWAL(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(Options{Dir: dir, Sync: SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	want := int64(walFileHeaderLen)
	for i := 0; i < 20; i++ {
		r := put(fmt.Sprintf("k%02d", i), "value", v(uint64(i+1)))
		want += int64(frameLen(&r))
		mustApply(t, db, r)
	}
	wal := filepath.Join(dir, db.wal.name)
	fi, err := os.Stat(wal)
	if err != nil {
		t.Fatal(err)
	}
	if !db.wal.prealloc {
		t.Skip("the file system cannot preallocate")
	}
	if fi.Size() <= want {
		t.Fatalf("open WAL is %d bytes, want preallocated past %d", fi.Size(), want)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err = os.Stat(wal); err != nil || fi.Size() != want {
		t.Fatalf("closed WAL: %v, %v; want %d bytes", fi.Size(), err, want)
	}
	for round := 0; round < 2; round++ {
		db, err = Open(Options{Dir: dir, Sync: SyncNone})
		if err != nil {
			t.Fatal(err)
		}
		if n := countKeys(t, db); n != 20+round {
			t.Fatalf("round %d: %d keys after reopen, want %d", round, n, 20+round)
		}
		mustApply(t, db, put(fmt.Sprintf("more%d", round), "value", v(100)))
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// syncNoneChildDir names, in a child process of
// TestOSSyncNoneSurvivesProcessDeath, the directory it writes to.
const syncNoneChildDir = "LSM_TEST_SYNC_NONE_CHILD_DIR"

// syncNoneChildRecords is how many records the child applies before it
// dies.
const syncNoneChildRecords = 500

// TestOSSyncNoneSurvivesProcessDeath: under SyncNone every write that Apply
// acknowledged reaches the OS before Apply returns, so a process that dies
// without Close (os.Exit here, as a kill -9 would) loses none of them; only
// a crash of the machine may. The test runs itself as a child process that
// applies the records, never closes the DB and exits; the parent then opens
// the directory and finds every record.
func TestOSSyncNoneSurvivesProcessDeath(t *testing.T) {
	if dir := os.Getenv(syncNoneChildDir); dir != "" {
		db, err := Open(Options{Dir: dir, Sync: SyncNone})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		for i := 0; i < syncNoneChildRecords; i++ {
			if _, _, err := db.Apply(put(fmt.Sprintf("k%04d", i), "value", v(uint64(i+1)))); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
		}
		os.Exit(3) // dies with the DB open: no Close, no flush, no fsync
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestOSSyncNoneSurvivesProcessDeath$")
	cmd.Env = append(os.Environ(), syncNoneChildDir+"="+dir)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("child process: %v, want exit status 3; output:\n%s", err, out)
	}
	db, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := 0; i < syncNoneChildRecords; i++ {
		rec, err := db.Get([]byte(fmt.Sprintf("k%04d", i)))
		if err != nil || rec.Version != v(uint64(i+1)) {
			t.Fatalf("record %d after the process died: %v %v, want version %v", i, rec.Version, err, v(uint64(i+1)))
		}
	}
}
