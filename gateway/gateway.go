// Package gateway serves kvs's HTTP API in front of one node.
//
// Routes:
//
//	PUT    /kv/{key}            store the raw request body; 204, X-Kvs-Version
//	GET    /kv/{key}            200 raw value and X-Kvs-Version, or 404
//	DELETE /kv/{key}            write a tombstone; 204, X-Kvs-Version
//	GET    /internal/kv?key=K   this node's own replica of K (tombstones too)
//	POST   /internal/kv?key=K   apply a versioned record to this node's replica
//	GET    /healthz             200 while the process serves HTTP
//	GET    /readyz              200 when the node is ready, else 503 and why
//	GET    /cluster             JSON: members, liveness, ring ownership
//	GET    /ring                JSON: the topology: members with state and epoch, the pending change, streaming progress
//	POST   /admin/decommission  decommission this node (cluster secret)
//	POST   /admin/removenode?id=X[&force=true]  remove a dead member (cluster secret)
//	POST   /admin/abort         abandon the pending topology change (cluster secret)
//	POST   /admin/repair        anti-entropy with every peer now, progress as JSON lines (cluster secret)
//	GET    /metrics             Prometheus metrics of the injected gatherer
//
// /internal/* and /admin/* need the cluster secret; /kv/* needs a client
// token once any is configured; /cluster, /ring and /metrics need one under
// Config.ProtectClusterInfo; /healthz and /readyz are always open. auth.go
// has the rules.
//
// Keys are any bytes, percent-encoded in the path: the gateway decodes the
// escaped path itself, so "a+b", "q&r=s" and "%2F" stay exactly what they are
// and no path cleaning applies. `?w=` (PUT, DELETE) and `?r=` (GET) override
// the quorum for one request, from 1 to N.
//
// Every error is JSON, {"error": "..."}, with a status that says what went
// wrong: 400 bad input, 401 missing or wrong secret or token, 403 a
// read-only token on a write, 404, 405 (with Allow), 413 value over the
// limit, 503 quorum not reached, node not ready or store unable to write.
// A 4xx message names the client's problem; a 5xx one is a fixed phrase
// and "request_id", the request's X-Request-ID (requestid.go), which the
// log line with the full error names too: internal error text, which can
// hold file paths and peers' errors, never reaches a client.
//
// The gateway talks only to a Node; it never touches storage or NATS.
package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/kvs-db/kvs/node"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMaxValueBytes is the value size limit when Config.MaxValueBytes is
// zero: the node's own default, which fits a value with its key and framing
// in one NATS message.
const DefaultMaxValueBytes = node.DefaultMaxValueBytes

// Node is what the gateway needs from a kvs node. *node.Node implements it;
// tests use a fake.
type Node interface {
	// Put writes value under key through the coordinator and returns the
	// version it was stamped with once the write quorum acknowledged it.
	Put(ctx context.Context, key, value []byte, opts node.WriteOptions) (node.Version, error)
	// Delete writes a tombstone for key through the coordinator.
	Delete(ctx context.Context, key []byte, opts node.WriteOptions) (node.Version, error)
	// Get reads key at the read quorum; node.ErrNotFound for a missing key
	// or a tombstone.
	Get(ctx context.Context, key []byte, opts node.ReadOptions) (node.Record, error)
	// LocalGet returns this node's own replica of key, tombstones included;
	// node.ErrNotFound when it holds nothing.
	LocalGet(key []byte) (node.Record, error)
	// LocalApply applies rec to this node's own replica if it is newer than
	// what it holds, and returns the version held afterwards.
	LocalApply(rec node.Record) (held node.Version, applied bool, err error)
	// Ready returns nil when the node may coordinate requests, else an error
	// wrapping node.ErrNotReady that says why.
	Ready() error
	// StoreWritable returns nil when the node's own store takes writes,
	// else an error wrapping node.ErrStoreUnwritable that says why
	// without a path.
	StoreWritable() error
	// Status is a snapshot of the node's view of the cluster.
	Status() node.ClusterStatus
	// Ring is the topology as the node knows it.
	Ring(ctx context.Context) (node.RingStatus, error)
	// Decommission begins the node's own decommission.
	Decommission(ctx context.Context) error
	// RemoveNode begins the removal of a dead member (or a live one with
	// force).
	RemoveNode(ctx context.Context, id string, force bool) error
	// AbortChange abandons the pending topology change.
	AbortChange(ctx context.Context) error
	// Repair runs an anti-entropy round with every peer now, reporting
	// each round to progress.
	Repair(ctx context.Context, progress func(node.RoundStats, error)) (node.RoundStats, error)
}

// Config configures a gateway handler.
type Config struct {
	// Node serves the requests. Required.
	Node Node
	// Secret, when not empty, is required as "Authorization: Bearer <secret>"
	// on /internal/* and admin endpoints. It also works as a read-write
	// client token.
	Secret string
	// ReadWriteTokens and ReadOnlyTokens are the bearer tokens of the
	// client API. With neither, /kv/* is open to anyone who reaches the
	// port; with any, GET and HEAD on /kv/* need a read-only or read-write
	// token (or the secret) and PUT and DELETE a read-write one (or the
	// secret). Kept only as SHA-256 hashes. They need a Secret, must not be
	// empty, and none may be the Secret or appear twice.
	// Gateway.SetClientTokens replaces them while the gateway serves.
	ReadWriteTokens []string
	ReadOnlyTokens  []string
	// ProtectClusterInfo requires a token (any client token, or the
	// secret) on /cluster, /ring and /metrics, which show members, their
	// addresses and the node's internals. It needs a Secret.
	ProtectClusterInfo bool
	// MaxValueBytes is the largest value a PUT or an internal POST accepts;
	// larger bodies get 413 after at most MaxValueBytes+1 bytes are read.
	// Default DefaultMaxValueBytes.
	MaxValueBytes int
	// Registerer receives the gateway's own metrics (requests by route,
	// method and status; latency). Nil: they are not exported.
	Registerer prometheus.Registerer
	// Gatherer is served on /metrics. Nil: /metrics answers 404.
	Gatherer prometheus.Gatherer
	// Logger receives access logs (debug level) and handler errors.
	// Default slog.Default().
	Logger *slog.Logger
	// NewRequestID makes the ID of a request that brings no sane
	// X-Request-ID of its own. Nil: 16 random hex digits.
	NewRequestID func() string
}

// Gateway is the HTTP handler of one node. Build it with New.
type Gateway struct {
	node         Node
	creds        atomic.Pointer[credentials] // replaced whole by SetClientTokens
	secret       string                      // "": /internal/* and /admin/* are open
	clientTokens bool                        // /kv/* needs a token
	protectInfo  bool                        // /cluster, /ring, /metrics need a token
	maxValue     int
	log          *slog.Logger
	newRequestID func() string
	metrics      *metrics
	promHTTP     http.Handler
}

var _ http.Handler = (*Gateway)(nil)

// New returns the gateway handler for cfg. It fails when cfg.Node is nil,
// MaxValueBytes is negative, the tokens break a rule of Config, or the
// metrics cannot be registered.
func New(cfg Config) (*Gateway, error) {
	if cfg.Node == nil {
		return nil, errors.New("gateway: Config.Node is required")
	}
	if cfg.MaxValueBytes < 0 {
		return nil, errors.New("gateway: Config.MaxValueBytes must not be negative")
	}
	if cfg.MaxValueBytes == 0 {
		cfg.MaxValueBytes = DefaultMaxValueBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	creds, err := newCredentials(&cfg)
	if err != nil {
		return nil, err
	}
	g := &Gateway{
		node:         cfg.Node,
		secret:       cfg.Secret,
		clientTokens: len(cfg.ReadWriteTokens)+len(cfg.ReadOnlyTokens) > 0,
		protectInfo:  cfg.ProtectClusterInfo,
		maxValue:     cfg.MaxValueBytes,
		log:          cfg.Logger,
		newRequestID: cfg.NewRequestID,
	}
	g.creds.Store(creds)
	if g.newRequestID == nil {
		g.newRequestID = randomRequestID
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	g.metrics = m
	if cfg.Gatherer != nil {
		g.promHTTP = newMetricsHandler(cfg.Gatherer, cfg.Registerer)
	}
	return g, nil
}

// Route names, used as the metrics label and in access logs. The set is
// fixed so that request paths never become label values.
const (
	routeKV         = "kv"
	routeInternalKV = "internal_kv"
	routeHealthz    = "healthz"
	routeReadyz     = "readyz"
	routeCluster    = "cluster"
	routeRing       = "ring"
	routeAdmin      = "admin"
	routeMetrics    = "metrics"
	routeOther      = "other"
)

// ServeHTTP dispatches on the escaped path. It does not use http.ServeMux:
// a key such as "." or "a//b" must reach the handler as it is, not be
// cleaned or redirected.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	route := routeOther
	var h func(http.ResponseWriter, *http.Request)
	switch {
	case strings.HasPrefix(path, kvPrefix):
		route, h = routeKV, g.serveKV
	case path == "/internal/kv":
		route, h = routeInternalKV, g.serveInternalKV
	case path == "/healthz":
		route, h = routeHealthz, g.serveHealthz
	case path == "/readyz":
		route, h = routeReadyz, g.serveReadyz
	case path == "/cluster":
		route, h = routeCluster, g.serveCluster
	case path == "/ring":
		route, h = routeRing, g.serveRing
	case strings.HasPrefix(path, "/admin/"):
		route, h = routeAdmin, g.serveAdmin
	case path == "/metrics":
		route, h = routeMetrics, g.serveMetrics
	default:
		h = func(w http.ResponseWriter, _ *http.Request) {
			writeError(w, http.StatusNotFound, "no such endpoint")
		}
	}
	g.instrument(route, h, w, r)
}

// allowMethods answers 405 with an Allow header and returns false when r's
// method is not one of allowed.
func allowMethods(w http.ResponseWriter, r *http.Request, allowed ...string) bool {
	for _, m := range allowed {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
	return false
}
