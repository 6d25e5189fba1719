package lsm

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// keysOf scans db and returns its keys.
func keysOf(t *testing.T, db *DB) []string {
	t.Helper()
	var ks []string
	if err := db.Scan(nil, nil, func(r Record) bool { ks = append(ks, string(r.Key)); return true }); err != nil {
		t.Fatal(err)
	}
	return ks
}

// TestPurge purges a key whose purged version is in the memtable or in a
// table, with an older version of the key in an older table, and checks
// after nothing more, a flush, a reopen (WAL replay), a flush and a reopen,
// or a power cut right after Purge returned: the key is not found, Scan
// skips it (and not its neighbours), the older version does not resurface,
// and an Apply of a version older than the purged one applies.
func TestPurge(t *testing.T) {
	type after struct {
		name string
		do   func(t *testing.T, fs *MemFS, db *DB) *DB
	}
	reopen := func(t *testing.T, fs *MemFS, db *DB) *DB {
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		return openMem(t, fs, nil)
	}
	flush := func(t *testing.T, _ *MemFS, db *DB) *DB {
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
		return db
	}
	afters := []after{
		{"nothing", func(_ *testing.T, _ *MemFS, db *DB) *DB { return db }},
		{"flush", flush},
		{"reopen", reopen},
		{"flush and reopen", func(t *testing.T, fs *MemFS, db *DB) *DB { return reopen(t, fs, flush(t, fs, db)) }},
		{"power cut", func(t *testing.T, fs *MemFS, db *DB) *DB {
			fs.Crash() // everything not synced is lost
			db.Close()
			return openMem(t, fs, nil)
		}},
	}
	for _, inTable := range []bool{false, true} {
		for _, a := range afters {
			t.Run(fmt.Sprintf("in table %v, then %s", inTable, a.name), func(t *testing.T) {
				fs := NewMemFS()
				db := openMem(t, fs, nil)
				defer func() { db.Close() }()
				mustApply(t, db, put("a", "1", v(1)))
				mustApply(t, db, put("k", "old", v(5)))
				mustApply(t, db, put("z", "1", v(1)))
				flush(t, fs, db)
				mustApply(t, db, put("k", "new", v(10)))
				if inTable {
					flush(t, fs, db)
				}
				if ok, err := db.Purge([]byte("k"), v(10)); !ok || err != nil {
					t.Fatalf("Purge = %v, %v", ok, err)
				}
				db = a.do(t, fs, db)
				if r, err := db.Get([]byte("k")); !errors.Is(err, ErrNotFound) {
					t.Fatalf("Get(k) after the purge = %+v, %v", r, err)
				}
				if ks := fmt.Sprint(keysOf(t, db)); ks != "[a z]" {
					t.Fatalf("scan after the purge: %s", ks)
				}
				if held, ok, err := db.Apply(put("k", "older", v(3))); !ok || err != nil || held != v(3) {
					t.Fatalf("Apply of an older version after the purge = %v, %v, %v", held, ok, err)
				}
				if r, err := db.Get([]byte("k")); err != nil || string(r.Value) != "older" {
					t.Fatalf("Get(k) = %+v, %v", r, err)
				}
			})
		}
	}
}

// TestPurgeOnlyExactVersion: Purge drops nothing and returns false unless
// the version held is exactly the one named; it purges tombstones too, and
// a purged key cannot be purged again.
func TestPurgeOnlyExactVersion(t *testing.T) {
	db := openMem(t, NewMemFS(), nil)
	defer db.Close()
	mustApply(t, db, put("k", "v", v(10)))
	mustApply(t, db, del("t", v(7)))
	tests := []struct {
		key  string
		ver  Version
		want bool
	}{
		{"k", v(9), false},
		{"k", v(11), false},
		{"k", Version{Counter: 10, Node: 2}, false},
		{"absent", v(10), false},
		{"absent", Version{}, false},
		{"k", Version{}, false},
		{"t", v(7), true},
		{"t", v(7), false}, // already purged
		{"k", v(10), true},
		{"k", v(10), false},
	}
	for _, tt := range tests {
		ok, err := db.Purge([]byte(tt.key), tt.ver)
		if err != nil || ok != tt.want {
			t.Fatalf("Purge(%s, %v) = %v, %v; want %v", tt.key, tt.ver, ok, err, tt.want)
		}
		if tt.key == "k" && !tt.want && !ok {
			if r, err := db.Get([]byte("k")); err == nil && r.Version != v(10) {
				t.Fatalf("a refused Purge changed k: %+v", r)
			}
		}
	}
	if _, err := db.Purge(nil, v(1)); err == nil {
		t.Fatal("Purge of an empty key succeeded")
	}
	if st := db.Stats(); st.Purges != 2 {
		t.Fatalf("Stats.Purges = %d, want 2", st.Purges)
	}
	// A zero version never applies, purged key or not.
	if _, ok, _ := db.Apply(put("k", "x", Version{})); ok {
		t.Fatal("zero version applied over a purged key")
	}
	db.Close()
	if _, err := db.Purge([]byte("k"), v(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Purge after Close = %v", err)
	}
}

// tableHolds reports whether any live table holds a record (purge markers
// included) for key.
func tableHolds(t *testing.T, db *DB, key string) bool {
	t.Helper()
	db.mu.RLock()
	defer db.mu.RUnlock()
	for _, tb := range db.cur.tables {
		it := tb.iterUncached()
		for ; it.valid(); it.next() {
			if string(it.rec().Key) == key {
				return true
			}
		}
		if it.err != nil {
			t.Fatal(it.err)
		}
	}
	return false
}

// TestPurgeMarkerCompaction: the purge marker outlives a compaction that
// does not reach the oldest table, which holds an older version it must
// keep shadowing; the compaction that reaches it drops the marker (and the
// version) without any grace period, while a tombstone within its grace
// stays.
func TestPurgeMarkerCompaction(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	db := openMem(t, NewMemFS(), func(o *Options) { o.Now = func() time.Time { return t0 } })
	defer db.Close()
	mustApply(t, db, put("k", "old", hlc(t0, 1)))
	mustApply(t, db, del("tomb", hlc(t0, 2)))
	db.Flush()
	mustApply(t, db, put("k", "new", hlc(t0, 3)))
	db.Flush()
	if ok, err := db.Purge([]byte("k"), hlc(t0, 3)); !ok || err != nil {
		t.Fatalf("Purge = %v, %v", ok, err)
	}
	db.Flush()
	if err := db.compact(0, 2); err != nil { // the two newest tables
		t.Fatal(err)
	}
	if r, err := db.Get([]byte("k")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after the partial compaction: Get(k) = %+v, %v", r, err)
	}
	if st := db.Stats(); st.Tables != 2 || st.Compactions != 1 {
		t.Fatalf("after the partial compaction: %d tables, %d compactions", st.Tables, st.Compactions)
	}
	if err := db.Compact(); err != nil {
		t.Fatal(err)
	}
	if tableHolds(t, db, "k") {
		t.Fatal("the full compaction kept a record for k")
	}
	if r, err := db.Get([]byte("tomb")); err != nil || !r.Tombstone {
		t.Fatalf("tombstone within its grace: Get = %+v, %v", r, err)
	}
}
