package main

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kvs-db/kvs/lsm"
)

func TestStoreCollector(t *testing.T) {
	db, err := lsm.Open(lsm.Options{Dir: "/db", FS: lsm.NewMemFS()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i, k := range []string{"a", "b", "c"} {
		if _, _, err := db.Apply(lsm.Record{Key: []byte(k), Value: []byte("v"), Version: lsm.Version{Counter: uint64(i + 1), Node: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	// An older version is refused and counted.
	if _, applied, err := db.Apply(lsm.Record{Key: []byte("a"), Version: lsm.Version{Counter: 0, Node: 1}}); err != nil || applied {
		t.Fatalf("older version: applied=%v err=%v", applied, err)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newStoreCollector(db.Stats))
	mfs, err := reg.Gather() // also checks descriptors and metric consistency
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*dto.Metric{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetMetric()[0]
	}
	if len(got) != len(storeMetrics)+1 {
		t.Errorf("%d metrics exported, want %d", len(got), len(storeMetrics)+1)
	}
	for name, want := range map[string]float64{
		"kvs_lsm_applies_total":  3,
		"kvs_lsm_rejected_total": 1,
		"kvs_lsm_flushes_total":  1,
		"kvs_lsm_tables":         1,
		"kvs_lsm_read_only":      0,
	} {
		m, ok := got[name]
		if !ok {
			t.Errorf("%s not exported", name)
			continue
		}
		v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
		if v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
	// Every synced apply's fsync is in the histogram.
	st := db.Stats()
	h := got[walSyncName].GetHistogram()
	if st.WALSyncs == 0 || h.GetSampleCount() != st.WALSyncs {
		t.Fatalf("fsync histogram count %d, want %d (> 0)", h.GetSampleCount(), st.WALSyncs)
	}
	if b := h.GetBucket(); len(b) != lsm.SyncHistBuckets-1 || b[len(b)-1].GetCumulativeCount() > st.WALSyncs {
		t.Fatalf("fsync histogram buckets %v", b)
	}
}
