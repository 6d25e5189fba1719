package lsm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
)

// ApplyBatch applies the records of recs as Apply would, one by one — each
// only if its version is newer than the version held for its key — but
// commits them together, and returns how many it applied. Of the records of
// one key in recs only the newest can apply (the first of equal ones); the
// others count as not applied, since one by one they would either lose to
// it or be overwritten by it. So ApplyBatch leaves the state that Apply
// calls for the same records leave, in whatever order. It is meant for
// many records at once (streamed ranges, repairs, hints): the cost of the
// fsync, the commit pipeline's queue and the memtable lock is paid per
// commit, not per record. The DB copies what it keeps of recs.
//
// # What is atomic
//
// Each record, as with Apply: the version check and the write of a key
// never interleave with an Apply, a Purge or another ApplyBatch of that
// key. ApplyBatch cuts its records into commits of up to 4 MiB of WAL
// frames (a single commit for any batch smaller than that; a record larger
// than that is a commit of its own). For each commit it locks the per-key
// lock stripes of the commit's keys (ascending, each once, so that no two
// callers wait for each other in a cycle) from the version checks until the
// records are in the memtable. The records that apply are written to the
// WAL in one write, which group commit may share with concurrent Applies,
// fsynced once under SyncAlways, and inserted into the memtable together:
// a snapshot (Scan, ScanAt) sees all of one commit's records or none of
// them. Options.OnApply is called for each applied record, in recs order,
// with the version held before, as for Apply.
//
// What is not atomic: a batch cut into several commits. A snapshot, a Get
// or a concurrent write may fall between two commits, and a call that fails
// may already have applied the commits before the one that failed; applied
// then counts their records. Nor is a commit atomic across a crash: the
// records of a call that fails, or that a power cut interrupts, may or may
// not survive a restart, each whole or not at all, independently of the
// others. When ApplyBatch returns nil under SyncAlways, every record it
// applied is durable.
//
// # Errors
//
// An invalid record (an empty key, a tombstone with a value, a record too
// large for the WAL) fails the whole call before anything is written, with
// an error naming its index. Otherwise the errors are Apply's: ErrClosed;
// an error wrapping ErrReadOnly once an earlier write-path error left the
// DB read-only; an error wrapping ErrTransient while the write path is
// stalled on a transient error, and for the commit that met one (its
// records are then not in the WAL); any other I/O error on the write path
// fails the call and leaves the DB read-only; an error reading the version
// held (corrupt data) fails the commit it met.
func (db *DB) ApplyBatch(recs []Record) (applied int, err error) {
	return db.applyBatch(recs, nil)
}

// ApplyResult is what Apply returns for one record: the version its key
// holds afterwards, and whether the record applied.
type ApplyResult struct {
	Held    Version
	Applied bool
}

// ApplyBatchResults is ApplyBatch that also reports, in res (of
// len(recs)), what Apply would have returned for each record: whether it
// applied, and the version its key holds once the call is done, which is
// the record's own version when it applied, else the newer version that
// kept it out (the one already held, or that of the newer record of its key
// in recs). It is for callers that acknowledge each record on its own, such
// as a replica answering a batch of writes. res is valid only when the call
// returns nil.
func (db *DB) ApplyBatchResults(recs []Record, res []ApplyResult) (applied int, err error) {
	if len(res) != len(recs) {
		return 0, fmt.Errorf("lsm: ApplyBatchResults: %d results for %d records", len(res), len(recs))
	}
	clear(res)
	applied, err = db.applyBatch(recs, res)
	if err != nil {
		return applied, err
	}
	// A record that newestPerKey set aside lost to a newer one of its key
	// in recs: its key holds what that one's holds.
	for i := range recs {
		if res[i].Held.IsZero() {
			res[i].Held = heldOfKey(recs, res, i)
		}
	}
	return applied, nil
}

// heldOfKey returns the version held for recs[i].Key: the newest recorded
// for a record of that key that went through the version check.
func heldOfKey(recs []Record, res []ApplyResult, i int) Version {
	var v Version
	for j := range recs {
		if j != i && v.Less(res[j].Held) && bytes.Equal(recs[j].Key, recs[i].Key) {
			v = res[j].Held
		}
	}
	return v
}

func (db *DB) applyBatch(recs []Record, res []ApplyResult) (applied int, err error) {
	for i := range recs {
		if err := checkRecord(&recs[i]); err != nil {
			return 0, fmt.Errorf("lsm: batch record %d: %w", i, err)
		}
	}
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if err := db.writable(); err != nil {
		return 0, err
	}
	newest := newestPerKey(recs)
	db.stats.rejected.Add(uint64(len(recs) - len(newest)))
	for len(newest) > 0 {
		n := commitLen(recs, newest)
		k, err := db.applyCommit(recs, newest[:n], res)
		applied += k
		if err != nil {
			return applied, err
		}
		newest = newest[n:]
	}
	return applied, nil
}

// newestPerKey returns the indexes of the records of recs that may apply,
// in recs order: for each key, the record of the newest version, the first
// one if several share it.
func newestPerKey(recs []Record) []int {
	idx := make([]int, len(recs))
	ascending := true
	for i := range idx {
		idx[i] = i
		if i > 0 && bytes.Compare(recs[i-1].Key, recs[i].Key) >= 0 {
			ascending = false
		}
	}
	if ascending {
		// Every key once, as in a page streamed from a scan.
		return idx
	}
	slices.SortFunc(idx, func(a, b int) int {
		if c := bytes.Compare(recs[a].Key, recs[b].Key); c != 0 {
			return c
		}
		if c := recs[b].Version.Compare(recs[a].Version); c != 0 {
			return c // newest first
		}
		return a - b
	})
	// Keep the first of each key's run; w <= i, so idx[w] was read already.
	w := 0
	for i, j := range idx {
		if i > 0 && bytes.Equal(recs[j].Key, recs[idx[w-1]].Key) {
			continue
		}
		idx[w] = j
		w++
	}
	idx = idx[:w]
	slices.Sort(idx)
	return idx
}

// commitLen returns how many of the records recs[idx[0]], recs[idx[1]], ...
// go into one commit: as many as fit in maxCommitBytes of WAL frames, at
// least one.
func commitLen(recs []Record, idx []int) int {
	size := 0
	for n, i := range idx {
		size += frameLen(&recs[i])
		if size > maxCommitBytes && n > 0 {
			return n
		}
	}
	return len(idx)
}

// applyCommit applies the records recs[i] for i in idx, each of a different
// key, as one commit: under the lock stripes of their keys, it checks the
// version held for each and commits those that are newer in one request.
// applyCommit commits the records recs[idx] that are newer than what their
// keys hold. When res is not nil, it sets res[i] for each i in idx to
// Apply's result for recs[i].
func (db *DB) applyCommit(recs []Record, idx []int, res []ApplyResult) (int, error) {
	// Lock the stripes of the keys, each once, in ascending order: every
	// caller that holds more than one took them in that order, so none
	// waits for another in a cycle.
	var locked [stripes]bool
	for _, i := range idx {
		locked[bloomHash(recs[i].Key)%stripes] = true
	}
	for s := range locked {
		if locked[s] {
			db.keyLocks[s].Lock()
		}
	}
	defer func() {
		for s := range locked {
			if locked[s] {
				db.keyLocks[s].Unlock()
			}
		}
	}()

	keep := make([]int, 0, len(idx))
	prevs := make([]Version, 0, len(idx))
	size := 0
	for _, i := range idx {
		prev, err := db.heldVersion(recs[i].Key)
		if err != nil {
			return 0, err
		}
		// Apply's rule: only a newer version applies (never the zero one).
		if prev.Less(recs[i].Version) {
			keep = append(keep, i)
			prevs = append(prevs, prev)
			size += frameLen(&recs[i])
		} else if res != nil {
			res[i].Held = prev
		}
	}
	db.stats.rejected.Add(uint64(len(idx) - len(keep)))
	if len(keep) == 0 {
		return 0, nil
	}
	// One buffer holds the frames, and the records the memtable keeps
	// alias their payloads: the records cost no copy of their own.
	frame := make([]byte, 0, size)
	batch := make([]Record, len(keep))
	for j, i := range keep {
		frame, batch[j] = appendRecordFrame(frame, &recs[i])
	}
	req := &commitReq{kind: reqApply, recs: batch, prevs: prevs, frame: frame}
	if err := db.submit(req); err != nil {
		return 0, err
	}
	db.stats.applies.Add(uint64(len(batch)))
	if res != nil {
		for _, i := range keep {
			res[i] = ApplyResult{Held: recs[i].Version, Applied: true}
		}
	}
	return len(batch), nil
}

// frameLen returns the size of rec's WAL frame.
func frameLen(rec *Record) int {
	return walHeaderLen + uvarintLen(uint64(len(rec.Key))) + len(rec.Key) + valueLen(rec)
}

// valueLen returns the size of appendValue's encoding of rec.
func valueLen(rec *Record) int {
	var b [binary.MaxVarintLen64]byte
	return 1 + 8 + 4 + binary.PutVarint(b[:], rec.Expiry) + len(rec.Value)
}

func uvarintLen(x uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], x)
}

// appendRecordFrame appends rec's WAL frame to dst. It returns the extended
// buffer and a copy of rec whose Key and Value alias the frame's payload,
// which must therefore never be modified.
func appendRecordFrame(dst []byte, rec *Record) ([]byte, Record) {
	start := len(dst)
	dst = append(dst, make([]byte, walHeaderLen)...)
	dst = appendRecord(dst, rec)
	putFrameHeader(dst[start:start+walHeaderLen], dst[start+walHeaderLen:])
	out := *rec
	k := start + walHeaderLen + uvarintLen(uint64(len(rec.Key)))
	out.Key = dst[k : k+len(rec.Key) : k+len(rec.Key)]
	if rec.Value != nil {
		out.Value = dst[len(dst)-len(rec.Value) : len(dst) : len(dst)]
	}
	return dst, out
}
