package lsm

import (
	"fmt"
	"testing"
	"time"
)

func TestStats(t *testing.T) {
	db := openMem(t, NewMemFS(), nil)
	defer db.Close()
	for i := 0; i < 100; i++ {
		mustApply(t, db, put(fmt.Sprintf("k%03d", i), "v", v(uint64(i+1))))
	}
	db.Apply(put("k000", "old", v(0))) // rejected
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		db.Get([]byte(fmt.Sprintf("k%03d", i)))    // present: block reads, then cache hits
		db.Get([]byte(fmt.Sprintf("absent%d", i))) // the filter answers
	}
	st := db.Stats()
	checks := []struct {
		name string
		ok   bool
	}{
		{"Applies", st.Applies == 100},
		{"Rejected", st.Rejected == 1},
		{"Flushes", st.Flushes == 1},
		{"Tables", st.Tables == 1 && len(st.TableSizes) == 1 && st.TableBytes == st.TableSizes[0]},
		{"WALSyncs", st.WALSyncs >= 100 && st.WALSyncTime > 0},
		{"WALSyncHist", sum(st.WALSyncHist[:]) == st.WALSyncs},
		{"CommitGroups", st.CommitGroups == 100},
		{"WALBytes", st.WALBytes > 100*20},
		{"BloomUseful", st.BloomUseful > 90},
		{"BlockCache", st.BlockCacheHits > 0 && st.BlockCacheMisses > 0 && st.BlockCacheBytes > 0},
		{"ManifestWrites", st.ManifestWrites >= 2},
		{"TableBytesWritten", st.TableBytesWritten == uint64(st.TableBytes)},
		{"MemtableBytes", st.MemtableBytes == 0 && st.ImmutableMemtables == 0},
		{"ReadOnly", st.ReadOnly == nil},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s wrong: %+v", c.name, st)
		}
	}
}

func sum(xs []uint64) uint64 {
	var s uint64
	for _, x := range xs {
		s += x
	}
	return s
}

// TestSyncInterval: under SyncInterval an Apply returns before any fsync,
// and the commit pipeline's ticker syncs the WAL soon after.
func TestSyncInterval(t *testing.T) {
	g := &syncGate{FS: NewMemFS(), open: make(chan struct{}), blocked: make(chan struct{})}
	db := openMem(t, g, func(o *Options) { o.Sync = SyncInterval; o.SyncInterval = time.Millisecond })
	defer db.Close()
	// Every WAL sync blocks until the gate opens: Apply must not wait for one.
	mustApply(t, db, put("k", "v", v(1)))
	<-g.blocked // the ticker's WAL sync has started
	close(g.open)
	g.mu.Lock()
	syncs := g.syncs
	g.mu.Unlock()
	if syncs == 0 {
		t.Fatal("no WAL sync")
	}
}
