package lsm

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Compaction is size-tiered: tables are kept in age order, newest first, and
// a run of at least compactionMinRun adjacent tables of similar size (within
// a factor of tierRatio, or all under smallTableBytes) is merged into one
// table that takes the run's place. Each byte is rewritten about once per
// tier, so write amplification grows with log(data/memtable) and stays low;
// the price is space amplification (up to one tier's worth of stale
// versions) and several tables per point read, which the bloom filters
// answer without touching data blocks. If more than maxTables tables build
// up anyway, the newest ones are merged regardless of size.
const (
	compactionMinRun = 4
	compactionMaxRun = 16
	tierRatio        = 4
	smallTableBytes  = 1 << 20
	maxTables        = 12
)

// errAborted stops a compaction when the DB closes.
var errAborted = errors.New("lsm: compaction aborted by Close")

// pickCompaction chooses the run [i, j) of tables (newest first, sizes
// given) to merge, or ok=false.
func pickCompaction(sizes []int64) (i, j int, ok bool) {
	n := len(sizes)
	bestI, bestJ := 0, 0
	for s := 0; s < n; s++ {
		lo, hi := sizes[s], sizes[s]
		e := s + 1
		for e < n && e-s < compactionMaxRun {
			nlo, nhi := min(lo, sizes[e]), max(hi, sizes[e])
			if nhi > smallTableBytes && nhi > tierRatio*nlo {
				break
			}
			lo, hi = nlo, nhi
			e++
		}
		if e-s >= compactionMinRun && e-s > bestJ-bestI {
			bestI, bestJ = s, e
		}
	}
	if bestJ-bestI >= compactionMinRun {
		return bestI, bestJ, true
	}
	if n > maxTables {
		return 0, min(n-maxTables+compactionMinRun, compactionMaxRun), true
	}
	return 0, 0, false
}

// compactOnce runs one compaction if one is due and returns its inputs
// (nil if none was due).
func (db *DB) compactOnce() ([]*table, error) {
	db.mu.RLock()
	v := db.cur
	v.ref()
	db.mu.RUnlock()
	defer v.unref()
	sizes := make([]int64, len(v.tables))
	for k, t := range v.tables {
		sizes[k] = t.size
	}
	i, j, ok := pickCompaction(sizes)
	if !ok {
		return nil, nil
	}
	return v.tables[i:j], db.compactRun(v, i, j)
}

// compactReq asks the background goroutine for a compaction of the tables
// [i, j) of the current version (j < 0: through the oldest).
type compactReq struct {
	i, j int
	done chan error
}

// Compact merges every table into one now, dropping the tombstones past
// their grace period and the purge markers, and returns when it is done.
// Writes go on meanwhile.
func (db *DB) Compact() error {
	return db.compact(0, -1)
}

func (db *DB) compact(i, j int) error {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if err := db.writable(); err != nil {
		return err
	}
	req := compactReq{i, j, make(chan error, 1)}
	select {
	case db.compactCh <- req:
	case <-db.roCh:
		return db.errReadOnly()
	}
	return <-req.done
}

// manualCompact runs a requested compaction on the compaction goroutine.
func (db *DB) manualCompact(req compactReq) ([]*table, error) {
	db.mu.RLock()
	v := db.cur
	v.ref()
	db.mu.RUnlock()
	defer v.unref()
	i, j := req.i, req.j
	if j < 0 || j > len(v.tables) {
		j = len(v.tables)
	}
	if i < 0 || i >= j {
		return nil, nil
	}
	if j-i == 1 && j < len(v.tables) {
		return nil, nil
	}
	return v.tables[i:j], db.compactRun(v, i, j)
}

// dropRule says which records a compaction leaves out.
type dropRule struct {
	bottom  bool  // the merge reaches the oldest table
	nowMs   int64 // Options.Now, in Unix milliseconds
	graceMs int64 // Options.TombstoneGrace
	horizon uint64
}

// dropRule reads the clock and the tombstone horizon for one compaction;
// bottom says whether it reaches the oldest table.
func (db *DB) dropRule(bottom bool) dropRule {
	d := dropRule{bottom: bottom, horizon: math.MaxUint64}
	if !bottom {
		return d
	}
	d.nowMs = db.opts.Now().UnixMilli()
	d.graceMs = db.opts.TombstoneGrace.Milliseconds()
	if db.opts.TombstoneHorizon != nil {
		d.horizon = db.opts.TombstoneHorizon()
	}
	return d
}

// drops reports whether r is left out. Tombstones and purge markers may go
// only when the merge reaches the oldest table: no older table can then
// hold a version they shadow. A tombstone must also be past its grace
// period (its age is read from its HLC counter, milliseconds << 16) and
// below the horizon; a purge marker needs neither, since no replica is to
// learn of a purge.
func (d *dropRule) drops(r *Record) bool {
	switch {
	case !d.bottom:
		return false
	case r.purged:
		return true
	}
	return r.Tombstone && d.nowMs-int64(r.Version.Counter>>16) > d.graceMs && r.Version.Counter < d.horizon
}

// compactRun merges the tables [i, j) of version v into one table that
// takes their place. It runs on the compaction goroutine, so no other
// compaction changes the list meanwhile; flushes only add newer tables.
func (db *DB) compactRun(v *version, i, j int) error {
	inputs := v.tables[i:j]
	drop := db.dropRule(j == len(v.tables))
	start := time.Now()
	var read int64
	for _, t := range inputs {
		read += t.size
	}
	aborted := false
	out, err := db.writeTable(db.newFileNum(), func(w *tableWriter) error {
		srcs := make([]iterator, len(inputs))
		for k, t := range inputs {
			srcs[k] = t.newIter(nil, nil, true) // do not flush the block cache
		}
		var n int
		err := mergeIter(srcs, func(r Record) bool {
			if n++; n%1024 == 0 && isClosed(db.quit) {
				aborted = true
				return false
			}
			if drop.drops(&r) {
				return true
			}
			w.add(&r)
			return true
		})
		if err == nil && aborted {
			err = errAborted
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("lsm: compaction: %w", err)
	}
	// Flushes may have added newer tables meanwhile; the run is still
	// adjacent and still ends at the oldest table if it did.
	err = db.install(func(ts []*table) ([]*table, error) {
		k := 0
		for k < len(ts) && ts[k] != inputs[0] {
			k++
		}
		if k+len(inputs) > len(ts) {
			return nil, errors.New("lsm: internal error: compaction inputs vanished")
		}
		for m, t := range inputs {
			if ts[k+m] != t {
				return nil, errors.New("lsm: internal error: compaction inputs not adjacent")
			}
		}
		nt := append([]*table(nil), ts[:k]...)
		if out != nil {
			nt = append(nt, out)
		}
		return append(nt, ts[k+len(inputs):]...), nil
	}, nil, inputs)
	if out != nil {
		if err != nil && !manifestInPlace(err) {
			out.obsolete.Store(true)
		}
		out.unref()
	}
	if err != nil {
		return err
	}
	db.stats.compactions.Add(1)
	db.stats.compRead.Add(uint64(read))
	var written int64
	if out != nil {
		written = out.size
	}
	db.stats.compWritten.Add(uint64(written))
	db.opts.Logger.Debug("lsm: compacted", "tables", j-i, "read", read, "written", written, "took", time.Since(start))
	return nil
}
