package node

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/kvs-db/kvs/lsm"
)

// ErrStoreUnwritable means this node's own store refuses writes: for now
// (out of file descriptors, disk full: the store retries and recovers by
// itself) or until a restart (a failed fsync, corruption).
var ErrStoreUnwritable = errors.New("node: store cannot write")

// WritableStore is a Store that can say whether writes go through now;
// *lsm.DB is one. A Store that is not is taken to be always writable.
type WritableStore interface {
	// Writable returns nil when writes are expected to go through, else
	// why not (lsm.DB.Writable).
	Writable() error
}

// StoreWritable returns nil when this node's own store takes writes, else
// an error wrapping ErrStoreUnwritable whose text says why in words a
// client may see: the class of the cause ("too many open files", "no space
// left on device"), never a file name or path. /readyz reports it: while
// it fails, writes through this node cannot reach the replica it holds.
func (n *Node) StoreWritable() error {
	ws, ok := n.store.(WritableStore)
	if !ok {
		return nil
	}
	err := ws.Writable()
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrStoreUnwritable, storeCause(err))
}

// storeCause describes a store error without its paths: the operating
// system's words for its errno, or what the store's sentinel says, and
// whether it lasts until a restart.
func storeCause(err error) string {
	cause := "I/O error"
	var errno syscall.Errno
	switch {
	case errors.Is(err, lsm.ErrClosed):
		return "closed"
	case errors.As(err, &errno):
		cause = errno.Error()
	case errors.Is(err, lsm.ErrCorrupt):
		cause = "corrupt data"
	}
	if errors.Is(err, lsm.ErrReadOnly) {
		return cause + " (read-only until restarted)"
	}
	return cause
}

// storeWriteErr marks a store write error that says the store refuses
// writes, so that callers can tell it from other failures.
func storeWriteErr(err error) error {
	if errors.Is(err, lsm.ErrTransient) || errors.Is(err, lsm.ErrReadOnly) {
		return fmt.Errorf("%w: %w", ErrStoreUnwritable, err)
	}
	return err
}
