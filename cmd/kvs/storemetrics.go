package main

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvs-db/kvs/lsm"
)

// storeCollector exports the storage engine's Stats as Prometheus metrics
// (kvs_lsm_*), read afresh at every scrape. It lives here, where the engine
// and the registry meet, so that lsm stays free of Prometheus.
type storeCollector struct {
	stats func() lsm.Stats
	descs map[string]*prometheus.Desc
}

// storeMetric describes one exported metric: its name, help and how it is
// read from a Stats snapshot.
type storeMetric struct {
	name string
	help string
	typ  prometheus.ValueType
	get  func(*lsm.Stats) float64
}

var storeMetrics = []storeMetric{
	{"memtable_bytes", "Bytes in the active memtable.", prometheus.GaugeValue, func(s *lsm.Stats) float64 { return float64(s.MemtableBytes) }},
	{"immutable_memtables", "Frozen memtables waiting to be flushed.", prometheus.GaugeValue, func(s *lsm.Stats) float64 { return float64(s.ImmutableMemtables) }},
	{"tables", "Live SSTables.", prometheus.GaugeValue, func(s *lsm.Stats) float64 { return float64(s.Tables) }},
	{"table_bytes", "Bytes in live SSTables.", prometheus.GaugeValue, func(s *lsm.Stats) float64 { return float64(s.TableBytes) }},
	{"applies_total", "Records applied (newer than the version held).", prometheus.CounterValue, func(s *lsm.Stats) float64 { return float64(s.Applies) }},
	{"rejected_total", "Records refused because a newer or equal version was held.", prometheus.CounterValue, func(s *lsm.Stats) float64 { return float64(s.Rejected) }},
	{"gets_total", "Point reads.", prometheus.CounterValue, func(s *lsm.Stats) float64 { return float64(s.Gets) }},
	{"commit_groups_total", "WAL group commits (one write, one fsync each).", prometheus.CounterValue, func(s *lsm.Stats) float64 { return float64(s.CommitGroups) }},
	{"wal_bytes_total", "Bytes written to the WAL.", prometheus.CounterValue, func(s *lsm.Stats) float64 { return float64(s.WALBytes) }},
	{"flushes_total", "Memtables written to SSTables.", prometheus.CounterValue, func(s *lsm.Stats) float64 { return float64(s.Flushes) }},
	{"compactions_total", "Compactions run.", prometheus.CounterValue, func(s *lsm.Stats) float64 { return float64(s.Compactions) }},
	{"compaction_read_bytes_total", "Bytes read by compactions.", prometheus.CounterValue, func(s *lsm.Stats) float64 { return float64(s.CompactionBytesRead) }},
	{"compaction_written_bytes_total", "Bytes written by compactions.", prometheus.CounterValue, func(s *lsm.Stats) float64 { return float64(s.CompactionBytesWritten) }},
	{"block_cache_hits_total", "Block cache hits.", prometheus.CounterValue, func(s *lsm.Stats) float64 { return float64(s.BlockCacheHits) }},
	{"block_cache_misses_total", "Block cache misses.", prometheus.CounterValue, func(s *lsm.Stats) float64 { return float64(s.BlockCacheMisses) }},
	{"bloom_useful_total", "Table probes a bloom filter answered 'absent' (no block read).", prometheus.CounterValue, func(s *lsm.Stats) float64 { return float64(s.BloomUseful) }},
	{"bloom_useless_total", "Table probes whose bloom filter said 'maybe' for an absent key.", prometheus.CounterValue, func(s *lsm.Stats) float64 { return float64(s.BloomUseless) }},
	{"write_stalls_total", "Writes that waited for a flush.", prometheus.CounterValue, func(s *lsm.Stats) float64 { return float64(s.WriteStalls) }},
	{"write_stall_seconds_total", "Time writes spent waiting for flushes.", prometheus.CounterValue, func(s *lsm.Stats) float64 { return s.WriteStallTime.Seconds() }},
	{"quarantined_tables", "Corrupt tables moved aside; their keys are served by other replicas.", prometheus.GaugeValue, func(s *lsm.Stats) float64 { return float64(len(s.Quarantined)) }},
	{"read_only", "1 when a write-path I/O error has left the store refusing writes until a restart.", prometheus.GaugeValue, func(s *lsm.Stats) float64 {
		return boolValue(s.ReadOnly != nil)
	}},
	{"write_stalled", "1 while writes fail on a transient error (out of file descriptors, disk full) the store retries in the background.", prometheus.GaugeValue, func(s *lsm.Stats) float64 {
		return boolValue(s.Stalled != nil)
	}},
	{"flush_retrying", "1 while flushes fail on a transient error and are retried.", prometheus.GaugeValue, func(s *lsm.Stats) float64 {
		return boolValue(s.FlushRetrying != nil)
	}},
	{"compaction_retrying", "1 while compactions fail on a transient error and are retried.", prometheus.GaugeValue, func(s *lsm.Stats) float64 {
		return boolValue(s.CompactionRetrying != nil)
	}},
	{"transient_errors_total", "Transient write-path failures (out of file descriptors, disk full), retries included.", prometheus.CounterValue, func(s *lsm.Stats) float64 { return float64(s.TransientErrors) }},
	{"write_recoveries_total", "Stalls of the write path that ended without a restart.", prometheus.CounterValue, func(s *lsm.Stats) float64 { return float64(s.Recoveries) }},
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// walSyncDesc is the fsync latency histogram, built from Stats.WALSyncHist.
const walSyncName = "kvs_lsm_wal_fsync_seconds"

func newStoreCollector(stats func() lsm.Stats) *storeCollector {
	c := &storeCollector{stats: stats, descs: make(map[string]*prometheus.Desc, len(storeMetrics)+1)}
	for _, m := range storeMetrics {
		c.descs[m.name] = prometheus.NewDesc("kvs_lsm_"+m.name, m.help, nil, nil)
	}
	c.descs[walSyncName] = prometheus.NewDesc(walSyncName, "Duration of WAL fsyncs.", nil, nil)
	return c
}

// Describe implements prometheus.Collector.
func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	for _, m := range storeMetrics {
		ch <- prometheus.MustNewConstMetric(c.descs[m.name], m.typ, m.get(&s))
	}
	// Bucket i of WALSyncHist counts syncs shorter than 2^i * 64µs; the
	// last one holds the rest, which the +Inf bucket covers.
	buckets := make(map[float64]uint64, lsm.SyncHistBuckets-1)
	var cum uint64
	for i := 0; i < lsm.SyncHistBuckets-1; i++ {
		cum += s.WALSyncHist[i]
		buckets[(time.Duration(64<<i) * time.Microsecond).Seconds()] = cum
	}
	ch <- prometheus.MustNewConstHistogram(c.descs[walSyncName], s.WALSyncs, s.WALSyncTime.Seconds(), buckets)
}
