package lsm

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"
)

// Transient failures and how the engine recovers from them.
//
// A write-path error is transient when it says the process or the disk is
// out of a resource that may come back without a restart: EMFILE or ENFILE
// (file descriptors) from opening or creating a file, ENOSPC or EDQUOT
// (space, quota) from creating, writing or renaming one. Every other error
// is fatal and leaves the DB read-only (ErrReadOnly) as before: any failed
// fsync or fdatasync whatever its errno (after one, what the page cache
// holds of the file is unknown), corruption, and errors the engine does not
// know.
//
// What each transient failure leaves, and how it heals:
//
//   - A WAL write that fails may leave part of the group's frames in the
//     file. The records were not inserted into the memtable (that happens
//     only after the write), so no caller saw them. The WAL is cut back to
//     the offset before the write and fsynced; if either fails, the DB
//     turns read-only. So no torn frame, and no complete frame of the
//     failed group, can be replayed later, and no record can follow them in
//     that file.
//   - A memtable rotation (a full memtable freezes and a new WAL starts)
//     that cannot create its WAL changes nothing: the new file is removed
//     and the old WAL stays current.
//
// Either way the write path is then stalled: writes fail with an error
// wrapping ErrTransient (and the cause) instead of growing the memtable
// past its bound. The commit pipeline heals it by moving to a fresh WAL file
// (freezing the memtable if it holds records, exactly as a rotation does),
// after RetryBackoff, doubling up to RetryBackoffMax, and also when a write
// arrives once that wait has passed. A heal that works clears the stall:
// DB.Writable returns nil and writes go on, with no reopen.
//
// A flush or compaction that fails transiently removes its temporary
// table and is retried with the same backoff; writes go on meanwhile until
// the memtables waiting for a flush reach their bound, when the rotation
// fails (transiently) instead of waiting. A manifest already renamed into
// place whose directory sync cannot open the directory is synced again
// until it can: that manifest is what the next Open reads, so the tables
// it names must not be dropped.

// transientErrnos are the errors that make a failure transient.
var transientErrnos = [...]error{syscall.EMFILE, syscall.ENFILE, syscall.ENOSPC, syscall.EDQUOT}

// isTransient reports whether err is a transient write-path failure: one
// of transientErrnos, and not a failed fsync.
func isTransient(err error) bool {
	if err == nil {
		return false
	}
	var se *syncError
	if errors.As(err, &se) || errors.Is(err, ErrReadOnly) || errors.Is(err, ErrClosed) {
		return false
	}
	for _, e := range transientErrnos {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// syncError marks a failed fsync, fdatasync or directory sync. It is
// never transient: after a failed sync the state of the file's data (or
// the directory's entries) on disk is unknown, whatever the errno says.
type syncError struct{ err error }

func (e *syncError) Error() string { return e.err.Error() }
func (e *syncError) Unwrap() error { return e.err }

// transientErr wraps a transient cause for the callers that fail on it.
func transientErr(cause error) error {
	return fmt.Errorf("%w: %w", ErrTransient, cause)
}

// syncDir makes the entries of the DB's directory durable. OSFS opens the
// directory to sync it: EMFILE and ENFILE can only come from that open, so
// nothing was synced and nothing is lost, and they stay transient. Any
// other failure is a failed sync.
func (db *DB) syncDir() error {
	err := db.fs.SyncDir(db.dir)
	if err == nil || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		return err
	}
	return &syncError{err}
}

// backoff is the retry schedule of one background loop.
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(o *Options) backoff { return backoff{min: o.RetryBackoff, max: o.RetryBackoffMax} }

// next returns the wait before the next retry and doubles the one after.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	}
	d := b.cur
	b.cur = min(2*b.cur, b.max)
	return d
}

func (b *backoff) reset() { b.cur = 0 }

// bgState is what the flusher reports of its transient failures: the last
// one (nil once a flush works again) and a channel closed at each failure,
// so that Flush and a stalled rotation stop waiting for a flush that is
// not coming yet.
type bgState struct {
	mu     sync.Mutex
	err    error
	failed chan struct{}
}

// failures returns the channel the next failure closes.
func (s *bgState) failures() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed == nil {
		s.failed = make(chan struct{})
	}
	return s.failed
}

func (s *bgState) get() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// setFlushFailing records a transient flush failure and wakes whoever waits
// for a flush: Flush callers and a rotation stalled on the memtable bound.
func (db *DB) setFlushFailing(err error) {
	db.flushState.mu.Lock()
	db.flushState.err = err
	if db.flushState.failed != nil {
		close(db.flushState.failed)
		db.flushState.failed = nil
	}
	db.flushState.mu.Unlock()
	db.stats.transientErrors.Add(1)
	db.mu.Lock()
	db.immCond.Broadcast()
	db.mu.Unlock()
}

// clearFlushFailing records that a flush worked; it reports whether one
// had failed before.
func (db *DB) clearFlushFailing() bool {
	db.flushState.mu.Lock()
	defer db.flushState.mu.Unlock()
	was := db.flushState.err != nil
	db.flushState.err = nil
	return was
}

// stalledErr returns the transient error the write path is stalled on, or
// nil.
func (db *DB) stalledErr() error {
	if p := db.stalled.Load(); p != nil {
		return *p
	}
	return nil
}

// writeFailed records a failure of the commit pipeline's write path: a transient
// one stalls it until a heal works, any other makes the DB read-only. It
// returns the error for the callers the failure fails.
func (db *DB) writeFailed(err error) error {
	if !isTransient(err) {
		db.setReadOnly(err)
		return err
	}
	db.stats.transientErrors.Add(1)
	if db.stalled.Swap(&err) == nil {
		db.opts.Logger.Warn("lsm: write path failing; refusing writes until it recovers", "err", err)
	}
	db.healAt.Store(time.Now().Add(db.healWait.next()).UnixNano())
	kick(db.stallKick)
	return transientErr(err)
}

// heal tries to get a stalled write path going again by moving to a fresh
// WAL file, if the backoff allows an attempt now. It runs on the leader of
// the commit pipeline.
func (db *DB) heal() {
	if db.stalledErr() == nil || db.readOnlyErr() != nil || time.Now().UnixNano() < db.healAt.Load() {
		return
	}
	if _, err := db.rotate(true); err != nil {
		if isTransient(err) {
			db.stats.transientErrors.Add(1)
			db.stalled.Store(&err)
			db.healAt.Store(time.Now().Add(db.healWait.next()).UnixNano())
			db.opts.Logger.Debug("lsm: write path still failing", "err", err)
			return
		}
		db.setReadOnly(err)
		return
	}
	cause := db.stalledErr()
	db.stalled.Store(nil)
	db.healWait.reset()
	db.stats.recoveries.Add(1)
	db.opts.Logger.Info("lsm: write path recovered", "after", cause, "wal", db.wal.name)
}

// Writable returns nil when writes are expected to go through, else why
// not: ErrClosed, an error wrapping ErrReadOnly (for good), or one wrapping
// ErrTransient (until a background retry works; it also tries when a write
// arrives). A readiness check reports this.
func (db *DB) Writable() error {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closed {
		return ErrClosed
	}
	return db.writeRefusal()
}

// writeRefusal returns the error a write meets now: one wrapping
// ErrReadOnly once the store has failed for good, one wrapping
// ErrTransient while the write path is stalled, nil otherwise.
func (db *DB) writeRefusal() error {
	if db.readOnlyErr() != nil {
		return db.errReadOnly()
	}
	if err := db.stalledErr(); err != nil {
		return transientErr(err)
	}
	return nil
}
