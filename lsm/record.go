package lsm

import (
	"errors"
	"fmt"
)

// Version orders the writes of one key. Counter is compared first; Node breaks
// ties, so two distinct writes never compare equal unless they come from the
// same node with the same counter (which a node never issues twice).
type Version struct {
	// Counter is a hybrid logical clock reading: wall-clock milliseconds
	// shifted left by 16 bits, or the last counter plus one, whichever is
	// larger.
	Counter uint64
	// Node identifies the node that issued the version.
	Node uint32
}

// Compare returns -1 if v orders before o, 0 if they are equal and +1 if v
// orders after o.
func (v Version) Compare(o Version) int {
	switch {
	case v.Counter < o.Counter:
		return -1
	case v.Counter > o.Counter:
		return 1
	case v.Node < o.Node:
		return -1
	case v.Node > o.Node:
		return 1
	}
	return 0
}

// Less reports whether v orders strictly before o.
func (v Version) Less(o Version) bool { return v.Compare(o) < 0 }

// IsZero reports whether v is the zero version, which orders before every
// version a node issues and stands for "no record".
func (v Version) IsZero() bool { return v == Version{} }

// String renders v as "counter.node", the form used in HTTP headers.
func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Counter, v.Node) }

// Record is one versioned write of one key. A tombstone records a delete: it
// has no value and shadows every older version of the key.
type Record struct {
	Key       []byte
	Value     []byte
	Version   Version
	Tombstone bool
	// purged marks a purge marker, which the store keeps in place of a
	// record dropped by Purge: it shadows the older versions of the key
	// still in older tables, but reads as no record at all. Its Version is
	// the one purged. Get and Scan never return one. (Beside Tombstone, it
	// takes no room: Record stays 80 bytes.)
	purged bool
	// Expiry is a Unix time in milliseconds after which the record reads as
	// absent; zero means never.
	Expiry int64
}

// Sentinel errors callers branch on. Errors returned by the package wrap
// them with context (file, offset, key).
var (
	// ErrNotFound means the store holds no record for the key, not even a
	// tombstone.
	ErrNotFound = errors.New("lsm: not found")
	// ErrCorrupt means stored data failed a checksum or a structural check.
	// The wrapping error names the file and the offset.
	ErrCorrupt = errors.New("lsm: corrupt data")
	// ErrClosed means the DB has been closed.
	ErrClosed = errors.New("lsm: closed")
	// ErrReadOnly means an earlier I/O error on the write path left the DB
	// refusing writes; it must be reopened. Failed fsyncs, corruption and
	// errors the engine does not know to be temporary do this.
	ErrReadOnly = errors.New("lsm: read-only after write error")
	// ErrTransient means a write failed for a reason that may pass without a
	// restart: the process is out of file descriptors (EMFILE, ENFILE) or
	// the disk or quota is full (ENOSPC, EDQUOT). The DB retries in the
	// background and takes writes again once it can (DB.Writable); the
	// wrapped error says what failed.
	ErrTransient = errors.New("lsm: write path failing for now")
)

// ErrUnsupported means a file carries a format version this code does not
// know; it is refused rather than guessed at.
var ErrUnsupported = errors.New("lsm: unsupported format version")

// CorruptionError reports data that failed a checksum or a structural check.
// It unwraps to ErrCorrupt.
type CorruptionError struct {
	// File is the base name of the damaged file.
	File string
	// Offset is the byte offset of the damaged record or block.
	Offset int64
	// Reason says which check failed.
	Reason string
}

// Error implements error.
func (e *CorruptionError) Error() string {
	return fmt.Sprintf("lsm: corrupt data: file %s offset %d: %s", e.File, e.Offset, e.Reason)
}

// Unwrap returns ErrCorrupt so that errors.Is(err, ErrCorrupt) holds.
func (e *CorruptionError) Unwrap() error { return ErrCorrupt }

func corruptf(file string, off int64, format string, args ...any) error {
	return &CorruptionError{File: file, Offset: off, Reason: fmt.Sprintf(format, args...)}
}
