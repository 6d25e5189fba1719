// Package lsm is the storage engine of kvs: a log-structured merge tree of
// versioned records. It is a leaf package; it imports nothing of the
// project.
//
// # Write path
//
// Apply reads the version held for the key and, if the new record is newer,
// commits it, holding a per-key lock (one of 256 stripes) so that the check
// and the write are atomic per key. Commits go through a leader/follower
// queue (commit.go): a writer that finds nobody committing becomes the
// leader and commits on its own goroutine, with no hand-off; writers that
// arrive meanwhile queue up. The leader takes every request waiting (its
// own first), writes their WAL records in one write, fsyncs once (under
// SyncAlways), inserts the records into the memtable, answers the others
// and hands the lead to the first writer queued since: group commit. When
// the memtable reaches Options.MemtableBytes it is frozen, a new WAL file
// is started (the old one is fsynced first, the new one's directory entry
// fsynced), and a background goroutine writes the frozen memtable to a
// table. Writes stall only if two frozen memtables are already waiting.
//
// ApplyBatch takes the same path with many records per request. It keeps
// the newest record of each key in the batch, locks the stripes of all
// their keys (ascending, each once, so that batches never deadlock with
// each other or with Apply), checks each version held, and hands the
// records that are newer to the commit queue as one request: their frames
// in one write, one fsync, one insertion into the memtable. Batches of more
// than 4 MiB of frames are cut into commits of at most that, each locked,
// written and inserted on its own; each record is atomic, the batch as a
// whole is not (see ApplyBatch).
//
// Purge takes the same path: under the per-key lock it checks that the
// version held is the one to purge and commits a purge marker, a record
// that shadows the key's older versions in older tables but reads as no
// record at all (Get: ErrNotFound; Scan skips it; any Apply applies over
// it). A tombstone, by contrast, is a version: only newer writes beat it.
//
// An I/O error on the write path (WAL write or sync, table write, manifest
// update) fails the Apply (or ApplyBatch) that met it. A transient one (out
// of file descriptors, disk or quota full: EMFILE, ENFILE, ENOSPC, EDQUOT,
// never from an fsync) stalls the write path: writes fail with an error
// wrapping ErrTransient until a retry with backoff gets it going again,
// with no reopen; a failed WAL write is cut back out of the WAL first, and
// flushes and compactions are retried (transient.go tells the whole story).
// Any other error leaves the DB read-only: every later write fails with an
// error wrapping ErrReadOnly and the cause. DB.Writable says which holds.
//
// # Read path
//
// Get looks in the memtable, then the frozen memtables (newest first), then
// the tables newest to oldest, and stops at the first hit. A memtable
// answers from its hash index of keys, present or absent, without walking
// its skiplist (so the version check of every Apply walks none). A table is
// skipped when its bloom filter says the key is absent; otherwise the
// in-memory index names the one data block that can hold the key. Scan
// merges the same sources over a snapshot: a copy of the memtable's range,
// the frozen memtables and a reference-counted list of tables, so writes,
// flushes and compactions that run meanwhile are invisible to it.
//
// # WAL format
//
// A WAL file (NNNNNN.log) is a 16-byte header followed by frames, one per
// record:
//
//	header: magic u64 ("vswal01") | format version u32 | crc32c(bytes 0-12) u32
//
//	+-------------+-------------+-------------+---------------------+
//	| length  u32 | crc32c  u32 | hdr crc u32 | payload (length B)  |
//	| of payload  | of payload  | of bytes 0-8|                     |
//	+-------------+-------------+-------------+---------------------+
//
//	payload: keyLen uvarint | key | flags u8 | version.Counter u64 |
//	         version.Node u32 | expiry varint | value (rest)
//
//	flags:   bit 0 tombstone (no value)
//	         bit 1 purge marker (no value; format version 2 on)
//	         other bits: never set; a record with one is corrupt
//
// Integers are little-endian; checksums are CRC-32C (Castagnoli). The
// frame header checksum makes a damaged length detectable before it is
// trusted. A WAL whose format version this code does not know is refused
// with ErrUnsupported; an empty or all-zero WAL (created, never written)
// holds no records.
//
// Format versions (WAL and tables alike): 1, the first; 2 adds the purge
// marker flag. This code writes 2 and reads both; a purge marker in a
// version 1 file is corruption. Code that reads only version 1 treats an
// unknown flag as corruption (and could quarantine a healthy table for
// it), so files that may hold the new flag carry a version it refuses as
// unsupported instead. Once this code has opened a directory, older code
// can no longer open it.
//
// On Open the WAL files not yet in a table are replayed. When a frame fails
// a check, the rest of the file is searched for a valid frame (right after
// the damaged one when its checksummed header gives its length). If there
// is none, the damage is a torn tail — a cut, zeros, or a mix of new and
// stale blocks, which is what a crash in the middle of a write leaves — and
// it is cut off silently, but only in the newest WAL: every older one was
// fsynced before the next was started. If there is one, complete records lie
// beyond the damage, and Open fails with a *CorruptionError (errors.Is
// ErrCorrupt) naming the file and the offset of the bad frame. Zero bytes
// after the last record (preallocated space) end any WAL cleanly. The
// replayed records are written to a table at once and the WAL files
// removed, so a cut tail never ends up in the middle of a log. When the
// only WAL replayed holds no record (as after a Flush and a Close), Open
// starts that WAL again, empty, and leaves the manifest as it is, which
// spares it a manifest update and its fsyncs.
//
// A WAL is preallocated (fallocate) when it is created, so that its
// fdatasyncs need not grow it; Close cuts the space past the last frame
// off again, so that an Open after a clean Close reads only the frames,
// not megabytes of zeros. After a crash the zeros are read and checked.
//
// # SSTable format
//
// A table (NNNNNN.sst) is written once, to NNNNNN.sst.tmp, fsynced, renamed
// and its directory fsynced; it is never modified.
//
//	+--------------+-----+--------------+--------------+-------------+--------+
//	| data block 0 | ... | data block n | filter block | index block | footer |
//	+--------------+-----+--------------+--------------+-------------+--------+
//
//	every block:  contents | crc32c(contents) u32
//
//	data/index block contents (keys prefix-compressed, restart every 16):
//	+---------------------------------------------------------------------+
//	| entry: shared uvarint | unshared uvarint | valueLen uvarint |       |
//	|        key[shared:] | value                                         |
//	| ...                                                                 |
//	| restart offset u32 * numRestarts | numRestarts u32                  |
//	+---------------------------------------------------------------------+
//	data entry value:  flags u8 | counter u64 | node u32 | expiry varint | value
//	                   (flags as in the WAL)
//	index entry:       key = last key of the block,
//	                   value = block offset uvarint | block length uvarint
//
//	filter block: bloom bit array (10 bits per key) | k u8 (7 probes)
//
//	footer (56 bytes):
//	+-----------+-----------+----------+----------+---------+
//	| filterOff | filterLen | indexOff | indexLen | count   |
//	|   u64     |   u64     |   u64    |   u64    |  u64    |
//	+-----------+-----------+----------+----------+---------+
//	| format version u32 | crc32c(bytes 0-44) u32 | magic u64 |
//	+--------------------+------------------------+-----------+
//
// Data blocks are cut at about 4 KiB. Opening a table checks the magic,
// the footer checksum, the format version (1 or 2, as for the WAL; another
// is refused with ErrUnsupported), and the filter and index blocks; every
// data block is checked when read. A failed check is a *CorruptionError naming the table
// and the block's offset; the engine never returns data that failed one.
//
// # Manifest
//
// MANIFEST lists the live tables newest first and the oldest WAL still
// needed. It is rewritten whole through MANIFEST.tmp, fsync, rename and
// directory fsync, so it is always either the old or the new list. Files
// it does not name (tables of an interrupted flush or compaction, replayed
// WALs, temporary files) are removed on Open.
//
// # Compaction
//
// Compaction is size-tiered (see compaction.go): adjacent tables of similar
// size are merged into one that takes their place in the age order. The
// merge keeps the newest version of each key. A tombstone is dropped only
// when it is older than Options.TombstoneGrace (its age is read from its
// version counter, wall-clock milliseconds shifted left by 16) and only
// when the merge includes the oldest table, so that no older table can
// still hold a version it shadows. With Options.TombstoneHorizon, its
// version counter must also be below the horizon, which each such
// compaction reads once: the start of the node's last full anti-entropy
// repair, so that no tombstone goes before a repair has spread it. A purge
// marker is dropped under the oldest-table rule alone, with no grace period,
// since no replica needs to learn of a purge. Size-tiered compaction was
// chosen over leveled for its low write amplification on a write-heavy
// replica store; point reads stay cheap thanks to the per-table bloom
// filters.
//
// # Corruption, quarantine and scrubbing
//
// Every byte of a table, the manifest and the WAL is covered by a checksum
// or a structural check, and a failed check is a *CorruptionError that
// names the file and offset; the engine never returns data that failed
// one. By default a corrupt table makes Open fail. With
// Options.QuarantineCorrupt the table is instead moved aside (renamed to
// NNNNNN.sst.quarantine, dropped from the manifest, listed in
// Stats.Quarantined) and the store serves everything else; a corrupt table
// met later by a read, a compaction or Check is quarantined the same way in
// the background. The keys it held then read as missing, or at an older
// version, until replicas repair them. Without quarantine, a compaction that
// meets corruption stops compacting (Stats.CompactionHalted) but the store
// keeps serving and taking writes. Check reads every block of every table,
// bypassing the block cache.
//
// # Concurrency and files
//
// A LOCK file (flock) keeps a second process out of the directory. Three
// goroutines run per DB: one for the timed jobs of the commit pipeline
// (SyncInterval's WAL sync, retries of a stalled write path), the flusher
// and the compactor; flushes never wait for a compaction. Commits run on
// the writers' goroutines. Data blocks read by
// Get and Scan go through a bounded LRU cache of parsed, checked blocks
// (Options.BlockCacheBytes); compactions and Check bypass it.
//
// # Hooks for anti-entropy
//
// The node keeps hash trees of what it holds (per key range, the XOR of
// hash(key, version) over its records) in step with the store, writes
// included. Options.OnApply is called for every record applied, with the
// version held before and the version held after, on the goroutine leading
// the commit while the record is inserted into the memtable: under the write
// lock of db.mu, which every snapshot takes too. ScanAt calls its atSnapshot
// under that lock (held exclusively) while it takes its snapshot. So every
// OnApply call falls either before a snapshot, with its record in it, or
// after, without: a tree rebuilt from a ScanAt and then fed the OnApply
// deltas that follow its atSnapshot is exactly the tree of the store. A
// purge is a delta too (from the purged version to none); so is a
// tombstone. Records that compaction drops and records replayed from the
// WAL by Open are not: the first were already gone from reads, and after
// a restart the node rebuilds its trees from a scan.
//
// # Expiry
//
// Record.Expiry is stored and returned as is; interpreting it (an expired
// record reads as absent) is the caller's business.
package lsm
