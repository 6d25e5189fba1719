package node

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// batcher carries the replica client's requests to other nodes, a batch
// per flush: requests to the same peer and operation that are in flight at
// once travel as one message, and their replies as one.
//
// For each peer and operation at most Config.BatchInFlight messages are in
// flight. A request that finds a free slot is sent at once, on its own and
// in the caller's goroutine, exactly as without batching: a lone request
// waits for nothing. A request that finds every slot taken queues; when a
// message's reply comes, the slot takes everything queued (up to
// Config.MaxBatchRequests requests and Config.MaxBatchBytes bytes) and sends
// it as the next message: one request on its own, several as a batch
// (wire.go). Under load the batches grow by themselves, and the number of
// messages, and of NATS writes and wake-ups, per request falls.
//
// Each request keeps its own context: one whose context ends returns at
// once, as a lone request would (an error wrapping ErrUnreachable and the
// context's error); a batch lives until the latest deadline of its
// requests, or until every one of them has given up. A batch that gets no
// reply fails each of its requests with the error a lone request would
// get (ErrUnreachable for a peer that does not answer); a reply to one
// request of a batch (stale, error, overload) is that request's alone.
type batcher struct {
	tr          Transport
	timeout     time.Duration // the deadline of a request whose context has none
	inFlight    int           // messages in flight per peer and operation; < 0: no batching
	maxRequests int
	maxBytes    int
	sizes       func(op string, n int) // observes the requests of each message sent

	mu     sync.Mutex
	queues map[queueKey]*sendQueue
	wg     sync.WaitGroup // goroutines sending queued batches
}

type queueKey struct{ to, op string }

// sendQueue is the state of one peer and operation.
type sendQueue struct {
	to, op   string
	mu       sync.Mutex
	inFlight int
	queue    []*queuedReq
}

// States of a queued request.
const (
	reqQueued    int32 = iota
	reqTaken           // in a batch being sent: its result comes on done
	reqAbandoned       // its caller gave up before a batch took it
)

type queuedReq struct {
	ctx   context.Context
	req   []byte
	state atomic.Int32
	call  *batchCall // set before the request is taken
	done  chan reqResult
}

type reqResult struct {
	rep []byte
	err error
}

// batchCall is one message in flight for several requests.
type batchCall struct {
	ctx     context.Context
	cancel  context.CancelFunc
	waiting atomic.Int32 // requests whose callers still wait
}

// abandon records that one request's caller gave up; the message is
// canceled when all have.
func (c *batchCall) abandon() {
	if c.waiting.Add(-1) == 0 {
		c.cancel()
	}
}

func newBatcher(tr Transport, cfg *Config, sizes func(op string, n int)) *batcher {
	return &batcher{
		tr: tr, timeout: cfg.RequestTimeout, inFlight: cfg.BatchInFlight,
		maxRequests: cfg.MaxBatchRequests, maxBytes: cfg.MaxBatchBytes,
		sizes: sizes, queues: map[queueKey]*sendQueue{},
	}
}

// request sends req to node to's handler for op and returns its reply, like
// Transport.Request, on its own or in a batch.
func (b *batcher) request(ctx context.Context, to, op string, req []byte) ([]byte, error) {
	if b.inFlight < 0 {
		return b.tr.Request(ctx, to, op, req)
	}
	q := b.queue(to, op)
	q.mu.Lock()
	if q.inFlight < b.inFlight {
		// A free slot means nothing is queued: go at once.
		q.inFlight++
		q.mu.Unlock()
		b.sizes(op, 1)
		rep, err := b.tr.Request(ctx, to, op, req)
		if next := b.next(q); next != nil {
			b.wg.Add(1)
			go b.run(q, next)
		}
		return rep, err
	}
	r := &queuedReq{ctx: ctx, req: req, done: make(chan reqResult, 1)}
	q.queue = append(q.queue, r)
	q.mu.Unlock()
	select {
	case res := <-r.done:
		return res.rep, res.err
	case <-ctx.Done():
		if !r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			r.call.abandon()
		}
		return nil, fmt.Errorf("%w: %s %s: %w", ErrUnreachable, to, op, ctx.Err())
	}
}

// queue returns the send queue of to and op.
func (b *batcher) queue(to, op string) *sendQueue {
	k := queueKey{to, op}
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queues[k]
	if q == nil {
		q = &sendQueue{to: to, op: op}
		b.queues[k] = q
	}
	return q
}

// next is called when a message of q has its reply: it takes the next
// batch from the queue, keeping the slot, or frees the slot and returns
// nil when nothing is queued.
func (b *batcher) next(q *sendQueue) []*queuedReq {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.queue) == 0 {
		q.inFlight--
		return nil
	}
	call := &batchCall{}
	call.ctx, call.cancel = context.WithCancel(context.Background())
	// The taker holds one reference while it takes, so that callers giving
	// up meanwhile cannot cancel the call before it is complete.
	call.waiting.Store(1)
	var batch []*queuedReq
	size, i := 0, 0
	for ; i < len(q.queue); i++ {
		r := q.queue[i]
		if len(batch) == b.maxRequests || (len(batch) > 0 && size+len(r.req) > b.maxBytes) {
			break
		}
		r.call = call
		call.waiting.Add(1)
		if !r.state.CompareAndSwap(reqQueued, reqTaken) {
			call.waiting.Add(-1)
			continue // its caller gave up
		}
		batch = append(batch, r)
		size += len(r.req)
	}
	rest := copy(q.queue, q.queue[i:])
	clear(q.queue[rest:])
	q.queue = q.queue[:rest]
	call.abandon()       // the taker's reference
	if len(batch) == 0 { // every request queued had given up
		q.inFlight--
		return nil
	}
	return batch
}

// run sends batch, then each next batch of q, until q has nothing queued.
func (b *batcher) run(q *sendQueue, batch []*queuedReq) {
	defer b.wg.Done()
	for batch != nil {
		b.send(q, batch)
		batch = b.next(q)
	}
}

// send sends the requests of batch as one message and hands each its
// result.
func (b *batcher) send(q *sendQueue, batch []*queuedReq) {
	call := batch[0].call
	defer call.cancel()
	b.sizes(q.op, len(batch))
	if len(batch) == 1 {
		r := batch[0]
		rep, err := b.tr.Request(r.ctx, q.to, q.op, r.req)
		r.done <- reqResult{rep, err}
		return
	}
	// The message lives as long as its longest-lived request, or until
	// every request has given up (abandon cancels call.ctx).
	deadline := time.Time{}
	reqs := make([][]byte, len(batch))
	for i, r := range batch {
		d, ok := r.ctx.Deadline()
		if !ok {
			d = time.Now().Add(b.timeout)
		}
		if d.After(deadline) {
			deadline = d
		}
		reqs[i] = r.req
	}
	ctx, cancel := context.WithDeadline(call.ctx, deadline)
	defer cancel()
	rep, err := b.tr.Request(ctx, q.to, OpBatch, encodeBatch(reqs))
	var reps [][]byte
	if err == nil {
		reps, err = decodeBatchReply(rep, len(batch))
	}
	if err != nil {
		err = fmt.Errorf("batch of %d: %w", len(batch), err)
		for _, r := range batch {
			r.done <- reqResult{nil, err}
		}
		return
	}
	for i, r := range batch {
		if len(reps[i]) == 0 {
			// Its reply did not fit in the batch's: ask again alone.
			reps[i], err = b.tr.Request(r.ctx, q.to, q.op, r.req)
		}
		r.done <- reqResult{reps[i], err}
		err = nil
	}
}

// wait waits for the goroutines sending queued batches: each ends when
// its batches have their replies or their requests' deadlines pass.
func (b *batcher) wait() { b.wg.Wait() }
