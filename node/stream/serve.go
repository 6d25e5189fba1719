package stream

import (
	"fmt"
	"time"

	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node/wire"
)

// MaxPageBytes caps the records of one page: large enough that the
// per-request cost is small next to the data, small enough that a page
// fits NATS's 1 MiB max payload with room for framing, and that a
// throttled puller's waits stay short.
const MaxPageBytes = 512 << 10

// Scanner lists a store's records from start (inclusive) in ascending key
// order, newest version only, tombstones included, until fn returns false.
// The records passed to fn belong to fn. *lsm.DB fits through a closure:
//
//	func(start []byte, fn func(lsm.Record) bool) error { return db.Scan(start, nil, fn) }
type Scanner func(start []byte, fn func(lsm.Record) bool) error

// Serve answers req from scan: the records after req.After whose key
// include reports, in key order, up to req.MaxBytes of encoded records
// (capped at MaxPageBytes; at least one record if any matches, even if it
// is larger). It also stops once budget has passed on now's clock since
// the call began, after examining at least one key, so that a page on a
// range where few keys match still returns before the requester's timeout;
// budget <= 0 means no time bound, and now nil means time.Now.
//
// Page.Next is the last key examined and fully handled, so that a request
// with After = Next continues with no key lost or repeated. Page.Done
// means the scan reached the end of the store.
//
// Serve does not check req.Epoch, Gainer or Loser: the caller refuses a
// wrong epoch and derives include from the placement.
func Serve(scan Scanner, req Request, include func(key []byte) bool, budget time.Duration, now func() time.Time) (Page, error) {
	if now == nil {
		now = time.Now
	}
	limit := req.MaxBytes
	if limit <= 0 || limit > MaxPageBytes {
		limit = MaxPageBytes
	}
	var deadline time.Time
	if budget > 0 {
		deadline = now().Add(budget)
	}
	var (
		p       Page
		size    int
		stopped bool
	)
	err := scan(successor(req.After), func(r lsm.Record) bool {
		if include(r.Key) {
			n := wire.RecordLen(&r)
			if len(p.Records) > 0 && size+n > limit {
				stopped = true // r is left for the next page
				return false
			}
			p.Records = append(p.Records, r)
			size += n
		}
		p.Next = r.Key
		if budget > 0 && !now().Before(deadline) {
			stopped = true
			return false
		}
		return true
	})
	if err != nil {
		return Page{}, fmt.Errorf("stream: scan after %q: %w", req.After, err)
	}
	p.Done = !stopped
	return p, nil
}

// successor returns the smallest key after k: k followed by a zero byte
// (nil for nil: from the first key).
func successor(k []byte) []byte {
	if k == nil {
		return nil
	}
	s := make([]byte, len(k)+1)
	copy(s, k)
	return s
}
