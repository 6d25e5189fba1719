package lsm

import (
	"sync"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of the engine's state and counters.
type Stats struct {
	// MemtableBytes is the approximate size of the mutable memtable.
	MemtableBytes int64
	// MemtableRecords is the number of records in the mutable memtable.
	MemtableRecords int
	// ImmutableMemtables is the number of frozen memtables awaiting flush.
	ImmutableMemtables int
	// Tables is the number of live tables; TableSizes lists their sizes,
	// newest first, and TableBytes is their sum.
	Tables     int
	TableSizes []int64
	TableBytes int64

	// Applies counts applied records (of Apply and ApplyBatch); Rejected
	// counts the records that were not, their version not being newer
	// than the one held (or, in a batch, than another of the same key).
	Applies  uint64
	Rejected uint64
	// Purges counts records dropped by Purge (not the Purge calls that
	// found another version).
	Purges uint64
	// Gets counts point lookups (Get and the lookups of Apply).
	Gets uint64
	// CommitGroups counts WAL writes; each carries one or more records.
	CommitGroups uint64
	// WALBytes counts bytes written to the WAL.
	WALBytes uint64
	// WALSyncs counts WAL fsyncs; WALSyncTime is their total duration and
	// WALSyncMax the longest. WALSyncHist buckets them by duration: bucket
	// i counts syncs shorter than 2^i * 64µs (the last bucket: the rest).
	WALSyncs    uint64
	WALSyncTime time.Duration
	WALSyncMax  time.Duration
	WALSyncHist [SyncHistBuckets]uint64

	// Flushes counts memtables written to tables.
	Flushes uint64
	// Compactions counts compactions; CompactionBytesRead and
	// CompactionBytesWritten are the table bytes they read and wrote.
	Compactions            uint64
	CompactionBytesRead    uint64
	CompactionBytesWritten uint64
	// TableBytesWritten counts every table byte written (flushes and
	// compactions).
	TableBytesWritten uint64
	// ManifestWrites counts manifest rewrites.
	ManifestWrites uint64
	// BlockReads counts table blocks read from the file system.
	BlockReads uint64
	// BlockCacheHits and BlockCacheMisses count data-block lookups in the
	// block cache; BlockCacheBytes is its current size.
	BlockCacheHits   uint64
	BlockCacheMisses uint64
	BlockCacheBytes  int64
	// BloomUseful counts table probes the filter answered "absent";
	// BloomUseless counts probes it let through for a key the table lacked.
	BloomUseful  uint64
	BloomUseless uint64
	// WriteStalls counts memtable rotations that waited for a flush;
	// WriteStallTime is their total and WriteStallMax the longest wait.
	WriteStalls    uint64
	WriteStallTime time.Duration
	WriteStallMax  time.Duration

	// Quarantined lists the tables moved aside as corrupt.
	Quarantined []QuarantinedTable
	// CompactionHalted is true once a compaction met corrupt data without
	// QuarantineCorrupt: nothing is merged any more.
	CompactionHalted bool

	// ReadOnly is the write-path error that made the DB refuse writes for
	// good, or nil.
	ReadOnly error
	// Stalled is the transient error (out of file descriptors, disk full)
	// writes fail with for now, or nil: the DB retries in the background
	// and clears it once writes go through again (DB.Writable).
	Stalled error
	// FlushRetrying and CompactionRetrying are the transient errors the
	// last flush and the last compaction failed with while they are being
	// retried, or nil.
	FlushRetrying      error
	CompactionRetrying error
	// TransientErrors counts transient failures met (of writes,
	// rotations, flushes, compactions, retries included); Recoveries
	// counts stalls of the write path that ended without a restart.
	TransientErrors uint64
	Recoveries      uint64
}

// SyncHistBuckets is the number of buckets of Stats.WALSyncHist.
const SyncHistBuckets = 16

type dbStats struct {
	applies, rejected, purges, gets, commitGroups atomic.Uint64
	walBytes                                      atomic.Uint64
	flushes, compactions, compRead, compWritten   atomic.Uint64
	tableBytesWritten, manifestWrites, blockReads atomic.Uint64
	bloomUseful, bloomUseless                     atomic.Uint64
	transientErrors, recoveries                   atomic.Uint64

	mu        sync.Mutex
	syncs     uint64
	syncTime  time.Duration
	syncMax   time.Duration
	syncHist  [SyncHistBuckets]uint64
	stalls    uint64
	stallTime time.Duration
	stallMax  time.Duration
}

func (s *dbStats) recordSync(d time.Duration) {
	b := 0
	for b < SyncHistBuckets-1 && d >= (64*time.Microsecond)<<b {
		b++
	}
	s.mu.Lock()
	s.syncs++
	s.syncTime += d
	s.syncMax = max(s.syncMax, d)
	s.syncHist[b]++
	s.mu.Unlock()
}

func (s *dbStats) recordStall(d time.Duration) {
	s.mu.Lock()
	s.stalls++
	s.stallTime += d
	s.stallMax = max(s.stallMax, d)
	s.mu.Unlock()
}

// Stats returns a snapshot of the engine's counters and shape.
func (db *DB) Stats() Stats {
	var st Stats
	db.mu.RLock()
	if db.mem != nil {
		st.MemtableBytes = db.mem.bytes
		st.MemtableRecords = db.mem.count
	}
	st.ImmutableMemtables = len(db.imms)
	if db.cur != nil {
		for _, t := range db.cur.tables {
			st.TableSizes = append(st.TableSizes, t.size)
			st.TableBytes += t.size
		}
		st.Tables = len(db.cur.tables)
	}
	db.mu.RUnlock()
	s := &db.stats
	st.Applies = s.applies.Load()
	st.Rejected = s.rejected.Load()
	st.Purges = s.purges.Load()
	st.Gets = s.gets.Load()
	st.CommitGroups = s.commitGroups.Load()
	st.WALBytes = s.walBytes.Load()
	st.Flushes = s.flushes.Load()
	st.Compactions = s.compactions.Load()
	st.CompactionBytesRead = s.compRead.Load()
	st.CompactionBytesWritten = s.compWritten.Load()
	st.TableBytesWritten = s.tableBytesWritten.Load()
	st.ManifestWrites = s.manifestWrites.Load()
	st.BlockReads = s.blockReads.Load()
	st.BloomUseful = s.bloomUseful.Load()
	st.BloomUseless = s.bloomUseless.Load()
	s.mu.Lock()
	st.WALSyncs = s.syncs
	st.WALSyncTime = s.syncTime
	st.WALSyncMax = s.syncMax
	st.WALSyncHist = s.syncHist
	st.WriteStalls = s.stalls
	st.WriteStallTime = s.stallTime
	st.WriteStallMax = s.stallMax
	s.mu.Unlock()
	if db.cache != nil {
		st.BlockCacheHits = db.cache.hits.Load()
		st.BlockCacheMisses = db.cache.misses.Load()
		st.BlockCacheBytes = db.cache.bytes()
	}
	db.qmu.Lock()
	st.Quarantined = append([]QuarantinedTable(nil), db.quarantined...)
	db.qmu.Unlock()
	st.CompactionHalted = db.noCompact.Load()
	st.ReadOnly = db.readOnlyErr()
	st.Stalled = db.stalledErr()
	st.FlushRetrying = db.flushState.get()
	if p := db.compactErr.Load(); p != nil {
		st.CompactionRetrying = *p
	}
	st.TransientErrors = db.stats.transientErrors.Load()
	st.Recoveries = db.stats.recoveries.Load()
	return st
}
