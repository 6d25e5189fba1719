package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvs-db/kvs/lsm"
)

// Errors of the replica client's checks on a reply. Callers branch on them
// where the check's consequence differs (see deliver).
var (
	// errHeldOlder: the replica acknowledged a put holding an older version
	// than the record sent.
	errHeldOlder = errors.New("replica holds an older version than the record sent")
	// errAhead: the reply carries a version more than MaxClockAhead ahead of
	// this node's clock, which the clock did not observe.
	errAhead = errors.New("replica holds a version too far ahead of this node's clock")
)

// replicaClient is the one place a node talks to another node's replica on
// the data path (put, get, hint): the coordinator's writes, reads and read
// repairs, the hint sender and handoff, and anti-entropy's pushes and pulls
// all go through it. For each request it owns the timeout (RequestTimeout,
// within the caller's context), the reply's decoding (an error reply
// becomes a *RemoteError, a stale one a *StaleError), the checks on what the
// replica holds, the clock's observation of the versions it reports, and
// the metric and log line of a failed request. A request refused as stale
// is not counted as a replica error: the replica is healthy, the request
// is planned again.
//
// The node's own replica is not reached through it: callers apply or read
// locally, and use checkHeld and failed for the same checks and counting.
//
// Its put, get and hint requests travel through a batcher: on their own at
// low load, in batches under load.
type replicaClient struct {
	n   *Node
	b   *batcher
	lat latencies // of get replies, per peer: when a read asks one more replica
}

func newReplicaClient(n *Node) *replicaClient {
	// The observers of the three batched operations, looked up once: the
	// hot path observes one per message.
	obs := map[string]prometheus.Observer{}
	for _, op := range []string{OpPut, OpGet, OpHint} {
		obs[op] = n.met.batchRequests.WithLabelValues(op)
	}
	sizes := func(op string, k int) { obs[op].Observe(float64(k)) }
	return &replicaClient{n: n, b: newBatcher(n.tr, &n.cfg, sizes)}
}

// put sends rec, planned at epoch, to replica to and returns the version it
// holds afterwards. req is rec's put request when the caller has encoded it
// already (one encoding for all replicas), else nil. The held version must
// be rec's or newer (errHeldOlder) and within MaxClockAhead of this node's
// clock (errAhead, checked after errHeldOlder; the clock observes it
// otherwise).
func (c *replicaClient) put(ctx context.Context, to string, epoch uint64, rec *lsm.Record, req []byte) (lsm.Version, error) {
	if req == nil {
		req = encodePut(epoch, rec)
	}
	rep, err := c.request(ctx, to, OpPut, req)
	var held lsm.Version
	if err == nil {
		held, _, err = decodeAck(rep)
	}
	if err == nil {
		err = c.checkHeld(held, rec.Version)
	}
	if err != nil {
		c.failed(OpPut, to, err)
	}
	return held, err
}

// checkHeld checks the version a replica acknowledges holding after a put
// of version want (see put), and observes it.
func (c *replicaClient) checkHeld(held, want lsm.Version) error {
	if held.Less(want) {
		return fmt.Errorf("%w: holds %v, older than the write's %v", errHeldOlder, held, want)
	}
	if !c.n.observeReply(held) {
		return fmt.Errorf("%w: holds %v, more than %v ahead", errAhead, held, MaxClockAhead)
	}
	return nil
}

// get reads replica to's record of key, planned at epoch; req is the get
// request when the caller has encoded it already, else nil. found is false
// when the replica holds nothing. The record must be key's, and its version
// within MaxClockAhead of this node's clock (errAhead); the clock observes
// it.
func (c *replicaClient) get(ctx context.Context, to string, epoch uint64, key, req []byte) (rec lsm.Record, found bool, err error) {
	if req == nil {
		req = encodeGet(epoch, key)
	}
	start := time.Now()
	rep, err := c.request(ctx, to, OpGet, req)
	if err == nil {
		c.lat.observe(to, time.Since(start))
		rec, found, err = decodeGetReply(rep)
	}
	if err == nil && found && !bytes.Equal(rec.Key, key) {
		err = fmt.Errorf("%w: reply for key %q", ErrMalformed, rec.Key)
	}
	if err == nil && found && !c.n.observeReply(rec.Version) {
		err = fmt.Errorf("%w: holds %v, more than %v ahead", errAhead, rec.Version, MaxClockAhead)
	}
	if err != nil {
		c.failed(OpGet, to, err)
		return lsm.Record{}, false, err
	}
	return rec, found, nil
}

// hint asks node to to keep rec as a hint for target.
func (c *replicaClient) hint(ctx context.Context, to, target string, rec *lsm.Record) error {
	rep, err := c.request(ctx, to, OpHint, encodeHint(target, rec))
	if err == nil {
		err = decodeOK(rep)
	}
	if err != nil {
		c.failed(OpHint, to, err)
	}
	return err
}

// request sends one request to replica to, bounded by RequestTimeout within
// ctx: put, get and hint requests through the batcher, others (anti-entropy)
// directly. A reply that does not come wraps ErrUnreachable.
func (c *replicaClient) request(ctx context.Context, to, op string, req []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.n.cfg.RequestTimeout)
	defer cancel()
	switch op {
	case OpPut, OpGet, OpHint:
		return c.b.request(ctx, to, op, req)
	}
	return c.n.tr.Request(ctx, to, op, req)
}

// failed counts and logs a failed request of op to replica to (this node's
// own included), unless the replica refused it as planned at a stale
// epoch.
func (c *replicaClient) failed(op, to string, err error) {
	if errors.Is(err, ErrStaleEpoch) {
		return
	}
	c.n.met.replicaErrors.WithLabelValues(op).Inc()
	c.n.log.Debug("replica request failed", "op", op, "replica", to, "err", err)
}
