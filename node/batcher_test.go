package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kvs-db/kvs/lsm"
)

// fakeTransport serves Request with serve; the other methods do nothing.
// It records every request's op and size in requests (a batch's requests
// counted by its decoded messages).
type fakeTransport struct {
	serve func(ctx context.Context, op string, req []byte) ([]byte, error)

	mu    sync.Mutex
	calls []string // "op:n" per request, n the requests it carried
}

func (f *fakeTransport) Request(ctx context.Context, to, op string, req []byte) ([]byte, error) {
	n := 1
	if op == OpBatch {
		msgs, err := decodeBatch(req)
		if err != nil {
			return nil, fmt.Errorf("fake transport: %w", err)
		}
		n = len(msgs)
	}
	f.mu.Lock()
	f.calls = append(f.calls, fmt.Sprintf("%s:%d", op, n))
	f.mu.Unlock()
	return f.serve(ctx, op, req)
}

func (f *fakeTransport) Handle(string, Handler) (func() error, error) {
	return func() error { return nil }, nil
}
func (f *fakeTransport) Broadcast([]byte) error { return nil }
func (f *fakeTransport) OnBroadcast(func([]byte)) (func() error, error) {
	return func() error { return nil }, nil
}
func (f *fakeTransport) PublishEvent(string, []byte) error { return nil }
func (f *fakeTransport) EventInterest(string) bool         { return false }

func (f *fakeTransport) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

var _ Transport = (*fakeTransport)(nil)

// echo answers a request with "re:" and the request, and a batch with the
// echo of each of its requests.
func echo(op string, req []byte) ([]byte, error) {
	if op != OpBatch {
		return append([]byte("re:"), req...), nil
	}
	msgs, err := decodeBatch(req)
	if err != nil {
		return nil, err
	}
	reps := make([][]byte, len(msgs))
	for i, m := range msgs {
		reps[i] = append([]byte("re:"), m...)
	}
	return encodeBatchReply(reps), nil
}

// gatedBatcher is a batcher over a fakeTransport whose first request
// waits for release, so that the requests sent meanwhile queue.
type gatedBatcher struct {
	*batcher
	tr      *fakeTransport
	release chan struct{}
}

func newGatedBatcher(t *testing.T, inFlight, maxRequests, maxBytes int, serve func(op string, req []byte) ([]byte, error)) *gatedBatcher {
	g := &gatedBatcher{release: make(chan struct{})}
	first := true
	var mu sync.Mutex
	g.tr = &fakeTransport{serve: func(ctx context.Context, op string, req []byte) ([]byte, error) {
		mu.Lock()
		gate := first
		first = false
		mu.Unlock()
		if gate {
			select {
			case <-g.release:
			case <-ctx.Done():
				return nil, fmt.Errorf("%w: %w", ErrUnreachable, ctx.Err())
			}
		}
		return serve(op, req)
	}}
	cfg := Config{RequestTimeout: 2 * time.Second, BatchInFlight: inFlight, MaxBatchRequests: maxRequests, MaxBatchBytes: maxBytes}
	g.batcher = newBatcher(g.tr, &cfg, func(string, int) {})
	t.Cleanup(g.wait)
	return g
}

// queued is the number of requests queued for to and op.
func (b *batcher) queued(to, op string) int {
	q := b.queue(to, op)
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.queue)
}

type callResult struct {
	req, rep string
	err      error
}

// start sends req in the background; its result comes on ch.
func (g *gatedBatcher) start(ctx context.Context, op, req string, ch chan<- callResult) {
	go func() {
		rep, err := g.request(ctx, "n2", op, []byte(req))
		ch <- callResult{req, string(rep), err}
	}()
}

// sendAndQueue sends request "a" of op and waits until it is on the wire
// (holding the one slot), then sends queued and waits until they all wait
// behind it; their results, and a's, come on ch.
func (g *gatedBatcher) sendAndQueue(t *testing.T, ctx context.Context, op string, ch chan<- callResult, queued ...string) {
	t.Helper()
	g.start(ctx, op, "a", ch)
	waitFor(t, 5*time.Second, "a sent", func() bool { return len(g.tr.log()) == 1 })
	for _, r := range queued {
		g.start(ctx, op, r, ch)
	}
	waitFor(t, 5*time.Second, fmt.Sprintf("%v queued", queued), func() bool { return g.queued("n2", op) == len(queued) })
}

// A request that finds a free slot goes at once, on its own; requests
// sent while every slot is taken queue and go as one batch when a reply
// frees a slot, each getting its own reply; a request sent after that
// goes on its own again.
func TestBatcherBatchesWhileInFlight(t *testing.T) {
	g := newGatedBatcher(t, 1, 100, 1<<20, echo)
	ctx := ctxT(t)
	ch := make(chan callResult, 10)
	g.sendAndQueue(t, ctx, OpPut, ch, "b", "c", "d")
	close(g.release)
	for range 4 {
		res := <-ch
		if res.err != nil || res.rep != "re:"+res.req {
			t.Errorf("request %s: reply %q, %v", res.req, res.rep, res.err)
		}
	}
	if rep, err := g.request(ctx, "n2", OpPut, []byte("e")); err != nil || string(rep) != "re:e" {
		t.Errorf("lone request after the batch: %q, %v", rep, err)
	}
	if got, want := g.tr.log(), []string{"put:1", "batch:3", "put:1"}; !slices.Equal(got, want) {
		t.Errorf("messages sent %v, want %v", got, want)
	}
}

// A batch takes at most MaxBatchRequests requests and MaxBatchBytes bytes
// (but always one request, however large); a batch of one goes as the
// request itself.
func TestBatcherBounds(t *testing.T) {
	g := newGatedBatcher(t, 1, 3, 10, echo)
	ctx := ctxT(t)
	ch := make(chan callResult, 10)
	g.start(ctx, OpGet, "first", ch)
	waitFor(t, 5*time.Second, "first sent", func() bool { return len(g.tr.log()) == 1 })
	// In queue order: 4 small ones (count bound 3), then 2 of 5 bytes
	// (bytes bound 10 with the 4th small one), then one of 20 bytes alone.
	reqs := []string{"1", "2", "3", "4", "55555", "66666", "77777777777777777777"}
	for i, r := range reqs {
		g.start(ctx, OpGet, r, ch)
		waitFor(t, 5*time.Second, "queued", func() bool { return g.queued("n2", OpGet) == i+1 })
	}
	close(g.release)
	for range len(reqs) + 1 {
		if res := <-ch; res.err != nil || res.rep != "re:"+res.req {
			t.Errorf("request %s: reply %q, %v", res.req, res.rep, res.err)
		}
	}
	if got, want := g.tr.log(), []string{"get:1", "batch:3", "batch:2", "get:1", "get:1"}; !slices.Equal(got, want) {
		t.Errorf("messages sent %v, want %v", got, want)
	}
}

// A batch that gets no reply fails each of its requests as a lone request
// would fail (ErrUnreachable); a malformed batch reply fails each with
// ErrMalformed.
func TestBatcherBatchFailure(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply func(req []byte) ([]byte, error)
		want  error
	}{
		{"unreachable", func([]byte) ([]byte, error) { return nil, fmt.Errorf("%w: n2 batch: stopped", ErrUnreachable) }, ErrUnreachable},
		{"reply count", func([]byte) ([]byte, error) { return encodeBatchReply([][]byte{{msgOK}}), nil }, ErrMalformed},
		{"not a batch reply", func([]byte) ([]byte, error) { return encodeOK(), nil }, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGatedBatcher(t, 1, 100, 1<<20, func(op string, req []byte) ([]byte, error) {
				if op == OpBatch {
					return tc.reply(req)
				}
				return echo(op, req)
			})
			ctx := ctxT(t)
			ch := make(chan callResult, 10)
			g.sendAndQueue(t, ctx, OpPut, ch, "b", "c")
			close(g.release)
			for range 3 {
				res := <-ch
				switch {
				case res.req == "a" && (res.err != nil || res.rep != "re:a"):
					t.Errorf("lone request a: %q, %v", res.rep, res.err)
				case res.req != "a" && !errors.Is(res.err, tc.want):
					t.Errorf("request %s in the failed batch: %q, %v, want %v", res.req, res.rep, res.err, tc.want)
				}
			}
		})
	}
}

// A queued request whose context ends returns at once with ErrUnreachable
// and is not sent; its neighbours are served.
func TestBatcherRequestGivesUp(t *testing.T) {
	g := newGatedBatcher(t, 1, 100, 1<<20, echo)
	ctx := ctxT(t)
	ch := make(chan callResult, 10)
	g.sendAndQueue(t, ctx, OpPut, ch, "b")
	cctx, cancel := context.WithCancel(ctx)
	g.start(cctx, OpPut, "gone", ch)
	g.start(ctx, OpPut, "c", ch)
	waitFor(t, 5*time.Second, "gone, c queued", func() bool { return g.queued("n2", OpPut) == 3 })
	cancel()
	if res := <-ch; res.req != "gone" || !errors.Is(res.err, ErrUnreachable) || !errors.Is(res.err, context.Canceled) {
		t.Fatalf("first result %+v, want the canceled request failing with ErrUnreachable", res)
	}
	close(g.release)
	for range 3 {
		if res := <-ch; res.err != nil || res.rep != "re:"+res.req {
			t.Errorf("request %s: reply %q, %v", res.req, res.rep, res.err)
		}
	}
	if got, want := g.tr.log(), []string{"put:1", "batch:2"}; !slices.Equal(got, want) {
		t.Errorf("messages sent %v, want %v", got, want)
	}
}

// A request whose reply did not fit in the batch reply (sent empty) is
// sent again on its own.
func TestBatcherReplyTooLarge(t *testing.T) {
	big := bytes.Repeat([]byte("x"), maxBatchReplyBytes/2+1)
	g := newGatedBatcher(t, 1, 100, 1<<20, func(op string, req []byte) ([]byte, error) {
		if op != OpBatch {
			return big, nil
		}
		msgs, err := decodeBatch(req)
		if err != nil {
			return nil, err
		}
		reps := make([][]byte, len(msgs))
		for i := range reps {
			reps[i] = big
		}
		return encodeBatchReply(reps), nil
	})
	ctx := ctxT(t)
	ch := make(chan callResult, 10)
	g.sendAndQueue(t, ctx, OpGet, ch, "b", "c")
	close(g.release)
	for range 3 {
		if res := <-ch; res.err != nil || res.rep != string(big) {
			t.Errorf("request %s: reply of %d bytes, %v", res.req, len(res.rep), res.err)
		}
	}
	if got, want := g.tr.log(), []string{"get:1", "batch:2", "get:1"}; !slices.Equal(got, want) {
		t.Errorf("messages sent %v, want %v", got, want)
	}
}

// With BatchInFlight -1 every request goes on its own, however many are in
// flight.
func TestBatcherDisabled(t *testing.T) {
	g := newGatedBatcher(t, -1, 100, 1<<20, echo)
	ctx := ctxT(t)
	ch := make(chan callResult, 10)
	g.start(ctx, OpPut, "a", ch)
	waitFor(t, 5*time.Second, "a sent", func() bool { return len(g.tr.log()) == 1 })
	g.start(ctx, OpPut, "b", ch)
	if res := <-ch; res.req != "b" || res.err != nil {
		t.Errorf("b while a is in flight: %+v", res)
	}
	close(g.release)
	<-ch
	if got, want := g.tr.log(), []string{"put:1", "put:1"}; !slices.Equal(got, want) {
		t.Errorf("messages sent %v, want %v", got, want)
	}
}

// holdTransport holds the first put request to n2 after arm until release
// is closed, and logs the ops of the messages to n2.
type holdTransport struct {
	Transport
	mu      sync.Mutex
	armed   bool
	release chan struct{}
	ops     []string
}

func (h *holdTransport) arm() chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.armed, h.release, h.ops = true, make(chan struct{}), nil
	return h.release
}

func (h *holdTransport) Request(ctx context.Context, to, op string, req []byte) ([]byte, error) {
	if to == "n2" {
		h.mu.Lock()
		hold := h.armed && op == OpPut
		if hold {
			h.armed = false
		}
		h.ops = append(h.ops, op)
		release := h.release
		h.mu.Unlock()
		if hold {
			<-release
		}
	}
	return h.Transport.Request(ctx, to, op, req)
}

func (h *holdTransport) log() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ops)
}

// Over the in-memory network a coordinator's puts to a replica that is
// slow to answer queue and reach it as one batch; when the replica is
// stopped meanwhile, the batch fails each of its writes as a lone request
// would: the writes are acknowledged by the other replicas, and the
// stopped one gets a hint for each.
func TestClusterBatchedPuts(t *testing.T) {
	h := &holdTransport{}
	c := newTestCluster(t, three, func(cfg *Config) {
		cfg.BatchInFlight = 1
		if cfg.ID == "n1" {
			h.Transport = cfg.Transport
			cfg.Transport = h
		}
	})
	ctx := ctxT(t)
	n1 := c.node("n1")
	put := func(keys ...string) map[string]lsm.Version {
		t.Helper()
		vs := map[string]lsm.Version{}
		for _, k := range keys {
			v, err := n1.Put(ctx, []byte(k), []byte("v-"+k), WriteOptions{})
			if err != nil {
				t.Fatalf("put %s: %v", k, err)
			}
			vs[k] = v
		}
		return vs
	}

	release := h.arm()
	written := put("a0", "a1", "a2", "a3", "a4", "a5")
	waitFor(t, 5*time.Second, "n2's puts queued", func() bool { return n1.rc.b.queued("n2", OpPut) == 5 })
	close(release)
	waitFor(t, 5*time.Second, "n2 holds every write", func() bool {
		for k, v := range written {
			if rec, err := c.node("n2").LocalGet([]byte(k)); err != nil || rec.Version != v {
				return false
			}
		}
		return true
	})
	if got, want := h.log(), []string{OpPut, OpBatch}; !slices.Equal(got, want) {
		t.Errorf("messages to n2 %v, want %v", got, want)
	}

	release = h.arm()
	put("b0", "b1", "b2", "b3")
	waitFor(t, 5*time.Second, "n2's puts queued", func() bool { return n1.rc.b.queued("n2", OpPut) == 3 })
	c.net.Stop("n2")
	close(release)
	waitFor(t, 5*time.Second, "a hint for each write n2 missed", func() bool { return n1.hints.pendingByTarget()["n2"] == 4 })
	// The writes went as one lone put and one batch; after them come only
	// the handoff's attempts to deliver the hints (gossip still shows n2
	// alive), puts or batches of puts that fail. The handoff cannot send
	// before the batch: the batch takes the one slot before the failed
	// lone put returns and its hint is stored.
	got := h.log()
	if len(got) < 2 || !slices.Equal(got[:2], []string{OpPut, OpBatch}) ||
		slices.ContainsFunc(got[2:], func(op string) bool { return op != OpPut && op != OpBatch }) {
		t.Errorf("messages to n2 %v, want put, batch, then only the handoff's puts", got)
	}
	if n := n1.hints.pendingByTarget()["n2"]; n != 4 {
		t.Errorf("%d hints for n2 after the handoff's attempts, want 4", n)
	}
}
