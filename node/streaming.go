package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node/stream"
	"github.com/kvs-db/kvs/node/topology"
)

// Streaming: the data of a topology change. Every gainer of the pending
// change pulls the keys it receives (package stream): for each range it
// gains, from the member that loses it (join, leave), or, when that member
// is dead (remove, or a loser that stays unreachable), from every other
// current replica of the range. Sources answer only at the change's epoch,
// so they have refused every write planned before it, and their scan sees
// all the writes they took. When a gainer has pulled everything it tells
// the topology (OpStreamed); the last one commits the change. The pull's
// state is persisted in DataDir, so a gainer restarted mid-stream resumes,
// and the work is derived from the stored topology alone.

// OpStream serves one page of a gainer's stream (stream request, stream
// page reply).
const OpStream = "stream"

// streamRun is the gainer's pull in progress, at most one.
type streamRun struct {
	mu     sync.Mutex
	key    string // change epoch and kind it pulls for
	cancel context.CancelFunc
	done   chan struct{}
	puller *stream.Puller
}

// progressEvery is how often a gainer publishes its progress for `kvs ring`.
const progressEvery = 2 * time.Second

// reconcileStreaming starts the pull this node owes in the pending change,
// or stops one the topology no longer asks for.
func (n *Node) reconcileStreaming(ctx context.Context, v *view) {
	c := v.topo.Change
	want := ""
	if c != nil && slices.Contains(c.Gainers, n.self) && !c.Done(n.self) {
		want = fmt.Sprintf("%d/%s", c.Epoch, c.Kind)
	}
	r := &n.streaming
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.key == want && (want == "" || r.running()) {
		return
	}
	n.stopStreamingLocked()
	if want == "" {
		if c == nil {
			n.clearStreamState()
		}
		return
	}
	sctx, cancel := context.WithCancel(ctx)
	r.key, r.cancel, r.done = want, cancel, make(chan struct{})
	done := r.done
	go func() {
		defer close(done)
		n.pull(sctx, v)
	}()
}

// running reports whether the pull's goroutine is still at work (a pull
// that failed ends, and reconcileStreaming starts it again).
func (r *streamRun) running() bool {
	if r.done == nil {
		return false
	}
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// streamRetry is how long a pull that failed waits before it is started
// again.
const streamRetry = 5 * time.Second

// stopStreaming stops the pull in progress, if any, and waits for it.
func (n *Node) stopStreaming() {
	n.streaming.mu.Lock()
	defer n.streaming.mu.Unlock()
	n.stopStreamingLocked()
}

func (n *Node) stopStreamingLocked() {
	r := &n.streaming
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
	r.key, r.cancel, r.done = "", nil, nil
}

// clearStreamState removes a finished change's pull state.
func (n *Node) clearStreamState() {
	if _, err := stream.LoadState(n.cfg.DataDir); errors.Is(err, stream.ErrNoState) {
		return
	}
	p, err := n.newPuller(nil)
	if err == nil {
		err = p.Clear()
	}
	if err != nil {
		n.log.Warn("clear stream state", "err", err)
	}
}

// pull runs this node's transfers of the change in v to completion, then
// marks it streamed in the topology.
func (n *Node) pull(ctx context.Context, v *view) {
	c := v.topo.Change
	transfers := n.transfers(v)
	p, err := n.newPuller(v)
	if err != nil {
		n.log.Error("stream", "err", err)
		return
	}
	n.log.Info("streaming the ranges this node gains", "change", c.Kind, "node", c.Node, "epoch", c.Epoch, "transfers", len(transfers))
	start := time.Now()
	if err := p.Run(ctx, c.Epoch, n.self, transfers); err != nil {
		if ctx.Err() != nil {
			return
		}
		n.log.Error("stream failed; starting it again shortly", "err", err)
		if errors.Is(err, stream.ErrMalformed) {
			// A damaged state file: pulling again from the start is safe,
			// every record applies only if newer.
			if cerr := p.Clear(); cerr != nil {
				n.log.Error("clear stream state", "err", cerr)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(streamRetry):
		}
		return
	}
	pr := p.Progress()
	n.publishProgress(ctx, pr)
	n.log.Info("streamed every range this node gains", "epoch", c.Epoch, "keys", pr.Keys, "bytes", pr.Bytes,
		"took", time.Since(start).Round(time.Millisecond))
	for ctx.Err() == nil {
		sctx, cancel := n.storeCtx(ctx)
		t, rev, err := topology.Propose(sctx, n.cfg.Topology, topology.Command{Op: topology.OpStreamed, Node: n.self})
		cancel()
		if err == nil {
			n.adopt(t, rev)
			return
		}
		if errors.Is(err, topology.ErrNoChange) {
			return // the change ended meanwhile (aborted)
		}
		n.log.Warn("mark streamed", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(n.cfg.GossipInterval):
		}
	}
}

// transfers lists the streams this node runs as a gainer of v's change: one
// per range loser, from the loser itself, or, in a removal, from every other
// live current replica; ranges nobody gives up (a ring smaller than N
// growing) come from every live current replica.
func (n *Node) transfers(v *view) []stream.Transfer {
	var out []stream.Transfer
	for _, tr := range v.place.Transfers() {
		if tr.Gainer != n.self {
			continue
		}
		if v.topo.Change.Kind != topology.KindRemove && tr.Loser != tr.Gainer {
			out = append(out, stream.Transfer{Loser: tr.Loser, Source: tr.Loser})
			continue
		}
		for _, s := range n.otherSources(v, tr.Loser, "") {
			out = append(out, stream.Transfer{Loser: tr.Loser, Source: s})
		}
	}
	return out
}

// otherSources returns the live members of Current other than this node,
// loser and failed: the replicas that may hold loser's keys.
func (n *Node) otherSources(v *view, loser, failed string) []string {
	var out []string
	for _, id := range v.topo.IDs(topology.Normal, topology.Leaving) {
		if id != n.self && id != loser && id != failed && n.mem.alive(id) {
			out = append(out, id)
		}
	}
	return out
}

// newPuller builds the puller of v's change (v nil: only to clear state).
func (n *Node) newPuller(v *view) (*stream.Puller, error) {
	var lastPublish atomic.Int64 // Unix ns; OnProgress runs on every transfer's goroutine
	cfg := stream.Config{
		Dir:            n.cfg.DataDir,
		Request:        n.streamRequest,
		Apply:          n.applyStreamed,
		FallbackAfter:  n.cfg.StreamFallbackAfter,
		Throughput:     max(n.cfg.StreamThroughput, 0),
		PageBytes:      pageBytes(n.cfg.StreamThroughput),
		RequestTimeout: n.cfg.RequestTimeout,
		Logger:         n.log.With("component", "stream"),
	}
	if v != nil {
		cfg.Alternatives = func(loser, failed string) []string {
			if cur := n.view(); cur != nil {
				v = cur
			}
			return n.otherSources(v, loser, failed)
		}
		cfg.OnProgress = func(p stream.Progress) {
			now, last := time.Now().UnixNano(), lastPublish.Load()
			if now-last >= int64(progressEvery) && lastPublish.CompareAndSwap(last, now) {
				n.publishProgress(context.Background(), p)
			}
		}
	}
	return stream.NewPuller(cfg)
}

// pageBytes sizes stream pages to about an eighth of a second of the
// throughput budget (at most stream.MaxPageBytes, at least 4 KiB), so that
// the throttle paces a stream smoothly instead of letting a first page of
// half a megabyte through at once.
func pageBytes(throughput int64) int {
	if throughput <= 0 {
		return stream.MaxPageBytes
	}
	return int(min(max(throughput/8, 4<<10), stream.MaxPageBytes))
}

// streamRequest sends a stream request to source; an unreachable source
// is reported as stream.ErrUnreachable, an error reply as the error.
func (n *Node) streamRequest(ctx context.Context, source string, req []byte) ([]byte, error) {
	rep, err := n.tr.Request(ctx, source, OpStream, req)
	if err != nil {
		if errors.Is(err, ErrUnreachable) {
			return nil, fmt.Errorf("%w: %w", stream.ErrUnreachable, err)
		}
		return nil, err
	}
	if err := replyError(rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// applyStreamed stores a page of streamed records (each only if newer) in
// one batch. A record this node refuses (a version from far in the future,
// a value over its limit) is skipped and logged: it cannot be stored here
// whatever its source, and the store would refuse the batch for it.
func (n *Node) applyStreamed(recs []lsm.Record) error {
	var bytes int
	var keep []lsm.Record // nil while every record is kept
	for i := range recs {
		bytes += len(recs[i].Key) + len(recs[i].Value)
		if err := n.checkRecord(&recs[i]); err != nil {
			n.log.Warn("streamed record refused", "key", recs[i].Key, "err", err)
			if keep == nil {
				keep = append(make([]lsm.Record, 0, len(recs)-1), recs[:i]...)
			}
			continue
		}
		if keep != nil {
			keep = append(keep, recs[i])
		}
		n.clock.observe(recs[i].Version.Counter)
	}
	if keep == nil {
		keep = recs
	}
	if err := n.applyBatch(keep); err != nil {
		return err
	}
	n.met.streamKeys.Add(float64(len(recs)))
	n.met.streamBytes.Add(float64(bytes))
	return nil
}

// publishProgress puts this gainer's progress in the store for `kvs ring`.
func (n *Node) publishProgress(ctx context.Context, p stream.Progress) {
	ctx, cancel := n.storeCtx(ctx)
	defer cancel()
	err := n.cfg.Topology.PutProgress(ctx, topology.Progress{
		Node: n.self, Epoch: p.Epoch, Transfers: p.Transfers, Done: p.Done,
		Keys: p.Keys, Bytes: p.Bytes, UpdatedMs: time.Now().UnixMilli(),
	})
	if err != nil {
		n.log.Debug("publish stream progress", "err", err)
	}
}

// handleStream serves a gainer one page of the keys it receives in place of
// a loser: those this node holds as a current replica. It answers only at
// the change's own epoch (see topo.go: by then it refuses every write
// planned before the change, and its scan sees all it took).
// MaxScanRequests bounds it.
func (n *Node) handleStream(req []byte) []byte {
	done, busy := n.scanSlot(OpStream)
	if busy != nil {
		return busy
	}
	defer done()
	r, err := stream.DecodeRequest(req)
	if err != nil {
		n.met.badRequests.WithLabelValues(OpStream).Inc()
		return encodeError(err)
	}
	v := n.view()
	if v == nil || v.topo.Change == nil || v.topo.Change.Epoch != r.Epoch || v.topo.Epoch != r.Epoch {
		if r.Epoch > n.epoch() {
			n.behind.Store(true) // the gainer knows a newer topology: catch up now
			n.wakeTopology()
		}
		return encodeError(fmt.Errorf("no change begun at epoch %d here (this node is at epoch %d)", r.Epoch, n.epoch()))
	}
	include := func(key []byte) bool {
		return v.place.Streams(v.place.Current.Hash(key), r.Gainer, r.Loser, n.self)
	}
	scan := func(start []byte, fn func(lsm.Record) bool) error { return n.store.Scan(start, nil, fn) }
	page, err := stream.Serve(scan, r, include, n.cfg.RequestTimeout/2, time.Now)
	if err != nil {
		return encodeError(fmt.Errorf("stream: %w", err))
	}
	return page.Encode()
}
