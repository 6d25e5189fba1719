package node

import (
	"log/slog"

	"github.com/kvs-db/kvs/lsm"
)

// openHintDB opens the hint store: an lsm.DB in dir that syncs every write,
// since a hint is the only copy a returning replica will get of a write it
// missed (besides anti-entropy).
func openHintDB(dir string, clock Clock, log *slog.Logger) (hintDB, error) {
	return lsm.Open(lsm.Options{
		Dir:    dir,
		Sync:   lsm.SyncAlways,
		Now:    clock.Now,
		Logger: log.With("store", "hints"),
	})
}
