package lsm

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// SyncPolicy says when the WAL is fsynced.
type SyncPolicy int

const (
	// SyncAlways fsyncs the WAL before Apply returns: an acknowledged record
	// survives a power cut. Concurrent Apply calls share one fsync.
	SyncAlways SyncPolicy = iota
	// SyncInterval fsyncs the WAL every Options.SyncInterval: a crash may
	// lose the writes of the last interval.
	SyncInterval
	// SyncNone never fsyncs the WAL except when it is rotated or closed: a
	// crash of the machine may lose any write not yet flushed to a table.
	// The death of the process loses none: each commit is written to the
	// WAL file before Apply returns.
	SyncNone
)

// String returns the name ParseSyncPolicy accepts.
func (p SyncPolicy) String() string {
	switch p {
	case SyncAlways:
		return "always"
	case SyncInterval:
		return "interval"
	case SyncNone:
		return "none"
	}
	return fmt.Sprintf("SyncPolicy(%d)", int(p))
}

// ParseSyncPolicy parses "always", "interval" or "none" (case-insensitive).
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "always":
		return SyncAlways, nil
	case "interval":
		return SyncInterval, nil
	case "none":
		return SyncNone, nil
	}
	return 0, fmt.Errorf("lsm: unknown sync policy %q (want always, interval or none)", s)
}

// Defaults used by Options.Validate.
const (
	DefaultSyncInterval    = 100 * time.Millisecond
	DefaultMemtableBytes   = 4 << 20
	DefaultTombstoneGrace  = 240 * time.Hour
	DefaultBlockCacheBytes = 8 << 20
	DefaultRetryBackoff    = 100 * time.Millisecond
	DefaultRetryBackoffMax = 5 * time.Second
)

// Options configure a DB. The zero value of every field except Dir is
// valid and selects the default.
type Options struct {
	// Dir is the directory holding the WAL, the tables and the manifest.
	// Required.
	Dir string
	// FS is the file system; nil means the OS file system.
	FS FS
	// Sync is the WAL sync policy; the default, SyncAlways, makes Apply
	// return only after its WAL record is fsynced.
	Sync SyncPolicy
	// SyncInterval is the fsync period under SyncInterval; default 100ms.
	SyncInterval time.Duration
	// MemtableBytes bounds the memtable; a full memtable is frozen and
	// flushed to a table in the background. Default 4 MiB.
	MemtableBytes int64
	// TombstoneGrace is how long a tombstone is kept before compaction may
	// drop it (and then only when no older table can hold the key).
	// Default 10 days.
	TombstoneGrace time.Duration
	// TombstoneHorizon, if not nil, further limits the tombstones
	// compaction drops to those whose Version.Counter is below the value it
	// returns. The node returns the HLC counter of the start of the last
	// anti-entropy repair that covered every range, so that no tombstone is
	// dropped before a repair has propagated it. It is called on the
	// compaction goroutine, once by each compaction that reaches the oldest
	// table (not per record), and must not call into the DB. Nil: the
	// grace period alone decides.
	TombstoneHorizon func() uint64
	// Now returns the current time; nil means time.Now. Tests inject a
	// clock to age tombstones.
	Now func() time.Time
	// BlockCacheBytes bounds the cache of data blocks shared by all tables;
	// default 8 MiB, negative disables it.
	BlockCacheBytes int64
	// QuarantineCorrupt makes Open move a table that fails its checks aside
	// (renamed to NNNNNN.sst.quarantine, listed in Stats.Quarantined) and
	// carry on without it, instead of failing. The records it held are then
	// missing (or older versions show) until replicas repair them.
	QuarantineCorrupt bool
	// RetryBackoff is the wait before the first retry after a transient
	// failure (ErrTransient: out of file descriptors, disk full) of the
	// write path, a flush or a compaction; each failed retry doubles it, up
	// to RetryBackoffMax. Default 100ms and 5s: a store recovers within
	// seconds of the cause going away, and a lasting one costs a few
	// failed opens a second.
	RetryBackoff    time.Duration
	RetryBackoffMax time.Duration
	// Logger receives background events (flushes, compactions, errors);
	// nil discards them.
	Logger *slog.Logger
	// OnApply, if not nil, is called once for every record an Apply or a
	// Purge applies, with the version the DB held for key just before (the
	// zero Version if none, or if the key had been purged) and the version
	// it holds now (the record's version; the zero Version for a purge).
	// Tombstones are versions like any other. It is not called for
	// rejected Applies, for Purges that find another version, during WAL
	// replay in Open, or when compaction drops records.
	//
	// It runs on the goroutine that leads the commit (a writer's, not
	// necessarily that of the record's own Apply) while the record is
	// inserted into the memtable, under the lock that orders those inserts with the
	// snapshots of Scan and ScanAt, in commit order, and before the
	// corresponding Apply or Purge returns. So for every snapshot, each
	// call happened either before it (and its record is in the snapshot)
	// or after it (and it is not), and calls for one key chain: each
	// call's prev is the previous call's cur.
	//
	// key is valid only during the call and must not be modified. The hook
	// holds up every write and every read of the memtable while it runs:
	// it must be fast, must not block and must not call into the DB.
	OnApply func(key []byte, prev, cur Version)
}

// Validate fills in defaults and reports invalid values.
func (o *Options) Validate() error {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("lsm: Options.Dir is required"))
	}
	if o.FS == nil {
		o.FS = OSFS{}
	}
	switch o.Sync {
	case SyncAlways, SyncInterval, SyncNone:
	default:
		errs = append(errs, fmt.Errorf("lsm: invalid Options.Sync %d", int(o.Sync)))
	}
	if o.SyncInterval < 0 {
		errs = append(errs, fmt.Errorf("lsm: negative Options.SyncInterval %v", o.SyncInterval))
	} else if o.SyncInterval == 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	if o.MemtableBytes < 0 {
		errs = append(errs, fmt.Errorf("lsm: negative Options.MemtableBytes %d", o.MemtableBytes))
	} else if o.MemtableBytes == 0 {
		o.MemtableBytes = DefaultMemtableBytes
	}
	if o.TombstoneGrace < 0 {
		errs = append(errs, fmt.Errorf("lsm: negative Options.TombstoneGrace %v", o.TombstoneGrace))
	} else if o.TombstoneGrace == 0 {
		o.TombstoneGrace = DefaultTombstoneGrace
	}
	if o.RetryBackoff < 0 || o.RetryBackoffMax < 0 {
		errs = append(errs, fmt.Errorf("lsm: negative Options.RetryBackoff %v or RetryBackoffMax %v", o.RetryBackoff, o.RetryBackoffMax))
	}
	if o.RetryBackoff == 0 {
		o.RetryBackoff = DefaultRetryBackoff
	}
	if o.RetryBackoffMax == 0 {
		o.RetryBackoffMax = max(DefaultRetryBackoffMax, o.RetryBackoff)
	}
	if o.RetryBackoffMax < o.RetryBackoff {
		errs = append(errs, fmt.Errorf("lsm: Options.RetryBackoffMax %v is below RetryBackoff %v", o.RetryBackoffMax, o.RetryBackoff))
	}
	if o.BlockCacheBytes == 0 {
		o.BlockCacheBytes = DefaultBlockCacheBytes
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return errors.Join(errs...)
}
