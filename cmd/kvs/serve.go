package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/urfave/cli/v2"

	"github.com/kvs-db/kvs/bus"
	"github.com/kvs-db/kvs/gateway"
	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node"
	"github.com/kvs-db/kvs/node/topology"
)

// serveOptions is the validated command line of `kvs serve`.
type serveOptions struct {
	id               string
	httpAddr         string   // listen address of the gateway
	dataDir          string   // store in dataDir/store, ring and hints in dataDir
	natsHost         string   // listen host of the NATS client and route ports
	natsPort         int      // NATS client port
	clusterPort      int      // NATS route port
	advertise        string   // route address peers dial (host:port)
	seeds            []string // route addresses of seed nodes
	cluster          string
	secret           string
	insecure         bool     // listen beyond loopback with no secret
	rebound          []string // listen addresses protected mode moved to loopback
	n, w, r          int
	vnodes           int
	sync             lsm.SyncPolicy
	syncInterval     time.Duration
	tombGrace        time.Duration
	quarantine       bool
	antiEntropy      time.Duration
	streamThroughput int64
	hintedHandoff    bool
	limits           limitOptions
	clientAuth       clientAuthOptions // --client-tokens-file, --protect-cluster-info
	natsUsers        natsPasswords     // --watch-password-file, --sys-password-file
	tls              *serveTLS         // --tls-cert, --tls-key, --tls-ca; nil: plaintext
	readRepair       bool
	needPeers        int // -1: every seed other than this node
	maxValue         int
	gossip           time.Duration
	downAfter        time.Duration
	reqTimeout       time.Duration
	shutdownAfter    time.Duration
	maxConns         int // 0: from the descriptor limit (defaultMaxConns); negative: no limit
	logLevel         string
	logFormat        string
	pprofAddr        string // --pprof: loopback address of the profiling listener, "" off
	batchInFlight    int    // --replica-batch-in-flight: node.Config.BatchInFlight
}

// defaultNodeID is the host name up to its first dot when that is a valid
// node ID, else "node1".
func defaultNodeID() string {
	h, err := os.Hostname()
	if err != nil {
		return "node1"
	}
	h, _, _ = strings.Cut(h, ".")
	if h == "" || strings.ContainsAny(h, "*> \t") {
		return "node1"
	}
	return h
}

func serveFlags() []cli.Flag {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "id", Value: defaultNodeID(), Usage: "node ID, unique in the cluster (no '.', '*', '>' or spaces)", EnvVars: envVars("id")},
		&cli.StringFlag{Name: "http", Value: ":8080", Usage: "HTTP listen address of the API", EnvVars: envVars("http")},
		&cli.StringFlag{Name: "data", Value: "./kvs-data", Usage: "data directory (store, ring, hints)", EnvVars: envVars("data")},
		&cli.StringFlag{Name: "nats-host", Value: bus.DefaultHost, Usage: "listen host of the NATS client and cluster ports", EnvVars: envVars("nats-host")},
		&cli.IntFlag{Name: "nats-port", Value: bus.DefaultClientPort, Usage: "NATS client port (for the nats CLI)", EnvVars: envVars("nats-port")},
		&cli.IntFlag{Name: "cluster-port", Value: bus.DefaultClusterPort, Usage: "NATS cluster (route) port that peers dial", EnvVars: envVars("cluster-port")},
		&cli.StringFlag{Name: "advertise", Usage: "`host[:port]` peers dial for routes to this node (default: --nats-host, or this machine's first IPv4 address)", EnvVars: envVars("advertise")},
		&cli.StringFlag{Name: "seeds", Usage: "comma-separated cluster addresses (`host:port,...`) of seed nodes; may include this node", EnvVars: envVars("seeds")},
		&cli.StringFlag{Name: "cluster", Value: node.DefaultCluster, Usage: "cluster name", EnvVars: envVars("cluster")},
	}
	flags = append(flags, secretFlags("shared secret (at least 16 bytes) required on NATS routes and connections and on /internal/* and /admin/*; without one, every listener binds loopback only")...)
	return append(flags,
		&cli.BoolFlag{Name: "insecure", Usage: "with no cluster secret, listen beyond loopback anyway (--http, --nats-host), unauthenticated", EnvVars: envVars("insecure")},
		&cli.IntFlag{Name: "n", Value: node.DefaultN, Usage: "replicas per key (capped at the number of ring members)", EnvVars: envVars("n")},
		&cli.IntFlag{Name: "w", Value: node.DefaultW, Usage: "default write quorum", EnvVars: envVars("w")},
		&cli.IntFlag{Name: "r", Value: node.DefaultR, Usage: "default read quorum", EnvVars: envVars("r")},
		&cli.IntFlag{Name: "vnodes", Value: 100, Usage: "virtual nodes per ring member", EnvVars: envVars("vnodes")},
		&cli.StringFlag{Name: "sync", Value: "always", Usage: "WAL fsync policy: always (an ack means on disk), interval or none (an ack survives the death of the process, not a crash of the machine)", EnvVars: envVars("sync")},
		&cli.DurationFlag{Name: "sync-interval", Value: lsm.DefaultSyncInterval, Usage: "WAL fsync period under --sync interval", EnvVars: envVars("sync-interval")},
		&cli.DurationFlag{Name: "tombstone-grace", Value: lsm.DefaultTombstoneGrace, Usage: "how long a delete's tombstone is kept before compaction may drop it; longer than any node stays away", EnvVars: envVars("tombstone-grace")},
		&cli.BoolFlag{Name: "quarantine-corrupt", Usage: "on start, move a table that fails its checks aside and carry on (replicas repair its keys) instead of refusing to start", EnvVars: envVars("quarantine-corrupt")},
		&cli.IntFlag{Name: "need-peers", Value: -1, Usage: "peers a node must hear from before it founds a new cluster with them, when none exists yet (-1: every seed other than itself); a node that finds a cluster joins it instead", EnvVars: envVars("need-peers")},
		&cli.DurationFlag{Name: "anti-entropy-interval", Value: node.DefaultAntiEntropyInterval, Usage: "period of anti-entropy rounds (hash-tree comparisons) with peers; negative disables them", EnvVars: envVars("anti-entropy-interval")},
		&cli.Int64Flag{Name: "stream-throughput", Value: node.DefaultStreamThroughput, Usage: "bytes per second a node pulls when it streams the ranges it gains in a join, decommission or removenode (negative: unlimited)", EnvVars: envVars("stream-throughput")},
		&cli.BoolFlag{Name: "hinted-handoff", Value: true, Usage: "keep writes a replica missed as hints and hand them over when it returns", EnvVars: envVars("hinted-handoff")},
		&cli.Int64Flag{Name: "max-hint-bytes-per-target", Value: node.DefaultMaxHintBytesPerTarget, Usage: "bytes of hints a node keeps for one peer; hints past it are dropped, anti-entropy repairs what they carried (negative: no bound)", EnvVars: envVars("max-hint-bytes-per-target")},
		&cli.Int64Flag{Name: "max-hint-bytes", Value: node.DefaultMaxHintBytes, Usage: "bytes of hints a node keeps in all (negative: no bound)", EnvVars: envVars("max-hint-bytes")},
		&cli.DurationFlag{Name: "hint-window", Value: node.DefaultHintWindow, Usage: "how long a hint is kept, and how long a peer may be down and still get new hints (negative: no limit)", EnvVars: envVars("hint-window")},
		&cli.IntFlag{Name: "max-scan-requests", Value: node.DefaultMaxScanRequests, Usage: "anti-entropy and stream requests from peers that scan the store, served at once; more are refused as overloaded and retried later (negative: no bound)", EnvVars: envVars("max-scan-requests")},
		&cli.BoolFlag{Name: "read-repair", Value: true, Usage: "send the newest record to replicas a read found stale", EnvVars: envVars("read-repair")},
		&cli.IntFlag{Name: "max-value-bytes", Value: node.DefaultMaxValueBytes, Usage: "largest value accepted", EnvVars: envVars("max-value-bytes")},
		&cli.DurationFlag{Name: "gossip-interval", Value: node.DefaultGossipInterval, Usage: "heartbeat period", EnvVars: envVars("gossip-interval")},
		&cli.DurationFlag{Name: "down-after", Usage: "silence after which a peer is down (default 3 gossip intervals)", EnvVars: envVars("down-after")},
		&cli.DurationFlag{Name: "request-timeout", Value: node.DefaultRequestTimeout, Usage: "timeout of one request to one replica", EnvVars: envVars("request-timeout")},
		&cli.DurationFlag{Name: "shutdown-timeout", Value: 10 * time.Second, Usage: "how long shutdown waits for in-flight HTTP requests", EnvVars: envVars("shutdown-timeout")},
		&cli.IntFlag{Name: "max-conns", Usage: "HTTP connections open at once; more wait, and idle keep-alive ones are closed to make room (0: half the file descriptor limit after 64 kept for the store and NATS; negative: no limit)", EnvVars: envVars("max-conns")},
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: envVars("log-level")},
		&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json", EnvVars: envVars("log-format")},
		&cli.IntFlag{Name: "replica-batch-in-flight", Value: node.DefaultBatchInFlight, Usage: "messages of replica requests in flight to one peer at once; requests made meanwhile wait and travel together in the next message (-1: no batching, a message per request)", EnvVars: envVars("replica-batch-in-flight")},
		&cli.StringFlag{Name: "pprof", Usage: "serve Go's pprof profiles on this loopback `host:port` (for instance 127.0.0.1:6060); off by default", EnvVars: envVars("pprof")},
	)
}

// runServe runs a node until ctx ends; tests replace it to check parsing.
var runServe = serveNode

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run one node: embedded NATS, storage, replication and the HTTP API",
		Description: "With no flags, runs a working single-node store: HTTP on 127.0.0.1:8080, NATS\n" +
			"on 127.0.0.1:4222, data in ./kvs-data. To form a cluster, give each node a unique\n" +
			"--id and the cluster addresses of the others in --seeds.\n\n" +
			"Without a cluster secret every listener binds loopback only: an unspecified\n" +
			"host (0.0.0.0, ::) becomes 127.0.0.1 and any other non-loopback host is refused.\n" +
			"Set --cluster-secret or --cluster-secret-file to listen on every interface (the\n" +
			"default then), or --insecure to do so unauthenticated.\n\n" +
			"With --tls-cert, --tls-key and --tls-ca, --http serves HTTPS, the NATS client\n" +
			"port takes TLS only, and routes are mutual TLS against the CA. TLS encrypts; it\n" +
			"does not replace the secret, which the rule above still asks for.\n\n" +
			"SIGHUP reads --client-tokens-file, --tls-cert and --tls-key again (not the CA):\n" +
			"a revoked token is refused and a renewed certificate presented, without a restart.",
		Flags: append(append(append(serveFlags(), clientAuthFlags()...), natsPasswordFlags()...), serveTLSFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError("serve takes no arguments, got %q", c.Args().Slice())
			}
			opts, err := parseServeOptions(c)
			if err != nil {
				return usageError("%v", err)
			}
			return runServe(c.Context, opts, c.App.ErrWriter)
		},
	}
}

// parseServeOptions reads and checks the flags of serve.
func parseServeOptions(c *cli.Context) (serveOptions, error) {
	o := serveOptions{
		id:               c.String("id"),
		httpAddr:         c.String("http"),
		dataDir:          c.String("data"),
		natsHost:         c.String("nats-host"),
		natsPort:         c.Int("nats-port"),
		clusterPort:      c.Int("cluster-port"),
		cluster:          c.String("cluster"),
		insecure:         c.Bool("insecure"),
		n:                c.Int("n"),
		w:                c.Int("w"),
		r:                c.Int("r"),
		vnodes:           c.Int("vnodes"),
		maxValue:         c.Int("max-value-bytes"),
		syncInterval:     c.Duration("sync-interval"),
		tombGrace:        c.Duration("tombstone-grace"),
		quarantine:       c.Bool("quarantine-corrupt"),
		antiEntropy:      c.Duration("anti-entropy-interval"),
		streamThroughput: c.Int64("stream-throughput"),
		hintedHandoff:    c.Bool("hinted-handoff"),
		limits:           parseLimits(c),
		readRepair:       c.Bool("read-repair"),
		needPeers:        c.Int("need-peers"),
		gossip:           c.Duration("gossip-interval"),
		downAfter:        c.Duration("down-after"),
		reqTimeout:       c.Duration("request-timeout"),
		shutdownAfter:    c.Duration("shutdown-timeout"),
		maxConns:         c.Int("max-conns"),
		logLevel:         c.String("log-level"),
		logFormat:        c.String("log-format"),
		pprofAddr:        c.String("pprof"),
		batchInFlight:    c.Int("replica-batch-in-flight"),
	}
	var err error
	if o.secret, err = nodeSecret(c); err != nil {
		return o, err
	}
	if o.natsUsers, err = readNATSPasswords(c, o.secret); err != nil {
		return o, err
	}
	if o.sync, err = lsm.ParseSyncPolicy(c.String("sync")); err != nil {
		return o, fmt.Errorf("--sync: %w", err)
	}
	if o.seeds, err = splitHostPorts(c.String("seeds")); err != nil {
		return o, fmt.Errorf("--seeds: %w", err)
	}
	if o.advertise, err = advertiseAddr(c.String("advertise"), o.clusterPort); err != nil {
		return o, fmt.Errorf("--advertise: %w", err)
	}
	switch {
	case o.id == "":
		return o, errors.New("--id must not be empty")
	case o.dataDir == "":
		return o, errors.New("--data must not be empty")
	case o.natsPort < 1 || o.natsPort > 65535:
		return o, fmt.Errorf("--nats-port %d: want 1 to 65535", o.natsPort)
	case o.clusterPort < 1 || o.clusterPort > 65535:
		return o, fmt.Errorf("--cluster-port %d: want 1 to 65535", o.clusterPort)
	case o.natsPort == o.clusterPort:
		return o, fmt.Errorf("--nats-port and --cluster-port are both %d", o.natsPort)
	case o.shutdownAfter <= 0:
		return o, errors.New("--shutdown-timeout must be positive")
	case o.syncInterval <= 0:
		return o, errors.New("--sync-interval must be positive")
	case o.tombGrace <= 0:
		return o, errors.New("--tombstone-grace must be positive")
	case o.batchInFlight == 0 || o.batchInFlight < -1:
		return o, fmt.Errorf("--replica-batch-in-flight %d: want -1 (no batching) or more than 0", o.batchInFlight)
	case o.streamThroughput == 0:
		return o, errors.New("--stream-throughput must not be 0 (negative means unlimited)")
	}
	if _, _, err := net.SplitHostPort(o.httpAddr); err != nil {
		return o, fmt.Errorf("--http %q: %w", o.httpAddr, err)
	}
	if err := o.protect(); err != nil {
		return o, err
	}
	if err := checkPprofAddr(o.pprofAddr); err != nil {
		return o, err
	}
	if o.clientAuth, err = parseClientAuth(c, o.secret); err != nil {
		return o, err
	}
	if o.tls, err = parseServeTLS(c); err != nil {
		return o, err
	}
	if _, err := newLogger(io.Discard, o.logLevel, o.logFormat); err != nil {
		return o, err
	}
	return o, nil
}

// splitHostPorts splits a comma-separated list of host:port addresses,
// ignoring empty items.
func splitHostPorts(list string) ([]string, error) {
	var out []string
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", s, err)
		}
		if p, err := strconv.Atoi(port); host == "" || err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("%q: want host:port", s)
		}
		out = append(out, s)
	}
	return out, nil
}

// advertiseAddr returns the route address to advertise: s as host:port, s
// with the cluster port when it is a bare host, or "" (the bus picks) when
// s is empty.
func advertiseAddr(s string, clusterPort int) (string, error) {
	if s == "" {
		return "", nil
	}
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s, nil
	}
	if strings.Contains(strings.Trim(s, "[]"), ":") && !strings.HasPrefix(s, "[") {
		// A bare IPv6 address.
		return net.JoinHostPort(s, strconv.Itoa(clusterPort)), nil
	}
	return net.JoinHostPort(strings.Trim(s, "[]"), strconv.Itoa(clusterPort)), nil
}

// isSelf reports whether the seed address names this node's own route
// listener: its port is the cluster port and its host is the advertised
// host, a loopback or unspecified address, or this machine's name.
func isSelf(seed, advertise string, clusterPort int) bool {
	if seed == advertise {
		return true
	}
	host, port, err := net.SplitHostPort(seed)
	if err != nil || port != strconv.Itoa(clusterPort) {
		return false
	}
	if ip := net.ParseIP(host); ip != nil && (ip.IsLoopback() || ip.IsUnspecified()) {
		return true
	}
	if host == "localhost" {
		return true
	}
	if ah, _, err := net.SplitHostPort(advertise); err == nil && ah == host {
		return true
	}
	if h, err := os.Hostname(); err == nil && (h == host || strings.SplitN(h, ".", 2)[0] == host) {
		return true
	}
	return false
}

// httpAdvertise is the HTTP address this node tells its peers: the listen
// address, with an unspecified host replaced by the advertised route host.
func httpAdvertise(listen, routeAdvertise string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return listen
	}
	if ah, _, err := net.SplitHostPort(routeAdvertise); err == nil && ah != "" {
		return net.JoinHostPort(ah, port)
	}
	return net.JoinHostPort(defaultNodeID(), port)
}

// serveNode runs one node until ctx ends, then shuts down in order: HTTP
// (in-flight requests finish), node, bus, storage. Logs go to logOut.
func serveNode(ctx context.Context, o serveOptions, logOut io.Writer) (err error) {
	base, err := newLogger(logOut, o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	// bus and node name the node in their own logs; the rest do here.
	log := base.With("node", o.id)
	// From here on a SIGHUP waits for the gateway instead of ending the
	// process (reload.go).
	hup := notifyHangups()
	defer hup.stop()
	logListenSecurity(log, o)
	maxConns := o.maxConns
	if maxConns == 0 {
		soft, _, ok := fdLimit()
		maxConns = defaultMaxConns(soft, ok)
	}
	logFDLimit(log, maxConns)

	// Everything opened is closed in reverse order, also on a failed start.
	var closers []func() error
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			if cerr := closers[i](); cerr != nil {
				log.Error("shutdown", "err", cerr)
				err = errors.Join(err, cerr)
			}
		}
		if err == nil {
			log.Info("stopped")
		}
	}()

	// Bind the HTTP port first: a port in use fails before anything opens.
	// Connections wait in the backlog until the gateway serves.
	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	closers = append(closers, func() error {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	})

	if o.pprofAddr != "" {
		pp, err := startPprof(o.pprofAddr, log.With("component", "pprof"))
		if err != nil {
			return err
		}
		closers = append(closers, pp.Close)
	}

	if err := os.MkdirAll(o.dataDir, 0o755); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	hooks := &node.StoreHooks{}
	db, err := lsm.Open(lsm.Options{
		Dir:               filepath.Join(o.dataDir, "store"),
		Sync:              o.sync,
		SyncInterval:      o.syncInterval,
		TombstoneGrace:    o.tombGrace,
		QuarantineCorrupt: o.quarantine,
		Logger:            log.With("component", "lsm"),
		OnApply:           hooks.OnApply,
		TombstoneHorizon:  hooks.TombstoneHorizon,
	})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	closers = append(closers, db.Close)

	needPeers := o.peersNeeded()
	b, err := bus.Start(bus.Config{
		NodeID:         o.id,
		Cluster:        o.cluster,
		Host:           o.natsHost,
		ClientPort:     o.natsPort,
		ClusterPort:    o.clusterPort,
		Advertise:      o.advertise,
		Seeds:          o.seeds,
		Secret:         o.secret,
		WatchPassword:  o.natsUsers.watch,
		SystemPassword: o.natsUsers.sys,
		TLS:            o.tls.bus(),
		RequestTimeout: o.reqTimeout,
		JetStreamDir:   filepath.Join(o.dataDir, "jetstream"),
		Logger:         base.With("component", "bus"),
	})
	if err != nil {
		return fmt.Errorf("start bus: %w", err)
	}
	closers = append(closers, b.Close)
	kv, err := b.KV(topology.DefaultBucket, min(3, 1+needPeers))
	if err != nil {
		return fmt.Errorf("topology bucket: %w", err)
	}
	topoStore := topology.NewKVStore(kv, b.RemovePeer, func(err error) { log.Error("topology store", "err", err) })

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newStoreCollector(db.Stats),
	)
	n, err := node.New(o.limits.apply(node.Config{
		ID:                  o.id,
		Cluster:             o.cluster,
		HTTPAddr:            httpAdvertise(o.httpAddr, b.AdvertiseAddr()),
		N:                   o.n,
		W:                   o.w,
		R:                   o.r,
		VNodes:              o.vnodes,
		GossipInterval:      o.gossip,
		DownAfter:           o.downAfter,
		RequestTimeout:      o.reqTimeout,
		MaxValueBytes:       o.maxValue,
		AntiEntropyInterval: o.antiEntropy,
		NeedPeers:           needPeers,
		DataDir:             o.dataDir,
		Store:               db,
		Hooks:               hooks,
		Topology:            topoStore,
		StreamThroughput:    o.streamThroughput,
		BatchInFlight:       o.batchInFlight,
		DisableHints:        !o.hintedHandoff,
		DisableReadRepair:   !o.readRepair,
		Transport:           node.NewNATSTransport(b),
		Logger:              base.With("component", "node"),
		Registerer:          reg,
	}))
	if err != nil {
		return err
	}
	closers = append(closers, n.Close) // also closes the hint store of a node never started
	if err := n.Start(ctx); err != nil {
		return err
	}

	gw, err := gateway.New(o.clientAuth.apply(gateway.Config{
		Node:          n,
		Secret:        o.secret,
		MaxValueBytes: o.maxValue,
		Registerer:    reg,
		Gatherer:      reg,
		Logger:        log.With("component", "http"),
	}))
	if err != nil {
		return err
	}
	hctx, stopHangups := context.WithCancel(ctx)
	defer stopHangups()
	go hup.serve(hctx, func() { reload(log, o, gw, b) })
	var httpLn net.Listener = ln
	var connState func(net.Conn, http.ConnState)
	if maxConns > 0 {
		cl := newConnLimiter(ln, maxConns)
		reg.MustRegister(cl.collectors()...)
		httpLn, connState = cl, cl.ConnState
	}
	srv := &http.Server{
		Handler:           gw,
		ConnState:         connState,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.With("component", "http").Handler(), slog.LevelDebug),
	}
	served := make(chan error, 1)
	go func() { served <- serveHTTP(srv, httpLn, o.tls, b) }()
	log.Info("serving",
		"http", ln.Addr().String(),
		"tls", o.tls != nil,
		"nats", b.ClientURL(),
		"cluster_addr", b.ClusterAddr(),
		"advertise", b.AdvertiseAddr(),
		"seeds", o.seeds,
		"data", o.dataDir,
		"sync", o.sync.String(),
		"need_peers", needPeers)

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case <-n.Left():
		// Answer a little longer, so that whoever follows the
		// decommission (kvs decommission --wait) sees it finish here.
		log.Info("removed from the ring; shutting down", "in", leftLinger)
		select {
		case <-ctx.Done():
		case <-time.After(leftLinger):
		}
	case err := <-served:
		return fmt.Errorf("http: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownAfter)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("http shutdown", "err", err)
		srv.Close()
	}
	return nil
}

// leftLinger is how long a node removed from the ring keeps answering
// (with 503 for data requests, and /ring showing its removal) before it
// exits.
const leftLinger = 5 * time.Second

// peersNeeded is how many peers this node must hear from before it founds a
// new cluster with them (node.Config.NeedPeers): every seed by default, so
// that a cluster started all at once begins with all of them in its ring;
// --need-peers lowers the bar. A node that finds a cluster joins it, and a
// restarted node acts on its last topology at once, either way.
func (o *serveOptions) peersNeeded() int {
	if o.needPeers >= 0 {
		return o.needPeers
	}
	n := 0
	for _, s := range o.seeds {
		if !isSelf(s, o.advertise, o.clusterPort) {
			n++
		}
	}
	return n
}
