package node

import (
	"log/slog"
	"time"

	"github.com/kvs-db/kvs/lsm"
)

// openHintDB opens the hint store: an lsm.DB in dir that syncs every write,
// since a hint is how a returning replica gets the writes it missed (read
// repair covers only keys that are read). The tombstones of delivered hints
// need no grace period: they guard nothing beyond this store, and the
// engine drops a tombstone only where no older table can hold the key.
func openHintDB(dir string, clock Clock, log *slog.Logger) (hintDB, error) {
	return lsm.Open(lsm.Options{
		Dir:            dir,
		Sync:           lsm.SyncAlways,
		TombstoneGrace: time.Minute,
		Now:            clock.Now,
		Logger:         log.With("store", "hints"),
	})
}
