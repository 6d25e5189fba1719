package node

import (
	"errors"
	"sync"

	"github.com/kvs-db/kvs/lsm"
)

// applyParallel is how many records of a batch are applied at once: enough
// for the store to group their WAL writes and fsyncs.
const applyParallel = 64

// applyBatch applies recs to the store (each only if newer), several at a
// time, and returns the first error. Records the caller has not validated
// are its own business: applyBatch does not check them.
func (n *Node) applyBatch(recs []lsm.Record) error {
	var (
		wg   sync.WaitGroup
		sem  = make(chan struct{}, applyParallel)
		mu   sync.Mutex
		errs []error
	)
	for i := range recs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, _, err := n.store.Apply(recs[i]); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// replyError returns the error an error or stale reply carries, nil for any
// other reply.
func replyError(b []byte) error {
	if len(b) == 0 || (b[0] != msgError && b[0] != msgStale) {
		return nil
	}
	r := reader{b: b}
	return r.start(0)
}
