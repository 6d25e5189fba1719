package lsm

import (
	"errors"
	"fmt"
	"slices"
)

// quarantineSuffix is appended to the name of a table moved aside.
const quarantineSuffix = ".quarantine"

// QuarantinedTable is a table moved aside because it failed a check.
type QuarantinedTable struct {
	// Table is the table's original file name; the file is now
	// Table + ".quarantine".
	Table string
	// Err is the corruption that was found.
	Err string
}

// corruptTable reports the table of t's list that err names, if err is a
// corruption error.
func corruptTable(err error, tables []*table) *table {
	var ce *CorruptionError
	if !errors.As(err, &ce) {
		return nil
	}
	for _, t := range tables {
		if t.name == ce.File {
			return t
		}
	}
	return nil
}

// noteCorruption is called with errors met by reads: with QuarantineCorrupt
// the damaged table is handed to the compaction goroutine to be moved
// aside.
func (db *DB) noteCorruption(err error, tables []*table) {
	if !db.opts.QuarantineCorrupt {
		return
	}
	if t := corruptTable(err, tables); t != nil {
		select {
		case db.qCh <- qReq{t, err}:
		default: // already plenty queued; the next read will ask again
		}
	}
}

// quarantineTable removes t from the table list, records it and renames its
// file aside. It runs on the compaction goroutine.
func (db *DB) quarantineTable(t *table, cause error) error {
	db.qmu.Lock()
	done := slices.ContainsFunc(db.quarantined, func(q QuarantinedTable) bool { return q.Table == t.name })
	db.qmu.Unlock()
	if done {
		return nil
	}
	err := db.install(func(ts []*table) ([]*table, error) {
		i := slices.Index(ts, t)
		if i < 0 {
			return nil, errNotLive
		}
		return slices.Delete(slices.Clone(ts), i, i+1), nil
	}, nil, nil)
	if errors.Is(err, errNotLive) {
		return nil
	}
	if err != nil {
		return err
	}
	db.opts.Logger.Error("lsm: quarantined corrupt table", "table", t.name, "err", cause)
	db.qmu.Lock()
	db.quarantined = append(db.quarantined, QuarantinedTable{Table: t.name, Err: fmt.Sprint(cause)})
	db.qmu.Unlock()
	// Keep the evidence: if the rename were lost in a crash, the next Open
	// would remove the file as an orphan.
	if err := db.fs.Rename(t.path, t.path+quarantineSuffix); err != nil {
		db.opts.Logger.Error("lsm: move quarantined table aside", "table", t.name, "err", err)
	} else if err := db.syncDir(); err != nil {
		db.opts.Logger.Error("lsm: sync dir after quarantine", "table", t.name, "err", err)
	}
	return nil
}

var errNotLive = errors.New("table no longer live")

type qReq struct {
	t   *table
	err error
}

// handleCompactionError decides what a failed compaction means: a corrupt
// input is quarantined (with QuarantineCorrupt) or halts compaction (the
// store keeps serving and taking writes; nothing is merged any more); a
// transient error (transient.go) is recorded and the result is true: the
// caller retries later; any other error is a write-path failure and makes
// the DB read-only.
func (db *DB) handleCompactionError(err error, inputs []*table) (retry bool) {
	if errors.Is(err, errAborted) {
		return false
	}
	if errors.Is(err, ErrCorrupt) {
		if t := corruptTable(err, inputs); t != nil && db.opts.QuarantineCorrupt {
			if qerr := db.quarantineTable(t, err); qerr == nil {
				return false
			} else {
				err = qerr
			}
		} else {
			db.opts.Logger.Error("lsm: compaction met corrupt data; compactions halted", "err", err)
			db.noCompact.Store(true)
			return false
		}
	}
	if isTransient(err) {
		db.stats.transientErrors.Add(1)
		db.compactErr.Store(&err)
		return true
	}
	db.opts.Logger.Error("lsm: compaction failed", "err", err)
	db.setReadOnly(err)
	return false
}

// Check reads every block of every live table and verifies its checksum and
// structure, as a scrubber would. It returns the corruption errors found
// (joined); with QuarantineCorrupt the damaged tables are then moved aside
// in the background.
func (db *DB) Check() error {
	db.closeMu.RLock()
	if db.closed {
		db.closeMu.RUnlock()
		return ErrClosed
	}
	db.mu.RLock()
	v := db.cur
	v.ref()
	db.mu.RUnlock()
	db.closeMu.RUnlock()
	defer v.unref()
	var errs []error
	for _, t := range v.tables {
		var n uint64
		it := t.iterUncached()
		for ; it.valid(); it.next() {
			n++
		}
		err := it.err
		if err == nil && n != t.count {
			err = corruptf(t.name, 0, "table holds %d records, its footer says %d", n, t.count)
		}
		if err != nil {
			db.noteCorruption(err, v.tables)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
