package node

import (
	"fmt"

	"github.com/kvs-db/kvs/lsm"
)

// applyBatchRecords is how many records one store commit of applyBatch
// carries: a commit holds the key locks of all its records until its fsync,
// so client writes to those keys wait for it; 256 records keep that wait at
// one fsync while a stream page of 512 KiB still costs only a dozen.
const applyBatchRecords = 256

// applyBatch applies recs to the store, each only if its version is newer
// than the one held for its key (of several records of one key, only the
// newest can apply), applyBatchRecords at a time with Store.ApplyBatch: one
// WAL write and, under SyncAlways, one fsync per chunk, rather than an
// Apply per record. Each record is applied atomically, the batch as a whole is not:
// after an error some records may be stored and others not, which a retry
// of the same records (replays apply only if newer) makes whole. The
// records must be valid (the caller checks them with checkRecord): one the
// store refuses fails the whole batch, and nothing is written.
func (n *Node) applyBatch(recs []lsm.Record) error {
	for len(recs) > 0 {
		chunk := recs[:min(len(recs), applyBatchRecords)]
		recs = recs[len(chunk):]
		if _, err := n.store.ApplyBatch(chunk); err != nil {
			return fmt.Errorf("node: apply %d records: %w", len(chunk), err)
		}
	}
	return nil
}
