package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Account and user names of the embedded server.
const (
	// AppAccount is the account kvs traffic runs in.
	AppAccount = "KVS"
	// SystemAccount is the NATS system account (`nats server list`).
	SystemAccount = "SYS"
	// AppUser is the nodes' own user, with every right in the application
	// account; its password is the cluster secret. See [WatchUser] for the
	// user that only watches.
	AppUser = "kvs"
	// SystemUser is the user of the system account that may ask the
	// servers for their monitoring data (`nats server list`), and nothing
	// more; its password is [Config.SystemPassword].
	SystemUser = "sys"
	// routeUser is the user routes authenticate as when a secret is set.
	routeUser = "route"
	// nodeSystemUser is the nodes' own user in the system account (see
	// users.go); its password is the cluster secret.
	nodeSystemUser = "kvs-sys"
)

var (
	// ErrUnreachable is wrapped by request errors that mean the peer did
	// not answer: no responders (no node subscribed: the peer is down or
	// not routed to us), timeout or context deadline (it is paused, slow or
	// partitioned), or a closed connection (this node is shutting down).
	ErrUnreachable = errors.New("bus: unreachable")

	// ErrPayloadTooLarge is wrapped when a message exceeds the max payload;
	// nothing was sent.
	ErrPayloadTooLarge = errors.New("bus: payload too large")

	// ErrClosed is wrapped by operations on a closed Bus.
	ErrClosed = errors.New("bus: closed")
)

// Bus is one node's embedded NATS server and its in-process connection to
// it. All methods are safe for concurrent use.
type Bus struct {
	cfg      Config
	log      *slog.Logger
	logs     *slogAdapter
	srv      *server.Server
	nc       *nats.Conn
	subjects Subjects
	advert   string              // advertised route address
	clusterA string              // actual route listen address
	clientU  string              // client URL for local external clients
	js       jetstream.JetStream // nil when JetStream is off
	cert     certificate         // under TLS, what handshakes present

	// jsRunning is closed once JetStream runs: at Start, or when a first
	// start has waited for routes (startJetStreamJoined). For that wait,
	// jsWait stops it and jsWaited is closed when it has ended, JetStream
	// started or not; both nil when JetStream started with the server.
	jsRunning chan struct{}
	jsWait    context.CancelFunc
	jsWaited  chan struct{}

	sysMu sync.Mutex
	sysNC *nats.Conn // system-account connection, opened on first use

	handlers sync.WaitGroup // running subscription handlers

	mu     sync.Mutex
	subs   map[*nats.Subscription]struct{}
	closed bool

	closeOnce sync.Once
	closeErr  error
}

// Start validates cfg, starts the embedded server with routes to the seeds,
// waits until it accepts connections, and connects to it in-process. It
// does not wait for routes: see [Bus.WaitRoutes]. With
// [Config.JetStreamDir] set, JetStream runs when Start returns, except on a
// first start (no meta group state in the directory), where it starts once
// the routes cover the cluster (see [Config.JetStreamDir]).
func Start(cfg Config) (*Bus, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = discardLogger()
	}
	b := &Bus{
		cfg:      cfg,
		log:      log.With(slog.String("node", cfg.NodeID)),
		subjects: Subjects{Cluster: cfg.Cluster},
		subs:     make(map[*nats.Subscription]struct{}),
	}

	// A random cluster port is picked before the server starts, because
	// the advertised address must name it; in the moment between picking
	// and listening another socket may take it, so try a few.
	attempts := 1
	if cfg.ClusterPort == -1 {
		attempts = 3
	}
	// A first start waits for routes before it starts JetStream.
	deferJS := cfg.JetStreamDir != "" && freshJetStream(cfg.JetStreamDir)
	var (
		srv   *server.Server
		jsCfg *server.JetStreamConfig
		err   error
	)
	for range attempts {
		srv, jsCfg, err = b.startServer(deferJS)
		// Only a port taken in the meantime is worth another port.
		if err == nil || !strings.Contains(err.Error(), "listen") {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	b.srv = srv
	if a := srv.ClusterAddr(); a != nil {
		b.clusterA = net.JoinHostPort(localHost(cfg.Host), strconv.Itoa(a.Port))
	}
	if a, ok := srv.Addr().(*net.TCPAddr); ok {
		scheme := "nats://"
		if cfg.TLS != nil {
			scheme = "tls://"
		}
		b.clientU = scheme + net.JoinHostPort(localHost(cfg.Host), strconv.Itoa(a.Port))
	}

	nopts := []nats.Option{
		nats.InProcessServer(srv),
		nats.Name(cfg.NodeID),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50 * time.Millisecond),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			b.log.Warn("nats connection error", slog.String("subject", subj), slog.Any("err", err))
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				b.log.Warn("nats connection lost", slog.Any("err", err))
			}
		}),
	}
	// As kvs also with no secret (an empty password), where a client that
	// gives no user is the watch user.
	nopts = append(nopts, nats.UserInfo(AppUser, cfg.Secret))
	nc, err := nats.Connect("", nopts...)
	if err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("bus: connect to embedded server: %w", err)
	}
	b.nc = nc
	if cfg.JetStreamDir != "" {
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			srv.Shutdown()
			srv.WaitForShutdown()
			return nil, fmt.Errorf("bus: JetStream context: %w", err)
		}
		b.js = js
	}
	jetStreamState := "off"
	switch {
	case jsCfg != nil:
		jetStreamState = "waiting for routes"
		ctx, cancel := context.WithCancel(context.Background())
		b.jsRunning, b.jsWait, b.jsWaited = make(chan struct{}), cancel, make(chan struct{})
		go b.startJetStreamJoined(ctx, jsCfg)
	case cfg.JetStreamDir != "":
		jetStreamState = "running"
		b.jsRunning = make(chan struct{})
		close(b.jsRunning)
	}
	if w := checkAdvertiseName(cfg.TLS, b.advert); w != "" {
		b.log.Warn(w)
	}
	b.log.Info("nats started",
		slog.String("cluster", cfg.Cluster),
		slog.String("client_url", b.clientU),
		slog.String("cluster_addr", b.clusterA),
		slog.String("advertise", b.advert),
		slog.Any("seeds", cfg.Seeds),
		slog.Bool("auth", cfg.Secret != ""),
		slog.Bool("tls", cfg.TLS != nil),
		slog.String("jetstream", jetStreamState),
		slog.String("jetstream_dir", cfg.JetStreamDir))
	return b, nil
}

// startServer starts the embedded server and waits until it listens. It
// sets b.advert. With deferJS the server starts without JetStream, and
// startServer returns the configuration to start it with later.
func (b *Bus) startServer(deferJS bool) (*server.Server, *server.JetStreamConfig, error) {
	cfg := b.cfg
	if deferJS {
		// What JetStream would check when it starts, checked now, so that
		// Start fails instead of a node running without JetStream.
		if err := checkStoreDir(cfg.JetStreamDir); err != nil {
			return nil, nil, fmt.Errorf("bus: start nats server %s: %w", cfg.NodeID, err)
		}
	}
	clusterPort := cfg.ClusterPort
	if clusterPort == -1 {
		p, err := freePort(cfg.Host)
		if err != nil {
			return nil, nil, fmt.Errorf("bus: pick cluster port: %w", err)
		}
		clusterPort = p
	}
	b.advert = cfg.Advertise
	if b.advert == "" {
		b.advert = net.JoinHostPort(defaultAdvertiseHost(cfg.Host), strconv.Itoa(clusterPort))
	}
	opts, err := serverOptions(cfg, clusterPort, b.advert, deferJS, &b.cert)
	if err != nil {
		return nil, nil, err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("bus: new nats server %s: %w", cfg.NodeID, err)
	}
	if deferJS {
		// NewServer, told that JetStream is on, has made this server a
		// JetStream server in its own list of JetStream servers and in the
		// INFO its routes announce; stream placement needs both, and
		// starting JetStream later does neither (a server started without
		// it and enabled later is never chosen for a replica while it is
		// the meta leader). Start reads JetStream from these options,
		// which the server keeps: turned off now, JetStream waits for
		// EnableJetStream. It stays off in the options; nats-server reads
		// it after Start only for leaf nodes and health checks, which kvs
		// does not use.
		opts.JetStream = false
	}
	b.logs = newSlogAdapter(b.log)
	ctx := context.Background()
	srv.SetLoggerV2(b.logs, b.log.Enabled(ctx, slog.LevelDebug), b.log.Enabled(ctx, LevelTrace), false)
	srv.Start()
	// The server reports a failed listen through Fatalf and stops; do not
	// wait out the whole timeout in that case.
	deadline := time.Now().Add(startTimeout)
	for !srv.ReadyForConnections(20 * time.Millisecond) {
		ferr := b.logs.fatalErr()
		if ferr == nil && time.Now().Before(deadline) {
			continue
		}
		srv.Shutdown()
		srv.WaitForShutdown()
		if ferr != nil {
			return nil, nil, fmt.Errorf("bus: start nats server %s: %w", cfg.NodeID, ferr)
		}
		return nil, nil, fmt.Errorf("bus: start nats server %s: not listening after %v", cfg.NodeID, startTimeout)
	}
	if deferJS && !srv.JetStreamEnabled() {
		return srv, jetStreamConfig(opts), nil
	}
	if deferJS {
		// A nats-server that copies its options started JetStream anyway,
		// without the application account.
		b.log.Warn("JetStream started with the server, before its routes: a server with an empty JetStreamDir may elect a meta leader with other new servers; start new servers one at a time")
		if err := enableAppAccount(srv); err != nil {
			srv.Shutdown()
			srv.WaitForShutdown()
			return nil, nil, fmt.Errorf("bus: start nats server %s: %w", cfg.NodeID, err)
		}
	}
	if cfg.JetStreamDir != "" {
		if err := checkJetStream(srv, b.logs.fatalErr()); err != nil {
			srv.Shutdown()
			srv.WaitForShutdown()
			return nil, nil, fmt.Errorf("bus: start nats server %s: %w", cfg.NodeID, err)
		}
	}
	return srv, nil, nil
}

// checkJetStream checks that JetStream runs on srv and is enabled for the
// application account. fatal is the server's fatal error, if any.
func checkJetStream(srv *server.Server, fatal error) error {
	if !srv.JetStreamEnabled() {
		if fatal != nil {
			return fmt.Errorf("JetStream did not start: %w", fatal)
		}
		return errors.New("JetStream did not start")
	}
	acc, err := srv.LookupAccount(AppAccount)
	if err != nil {
		return fmt.Errorf("JetStream: look up account %s: %w", AppAccount, err)
	}
	if !acc.JetStreamEnabled() {
		return fmt.Errorf("JetStream is not enabled for account %s", AppAccount)
	}
	return nil
}

// serverOptions builds the nats-server options for cfg. With deferJS the
// application account is not marked for JetStream: it gets JetStream once
// JetStream runs clustered (see startJetStreamJoined).
func serverOptions(cfg Config, clusterPort int, advertise string, deferJS bool, cert *certificate) (*server.Options, error) {
	app := server.NewAccount(AppAccount)
	if cfg.JetStreamDir != "" && !deferJS {
		var err error
		if app, err = jetStreamAccount(); err != nil {
			return nil, err
		}
	}
	sys := server.NewAccount(SystemAccount)
	opts := &server.Options{
		ServerName: cfg.NodeID,
		Host:       cfg.Host,
		Port:       cfg.ClientPort,
		NoSigs:     true,
		NoLog:      false,
		MaxPayload: cfg.MaxPayload,
		Accounts:   []*server.Account{app, sys},
		// The users and what each may do: see users.go.
		Users:         users(cfg, app, sys),
		SystemAccount: SystemAccount,
		// Report a failed route dial at error level on the first attempt
		// and then once per minute instead of every second (the rest go
		// to debug), for a peer that was connected and for one never
		// reached alike: nats-server's first-connect default, once per
		// hour, would leave a seed that never answers unreported for an
		// hour, since the first attempt of a start is logged at debug
		// (see firstRouteDial).
		ConnectErrorReports:   routeDialReports,
		ReconnectErrorReports: routeDialReports,
		Cluster: server.ClusterOpts{
			Name:         cfg.Cluster,
			Host:         cfg.Host,
			Port:         clusterPort,
			Advertise:    advertise,
			PingInterval: cfg.PingInterval,
			MaxPingsOut:  routeMaxPingsOut,
			// One pooled connection per peer carries the application
			// account; the system account gets its own (added by the
			// server). More pooled connections would sit idle.
			PoolSize:    1,
			Compression: server.CompressionOpts{Mode: server.CompressionOff},
		},
	}
	if cfg.Secret == "" {
		opts.NoAuthUser = WatchUser
	} else {
		opts.Cluster.Username = routeUser
		opts.Cluster.Password = cfg.Secret
	}
	for _, s := range cfg.Seeds {
		u := &url.URL{Scheme: "nats-route", Host: s}
		if cfg.Secret != "" {
			u.User = url.UserPassword(routeUser, cfg.Secret)
		}
		opts.Routes = append(opts.Routes, u)
	}
	applyTLS(opts, cfg.TLS, cert)
	if cfg.JetStreamDir != "" {
		opts.JetStream = true
		opts.StoreDir = cfg.JetStreamDir
		opts.SyncAlways = true
		opts.JetStreamMaxMemory = JetStreamMaxMemory
		opts.JetStreamMaxStore = JetStreamMaxStore
		// Clustered JetStream needs at least one configured route; a node
		// started alone routes to itself (the server drops that route) so
		// that it runs clustered and can be joined later. Under TLS it
		// dials its advertised address, the name its certificate must
		// carry anyway, rather than 127.0.0.1, which it need not.
		if len(opts.Routes) == 0 {
			self := net.JoinHostPort(localHost(cfg.Host), strconv.Itoa(clusterPort))
			if cfg.TLS != nil {
				self = advertise
			}
			u := &url.URL{Scheme: "nats-route", Host: self}
			if cfg.Secret != "" {
				u.User = url.UserPassword(routeUser, cfg.Secret)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	return opts, nil
}

// jetStreamAccount returns the application account with JetStream enabled
// and no per-account limits (the server's limits apply). nats-server has
// no exported way to mark an account for JetStream before it starts other
// than its configuration language, and the mark must be there before
// Start: the server enables JetStream for marked accounts and recovers
// their streams before it starts the meta group, while enabling the
// account after Start would race with the meta group placing the
// account's streams on this server after a restart.
//
// The limits are those of [appJetStreamLimits].
func jetStreamAccount() (*server.Account, error) {
	var o server.Options
	conf := "accounts: { " + AppAccount + ": { jetstream: { max_memory: -1, max_file: -1, max_streams: -1, max_consumers: -1 } } }"
	if err := o.ProcessConfigString(conf); err != nil {
		return nil, fmt.Errorf("bus: JetStream account config: %w", err)
	}
	for _, a := range o.Accounts {
		if a.Name == AppAccount {
			return a, nil
		}
	}
	return nil, fmt.Errorf("bus: JetStream account config: no account %s", AppAccount)
}

// freePort returns a TCP port that was free on host a moment ago.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Conn returns the node's in-process connection. It is shared: do not close
// or drain it.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// Server returns the embedded server, for monitoring (Varz, Routez).
func (b *Bus) Server() *server.Server { return b.srv }

// Subjects returns the subject builder of this node's cluster.
func (b *Bus) Subjects() Subjects { return b.subjects }

// NodeID returns the node ID (the NATS server name).
func (b *Bus) NodeID() string { return b.cfg.NodeID }

// ClientURL returns the URL an external client on this machine (the nats
// CLI, tests) connects to, e.g. nats://127.0.0.1:4222, or
// tls://127.0.0.1:4222 with [Config.TLS]. It names 127.0.0.1 when the
// server listens on all interfaces.
func (b *Bus) ClientURL() string { return b.clientU }

// ClusterAddr returns the host:port of the route listener, with the port
// resolved when it was random. Use it as another node's seed.
func (b *Bus) ClusterAddr() string { return b.clusterA }

// AdvertiseAddr returns the route address this node advertises to peers.
func (b *Bus) AdvertiseAddr() string { return b.advert }

// Request sends data to subject and returns the reply. It waits until ctx
// is done or, when ctx has no deadline, for the configured RequestTimeout.
// No responders, timeout, ctx deadline and a closed connection give an
// error wrapping [ErrUnreachable] (and the underlying error); a payload
// over the max gives [ErrPayloadTooLarge]; a canceled ctx gives an error
// wrapping [context.Canceled] only. The returned slice belongs to the caller.
func (b *Bus) Request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	if int64(len(data)) > b.nc.MaxPayload() {
		return nil, fmt.Errorf("%w: request to %s is %d bytes, max %d", ErrPayloadTooLarge, subject, len(data), b.nc.MaxPayload())
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.cfg.RequestTimeout)
		defer cancel()
	}
	msg, err := b.nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return nil, requestError(subject, err)
	}
	return msg.Data, nil
}

// requestError classifies an error of nats RequestWithContext.
func requestError(subject string, err error) error {
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("bus: request %s: %w", subject, err)
	case errors.Is(err, nats.ErrMaxPayload):
		return fmt.Errorf("%w: request %s: %w", ErrPayloadTooLarge, subject, err)
	case errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, nats.ErrTimeout),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionReconnecting):
		return fmt.Errorf("%w: request %s: %w", ErrUnreachable, subject, err)
	default:
		return fmt.Errorf("bus: request %s: %w", subject, err)
	}
}

// Publish sends data to subject without waiting for anyone. A payload over
// the max gives [ErrPayloadTooLarge]; after Close, [ErrClosed].
func (b *Bus) Publish(subject string, data []byte) error {
	if int64(len(data)) > b.nc.MaxPayload() {
		return fmt.Errorf("%w: publish to %s is %d bytes, max %d", ErrPayloadTooLarge, subject, len(data), b.nc.MaxPayload())
	}
	if err := b.nc.Publish(subject, data); err != nil {
		switch {
		case errors.Is(err, nats.ErrMaxPayload):
			return fmt.Errorf("%w: publish %s: %w", ErrPayloadTooLarge, subject, err)
		case errors.Is(err, nats.ErrConnectionClosed):
			return fmt.Errorf("%w: publish %s: %w", ErrClosed, subject, err)
		}
		return fmt.Errorf("bus: publish %s: %w", subject, err)
	}
	return nil
}

// Subscribe calls handler for every message on subject (wildcards allowed).
// When the message is a request, the handler's return value is sent as the
// reply, even when it is nil or empty (an empty reply): a handler never
// leaves a requester waiting for its timeout, unless it panics, which is
// logged with its stack. Each message runs on its own goroutine, at most
// Config.HandlerConcurrency at a time per subscription, so handlers must be
// safe for concurrent use and messages may be handled out of order. data
// belongs to the handler.
//
// The returned function unsubscribes; messages already being handled
// complete. Close waits for running handlers.
func (b *Bus) Subscribe(subject string, handler func(data []byte) []byte) (unsubscribe func() error, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, fmt.Errorf("bus: subscribe %s: %w", subject, ErrClosed)
	}
	sem := make(chan struct{}, b.cfg.HandlerConcurrency)
	sub, err := b.nc.Subscribe(subject, func(m *nats.Msg) {
		sem <- struct{}{} // blocks this subscription's delivery when saturated
		b.handlers.Add(1)
		go func() {
			defer func() {
				<-sem
				b.handlers.Done()
			}()
			b.handle(m, handler)
		}()
	})
	if err != nil {
		return nil, fmt.Errorf("bus: subscribe %s: %w", subject, err)
	}
	// Deliver everything queued; the default 64k pending messages per
	// subscription stay as the bound.
	b.subs[sub] = struct{}{}
	return func() error {
		b.mu.Lock()
		delete(b.subs, sub)
		b.mu.Unlock()
		if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrBadSubscription) && !errors.Is(err, nats.ErrConnectionClosed) {
			return fmt.Errorf("bus: unsubscribe %s: %w", subject, err)
		}
		return nil
	}, nil
}

// handle runs handler on m and sends its reply.
func (b *Bus) handle(m *nats.Msg, handler func([]byte) []byte) {
	defer func() {
		if r := recover(); r != nil {
			b.log.Error("bus handler panicked",
				slog.String("subject", m.Subject), slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
		}
	}()
	reply := handler(m.Data)
	if m.Reply == "" {
		return
	}
	if err := m.Respond(reply); err != nil {
		level := slog.LevelWarn
		if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionDraining) {
			level = slog.LevelDebug
		}
		b.log.Log(context.Background(), level, "bus reply failed",
			slog.String("subject", m.Subject), slog.Int("bytes", len(reply)), slog.Any("err", err))
	}
}

// NumRoutes returns the number of peers this server has a route to
// (distinct servers, not connections: the server keeps several connections
// per peer).
func (b *Bus) NumRoutes() int { return b.srv.NumRemotes() }

// RoutedPeers returns the sorted server names (node IDs) of the peers this
// server has a route to.
func (b *Bus) RoutedPeers() []string {
	rz, err := b.srv.Routez(nil)
	if err != nil || rz == nil {
		return nil
	}
	var peers []string
	for _, r := range rz.Routes {
		if r.RemoteName != "" {
			peers = append(peers, r.RemoteName)
		}
	}
	slices.Sort(peers)
	return slices.Compact(peers)
}

// WaitRoutes waits until this server has routes to at least n peers, or
// ctx is done. Readiness checks use it: the listener being open does not
// mean routes are up.
func (b *Bus) WaitRoutes(ctx context.Context, n int) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if b.NumRoutes() >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bus: %d of %d routes up: %w", b.NumRoutes(), n, ctx.Err())
		case <-t.C:
		}
	}
}

// Close stops accepting messages, waits (up to 5 s) for running handlers so
// their replies go out, closes the connection and shuts the server down.
// Peers see the routes close at once. Afterwards Request fails with
// [ErrUnreachable] and Publish and Subscribe with [ErrClosed]. Close is
// idempotent.
func (b *Bus) Close() error {
	b.closeOnce.Do(func() { b.closeErr = b.close() })
	return b.closeErr
}

func (b *Bus) close() error {
	b.mu.Lock()
	b.closed = true
	subs := make([]*nats.Subscription, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.subs = nil
	b.mu.Unlock()
	if b.jsWait != nil {
		b.jsWait()
		<-b.jsWaited
	}

	var errs []error
	deadline := time.Now().Add(closeTimeout)
	// Drain the subscriptions: messages already delivered are handed to
	// handlers, nothing new arrives.
	for _, s := range subs {
		if err := s.Drain(); err != nil && !errors.Is(err, nats.ErrBadSubscription) {
			errs = append(errs, fmt.Errorf("drain %s: %w", s.Subject, err))
		}
	}
	for _, s := range subs {
		for s.IsValid() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	done := make(chan struct{})
	go func() { b.handlers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Until(deadline)):
		b.log.Warn("bus close: handlers still running", slog.Duration("waited", closeTimeout))
	}
	if err := b.nc.FlushTimeout(time.Second); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		b.log.Debug("bus close: flush", slog.Any("err", err))
	}
	b.nc.Close()
	b.sysMu.Lock()
	if b.sysNC != nil {
		b.sysNC.Close()
	}
	b.sysMu.Unlock()
	b.srv.Shutdown()
	b.srv.WaitForShutdown()
	b.log.Info("nats stopped")
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bus: close: %w", err)
	}
	return nil
}
