package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Starting JetStream on a first start.
//
// A server whose JetStream store is empty bootstraps a new meta group when
// JetStream starts: its Raft peers are the servers it is routed to at that
// instant, and it expects max(2, peers, configured routes) servers. It
// campaigns at once, and it grants its vote to any candidate. nats-server
// starts JetStream before it dials its routes, so a new server started
// with JetStream knows no peer but itself: two of them started together
// next to a running cluster (or as many as they expect) elect a meta
// leader of their own, with none of the cluster's metadata, and members of
// the running cluster that are still in their first Raft term follow it.
//
// So on a first start the server starts without JetStream and starts it
// once its routes cover the cluster: routed to at least one server, and to
// every server its routed peers are routed to, for joinStable. Its meta
// group then starts with every running server as a peer and expects all of
// them; a candidate with an empty log wins only with the votes of all of
// them, which members with a log refuse.
//
// A brand-new cluster (every store empty, so no peer names a meta leader)
// forms one group of all its servers the same way, and there the first
// leader needs the vote of every server: servers that started JetStream
// far apart (a seed that was not listening yet is redialled a second
// later) would wait out Raft's election timeout, 4 to 9 s. So there a
// server also waits for routes to as many servers as it has seeds (other
// than itself), all routed to each other, so that the servers of a cluster
// started together start JetStream together.
//
// Starting JetStream on a running server leaves a window of milliseconds
// in which it answers JetStream API requests, from any server, before its
// meta group runs (see enableJetStream). The server's own KV operations
// wait until its routed peers run JetStream too (settle), so that a new
// cluster's servers do not send requests into each other's windows.

const (
	// joinPoll is how often a server waiting to start JetStream looks at
	// its routes.
	joinPoll = 20 * time.Millisecond
	// joinStable is how long the routes must cover the cluster, in the
	// peers' replies too, before JetStream starts: when two servers dial
	// each other at once, one of the two routes is dropped, and at times
	// both are, until the next dial a second later.
	joinStable = 200 * time.Millisecond
	// statsEvery is how often the servers are asked for their statistics
	// while JetStream waits, and at once when this server's routes change.
	// Every server answers every request, and computing the answer is not
	// free: asked every joinPoll by several new servers, a loaded machine
	// answered too late for the answers to count.
	statsEvery = 250 * time.Millisecond
	// statsMaxAge is how old a request may be for its reply to count: a
	// reply describes the server when it answered. Replies take
	// milliseconds, more on a loaded machine.
	statsMaxAge = time.Second
	// statszPingSubject asks every server for its statistics (routes and
	// JetStream meta group included), in the system account.
	statszPingSubject = "$SYS.REQ.SERVER.PING.STATSZ"
	// statszBroadcastSubject, with the server's ID and no reply subject,
	// asks a server to broadcast its statistics to every server.
	statszBroadcastSubject = "$SYS.REQ.SERVER.%s.STATSZ"
	// joinReadySubject, in the system account, carries the name of a
	// server whose JetStream waits and whose routes cover the cluster.
	joinReadySubject = "kvs.bus.jetstream.ready"
)

// Variables so that tests can shorten them.
var (
	// joinMeshTimeout is how long a server waiting to start JetStream
	// waits, once it has its first route, for routes to every server its
	// peers are routed to. Routes to a running cluster form in
	// milliseconds (a peer that is not listening yet is redialled every
	// second); what takes longer is a peer routed to a server this one
	// cannot reach. After it, JetStream starts with the peers it has.
	joinMeshTimeout = 10 * time.Second
	// joinWarnInterval is how often a server waiting to start JetStream
	// warns that it has no route at all.
	joinWarnInterval = 30 * time.Second
)

// freshJetStream reports whether the JetStream store in dir holds no meta
// group state, so that JetStream would bootstrap a new meta group. It
// looks where nats-server keeps the group's peers:
// <dir>/jetstream/<system account>/_js_/_meta_/peers.idx; the server
// bootstraps when it cannot read that file.
func freshJetStream(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, server.JetStreamStoreDir, SystemAccount, "_js_", "_meta_", "peers.idx"))
	return err != nil
}

// checkStoreDir checks that JetStream can use dir, as JetStream itself
// would when it starts: the directory exists or can be made, and takes
// files.
func checkStoreDir(dir string) error {
	d := filepath.Join(dir, server.JetStreamStoreDir)
	if err := os.MkdirAll(d, 0o750); err != nil {
		return fmt.Errorf("JetStream directory: %w", err)
	}
	f, err := os.CreateTemp(d, "_test_")
	if err != nil {
		return fmt.Errorf("JetStream directory: %w", err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// jetStreamConfig returns the JetStream configuration the server would
// start with from opts, as server.Start builds it.
func jetStreamConfig(opts *server.Options) *server.JetStreamConfig {
	return &server.JetStreamConfig{
		StoreDir:     opts.StoreDir,
		SyncInterval: opts.SyncInterval,
		SyncAlways:   opts.SyncAlways,
		Strict:       !opts.NoJetStreamStrict,
		MaxMemory:    opts.JetStreamMaxMemory,
		MaxStore:     opts.JetStreamMaxStore,
		Domain:       opts.JetStreamDomain,
		CompressOK:   true,
		UniqueTag:    opts.JetStreamUniqueTag,
	}
}

// meshView is what a server waiting to start JetStream knows of the
// cluster.
type meshView struct {
	// peers are the routed peers.
	peers []string
	// missing are the servers this one must still be routed to: routed
	// peers that did not answer, and servers the answering peers are
	// routed to that this one is not. Sorted.
	missing []string
	// leaders are the meta leaders the peers name (several while they
	// disagree), sorted; empty when no peer runs JetStream with a leader.
	leaders []string
	// starting are the answering peers that have JetStream on but not
	// running clustered yet: waiting for routes, or setting it up. Sorted.
	starting []string
	// unmeshed are the answering peers not routed to every other server
	// this one knows (its peers and itself). Sorted.
	unmeshed []string
}

// ready reports whether JetStream can start: routes to every server the
// peers know, and, when no peer names a meta leader (a new cluster), to
// at least seeds servers, all routed to each other, so that they all see
// the cluster complete at about the same moment.
func (v meshView) ready(seeds int) bool {
	if len(v.peers) == 0 || len(v.missing) > 0 {
		return false
	}
	return len(v.leaders) > 0 || (len(v.peers) >= seeds && len(v.unmeshed) == 0)
}

// viewMesh builds the view from the routed peers and the statistics the
// servers sent (this server's own reply is ignored).
func viewMesh(self string, routed []string, replies []server.ServerStatsMsg) meshView {
	v := meshView{peers: routed}
	answered := make(map[string]bool)
	for _, r := range replies {
		name := r.Server.Name
		if name == self {
			continue
		}
		answered[name] = true
		js := r.Stats.JetStream
		if r.Server.JetStreamEnabled() && (js == nil || js.Meta == nil) {
			v.starting = append(v.starting, name)
		}
		var theirs []string
		for _, rt := range r.Stats.Routes {
			theirs = append(theirs, rt.Name)
			if rt.Name != "" && rt.Name != self && !slices.Contains(routed, rt.Name) {
				v.missing = append(v.missing, rt.Name)
			}
		}
		for _, k := range append([]string{self}, routed...) {
			if k != name && !slices.Contains(theirs, k) {
				v.unmeshed = append(v.unmeshed, name)
				break
			}
		}
		if js != nil && js.Meta != nil && js.Meta.Leader != "" {
			v.leaders = append(v.leaders, js.Meta.Leader)
		}
	}
	for _, p := range routed {
		if !answered[p] {
			v.missing = append(v.missing, p)
		}
	}
	slices.Sort(v.missing)
	v.missing = slices.Compact(v.missing)
	slices.Sort(v.leaders)
	v.leaders = slices.Compact(v.leaders)
	slices.Sort(v.starting)
	slices.Sort(v.unmeshed)
	return v
}

// statsPoller asks every server for its statistics, over the system
// account, and keeps each server's latest reply; it also hears which
// servers say they are ready to start JetStream (joinReadySubject).
type statsPoller struct {
	nc       *nats.Conn
	sub      *nats.Subscription
	readySub *nats.Subscription
	inbox    string

	mu     sync.Mutex
	latest map[string]statsReply // by server name
	ready  map[string]bool       // servers that said they are ready

	// Used by the asking goroutine only.
	askedAt time.Time // last request
	routed  []string  // routed peers at the last request
}

// statsReply is a server's statistics and when they were asked for.
type statsReply struct {
	asked time.Time
	msg   server.ServerStatsMsg
}

// newStatsPoller subscribes to the replies; close it when done.
func (b *Bus) newStatsPoller() (*statsPoller, error) {
	nc, err := b.sysConn()
	if err != nil {
		return nil, err
	}
	p := &statsPoller{nc: nc, inbox: nats.NewInbox(), latest: make(map[string]statsReply), ready: make(map[string]bool)}
	p.sub, err = nc.Subscribe(p.inbox+".*", func(m *nats.Msg) {
		// The last token of the reply subject is when it was asked for.
		ns, err := strconv.ParseInt(m.Subject[strings.LastIndexByte(m.Subject, '.')+1:], 10, 64)
		var r statsReply
		if err != nil || json.Unmarshal(m.Data, &r.msg) != nil {
			return
		}
		r.asked = time.Unix(0, ns)
		p.mu.Lock()
		defer p.mu.Unlock()
		if old, ok := p.latest[r.msg.Server.Name]; !ok || old.asked.Before(r.asked) {
			p.latest[r.msg.Server.Name] = r
		}
	})
	if err != nil {
		return nil, err
	}
	p.readySub, err = nc.Subscribe(joinReadySubject, func(m *nats.Msg) {
		p.mu.Lock()
		p.ready[string(m.Data)] = true
		p.mu.Unlock()
	})
	if err != nil {
		_ = p.sub.Unsubscribe()
		return nil, err
	}
	return p, nil
}

// ask sends a request to every server.
func (p *statsPoller) ask() error {
	return p.nc.PublishRequest(statszPingSubject, fmt.Sprintf("%s.%d", p.inbox, time.Now().UnixNano()), nil)
}

// replies returns the latest reply of each server to a request sent
// within statsMaxAge.
func (p *statsPoller) replies() []server.ServerStatsMsg {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []server.ServerStatsMsg
	for _, r := range p.latest {
		if time.Since(r.asked) <= statsMaxAge {
			out = append(out, r.msg)
		}
	}
	return out
}

// allReady reports whether each of the servers has said it is ready.
func (p *statsPoller) allReady(servers []string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range servers {
		if !p.ready[s] {
			return false
		}
	}
	return true
}

// answeredSince reports whether each of the servers has answered a
// request sent at or after t.
func (p *statsPoller) answeredSince(servers []string, t time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range servers {
		if r, ok := p.latest[s]; !ok || r.asked.Before(t) {
			return false
		}
	}
	return true
}

func (p *statsPoller) close() {
	_ = p.sub.Unsubscribe()
	_ = p.readySub.Unsubscribe()
}

// otherSeeds returns how many distinct seeds are not this server's own
// route address.
func (b *Bus) otherSeeds() int {
	var others []string
	for _, s := range b.cfg.Seeds {
		if s != b.advert && s != b.clusterA && !slices.Contains(others, s) {
			others = append(others, s)
		}
	}
	return len(others)
}

// startJetStreamJoined starts JetStream on a server whose store is empty
// once its routes cover the cluster (meshView.ready), or ctx ends first.
// With no route at all it waits as long as it takes (alone, its meta
// group could elect no leader anyway) and warns every joinWarnInterval;
// once routed, it waits at most joinMeshTimeout for the rest. Then it
// holds this server's KV operations until the peers have started
// JetStream too (settle).
func (b *Bus) startJetStreamJoined(ctx context.Context, jsCfg *server.JetStreamConfig) {
	defer close(b.jsWaited)
	t0 := time.Now()
	b.log.Info("JetStream waits for routes to the cluster before it starts: its store is empty, and a new meta group must count the running servers",
		slog.Any("seeds", b.cfg.Seeds))
	poll, err := b.newStatsPoller()
	if err != nil {
		if !errors.Is(err, ErrClosed) {
			b.log.Error("JetStream did not start: cannot ask the peers", slog.Any("err", err))
		}
		return
	}
	defer poll.close()
	if !b.awaitMesh(ctx, poll, t0) {
		return
	}
	if err := enableJetStream(b.srv, jsCfg); err != nil {
		b.log.Error("JetStream did not start", slog.Any("err", err))
		return
	}
	// The peers learned of this server before it ran JetStream, and place
	// bucket replicas only on servers whose statistics show JetStream's
	// configuration; the server would send them on its own within
	// seconds. A statistics request without a reply subject makes it
	// broadcast them now, and again once the peers run JetStream (a route
	// that reconnects in between makes a peer forget them).
	b.announceJetStream(ctx, poll)
	b.settle(ctx, poll)
	b.announceJetStream(ctx, poll)
	close(b.jsRunning)
	b.log.Info("JetStream started", slog.Duration("after", time.Since(t0).Round(time.Millisecond)))
}

// announceJetStream makes this server broadcast its statistics, JetStream
// included, to every server.
func (b *Bus) announceJetStream(ctx context.Context, poll *statsPoller) {
	if err := poll.nc.Publish(fmt.Sprintf(statszBroadcastSubject, b.srv.ID()), nil); err != nil && ctx.Err() == nil {
		b.log.Warn("could not announce JetStream to the peers", slog.Any("err", err))
	}
}

// askServers sends a statistics request when statsEvery has passed since
// the last one, or the routed peers have changed since; a failure is
// logged at debug (the replies then age out, and the wait goes on).
func (b *Bus) askServers(ctx context.Context, poll *statsPoller, routed []string) {
	if time.Since(poll.askedAt) < statsEvery && slices.Equal(routed, poll.routed) {
		return
	}
	poll.askedAt, poll.routed = time.Now(), routed
	if err := poll.ask(); err != nil && ctx.Err() == nil {
		b.log.Debug("ask servers for statistics", slog.Any("err", err))
	}
}

// awaitMesh waits until the routes cover the cluster, or ctx ends
// (false). The servers that wait at the same time start together: each
// says so on joinReadySubject once its own routes have covered the
// cluster for joinStable (its peers confirming in their replies), and
// starts once every peer that waits too has said so. A new cluster's
// first meta leader needs the votes of all its servers, and Raft's first
// vote requests go out 0.1 to 0.8 s after JetStream starts: a server that
// started later than that would make the election wait out its timeout,
// 4 to 9 s.
func (b *Bus) awaitMesh(ctx context.Context, poll *statsPoller, t0 time.Time) bool {
	tick := time.NewTicker(joinPoll)
	defer tick.Stop()
	var routedAt, readyAt, saidAt time.Time
	nextWarn := t0.Add(joinWarnInterval)
	seeds := b.otherSeeds()
	for {
		if routed := b.RoutedPeers(); len(routed) > 0 {
			if routedAt.IsZero() {
				routedAt = time.Now()
			}
			v := viewMesh(b.cfg.NodeID, routed, poll.replies())
			switch {
			case !v.ready(seeds):
				readyAt = time.Time{}
			case readyAt.IsZero():
				readyAt = time.Now()
			}
			stable := !readyAt.IsZero() && poll.answeredSince(routed, readyAt.Add(joinStable))
			if stable && time.Since(saidAt) >= statsEvery {
				saidAt = time.Now()
				if err := poll.nc.Publish(joinReadySubject, []byte(b.cfg.NodeID)); err != nil && ctx.Err() == nil {
					b.log.Debug("say ready to start JetStream", slog.Any("err", err))
				}
			}
			if stable && poll.allReady(v.starting) {
				b.log.Info("starting JetStream: routed to every server of the cluster",
					slog.Any("peers", v.peers), slog.Any("meta_leader", v.leaders),
					slog.Duration("waited", time.Since(t0).Round(time.Millisecond)))
				return true
			}
			if time.Since(routedAt) >= joinMeshTimeout {
				b.log.Warn("starting JetStream without routes to every server of the cluster",
					slog.Any("peers", v.peers), slog.Any("missing", v.missing), slog.Any("unmeshed", v.unmeshed),
					slog.Any("starting", v.starting), slog.Int("seeds", seeds), slog.Any("meta_leader", v.leaders),
					slog.Duration("waited", time.Since(t0).Round(time.Millisecond)))
				return true
			}
			b.askServers(ctx, poll, routed)
		} else if now := time.Now(); now.After(nextWarn) {
			b.log.Warn("JetStream not started: no route to any seed yet",
				slog.Any("seeds", b.cfg.Seeds), slog.Duration("waited", now.Sub(t0).Round(time.Second)))
			nextWarn = now.Add(joinWarnInterval)
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// settle waits, at most joinMeshTimeout, until every routed peer that
// runs JetStream runs it clustered. Servers of a new cluster start
// JetStream within milliseconds of each other, and a JetStream API request
// that reaches a server while it sets JetStream up is answered "not
// enabled for account" and trips a data race in nats-server (see
// enableJetStream); this server's KV operations wait for settle.
func (b *Bus) settle(ctx context.Context, poll *statsPoller) {
	deadline := time.Now().Add(joinMeshTimeout)
	tick := time.NewTicker(joinPoll)
	defer tick.Stop()
	for {
		routed := b.RoutedPeers()
		v := viewMesh(b.cfg.NodeID, routed, poll.replies())
		if len(v.starting) == 0 && len(v.missing) == 0 {
			return
		}
		b.askServers(ctx, poll, routed)
		if time.Now().After(deadline) {
			b.log.Warn("JetStream started; peers still starting theirs",
				slog.Any("starting", v.starting), slog.Any("missing", v.missing))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// enableJetStream starts JetStream on a running server, then enables it
// for the application account.
//
// The account is left out of the server's own start of JetStream on
// purpose. The server answers JetStream API requests (from any server of
// the cluster, over the routes) from the moment it starts JetStream, but
// answers them as a clustered server only once its meta group runs; in
// between, a request for an account with JetStream would be served as on
// a server of its own: a bucket created there, outside the meta group, or
// "no such bucket" for one that exists (seen in this package's tests). For
// an account without JetStream it answers "JetStream not enabled for
// account" (503), which KV retries. With an empty store there is nothing
// of the account's to recover first.
//
// The window remains, and nats-server reads the meta group's state there
// without a lock (getJetStreamCluster) while setting it up: the race
// detector reports a request handled in it. settle keeps a new cluster's
// own requests out of it.
func enableJetStream(srv *server.Server, jsCfg *server.JetStreamConfig) error {
	if err := srv.EnableJetStream(jsCfg); err != nil {
		return err
	}
	if err := enableAppAccount(srv); err != nil {
		return err
	}
	return checkJetStream(srv, nil)
}

// enableAppAccount enables JetStream for the application account of a
// server that runs JetStream.
func enableAppAccount(srv *server.Server) error {
	acc, err := srv.LookupAccount(AppAccount)
	if err != nil {
		return fmt.Errorf("look up account %s: %w", AppAccount, err)
	}
	if err := acc.EnableJetStream(appJetStreamLimits(), nil); err != nil {
		return fmt.Errorf("JetStream for account %s: %w", AppAccount, err)
	}
	return nil
}

// appJetStreamLimits are the application account's JetStream limits: none
// of its own (-1), the server's apply. They are what jetStreamAccount's
// configuration gives.
func appJetStreamLimits() map[string]server.JetStreamAccountLimits {
	return map[string]server.JetStreamAccountLimits{"": {
		MaxMemory: -1, MaxStore: -1, MaxStreams: -1, MaxConsumers: -1, MaxAckPending: -1,
		MemoryMaxStreamBytes: -1, StoreMaxStreamBytes: -1,
	}}
}

// waitJetStream returns once JetStream runs on this server. While it
// starts on a first start (startJetStreamJoined) it waits, until ctx ends
// (an error wrapping ctx's) or the start ends without JetStream (the bus
// closed, or JetStream failed to start).
func (b *Bus) waitJetStream(ctx context.Context) error {
	if b.jetStreamRunning() {
		return nil
	}
	select {
	case <-b.jsRunning:
		return nil
	case <-b.jsWaited:
		if b.jetStreamRunning() {
			return nil
		}
		b.mu.Lock()
		closed := b.closed
		b.mu.Unlock()
		if closed {
			return ErrClosed
		}
		return errors.New("JetStream did not start on this server (see the log)")
	case <-ctx.Done():
		return fmt.Errorf("JetStream is starting on this server: %w", ctx.Err())
	}
}

// jetStreamRunning reports whether JetStream runs on this server, the
// application account included.
func (b *Bus) jetStreamRunning() bool {
	select {
	case <-b.jsRunning:
		return true
	default:
		return false
	}
}
