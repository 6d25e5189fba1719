package bus

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
)

// Defaults applied by [Config.Validate].
const (
	// DefaultCluster is the cluster name when none is configured.
	DefaultCluster = "kvs"
	// DefaultHost is the listen host: all interfaces.
	DefaultHost = "0.0.0.0"
	// DefaultClientPort is the NATS client port (the NATS default).
	DefaultClientPort = 4222
	// DefaultClusterPort is the NATS route port (the NATS default).
	DefaultClusterPort = 6222
	// DefaultPingInterval is the route ping interval. nats-server's own
	// default (2 min) lets a paused peer go unnoticed for minutes; at 1 s
	// with [routeMaxPingsOut] outstanding pings a dead route is closed
	// after about 2-3 s, which is what the failure detector above us needs.
	DefaultPingInterval = time.Second
	// DefaultRequestTimeout bounds a [Bus.Request] whose context has no
	// deadline. It is the time a caller waits on a replica that is alive
	// enough to hold its subscription but does not answer.
	DefaultRequestTimeout = 2 * time.Second
	// DefaultMaxPayload is the largest message, in bytes (the NATS default, 1 MiB).
	DefaultMaxPayload = 1 << 20
	// DefaultHandlerConcurrency is the number of handlers of one
	// subscription that may run at once; see [Config.HandlerConcurrency].
	DefaultHandlerConcurrency = 256

	// maxPayloadLimit is the largest max payload nats-server accepts.
	maxPayloadLimit = 64 << 20
	// routeDialReports is every how many failed attempts (one a second)
	// a route dial that keeps failing is reported above debug.
	routeDialReports = 60
	// routeMaxPingsOut is the number of unanswered route pings after which
	// the server closes the route as stale.
	routeMaxPingsOut = 2
	// startTimeout bounds how long Start waits for the listeners.
	startTimeout = 10 * time.Second
	// closeTimeout bounds how long Close waits for in-flight handlers.
	closeTimeout = 5 * time.Second
)

// JetStream resource limits of the embedded server when
// [Config.JetStreamDir] is set. The only data kvs keeps in JetStream is
// cluster metadata (key-value buckets of a few kilobytes), so the limits are
// far above the need and far below what nats-server would take by default
// (75% of the machine's memory, 1 TB or the free disk): a runaway bucket
// fails with "insufficient resources" instead of filling the node.
const (
	// JetStreamMaxMemory is the memory JetStream may use for
	// memory-backed streams and consumers, in bytes (64 MiB).
	JetStreamMaxMemory = 64 << 20
	// JetStreamMaxStore is the disk JetStream may use under
	// Config.JetStreamDir, in bytes (1 GiB).
	JetStreamMaxStore = 1 << 30
)

// Config configures one node's embedded NATS server and its connection.
// The zero value of every field but NodeID selects a default; Validate
// fills them in.
type Config struct {
	// NodeID identifies the node. It is the NATS server name and a subject
	// token, so it must pass [ValidToken] and be unique in the cluster.
	// Required.
	NodeID string

	// Cluster is the cluster name: the NATS cluster name (servers with
	// different names do not route to each other) and the second token of
	// every subject. Default "kvs".
	Cluster string

	// Host is the listen host of both the client and the route listener.
	// Default "0.0.0.0" (all interfaces).
	Host string

	// ClientPort is the NATS client port for external clients (nats CLI,
	// tools). 0 selects 4222, -1 a random free port (tests).
	ClientPort int

	// ClusterPort is the NATS route port peers dial. 0 selects 6222, -1 a
	// random free port (tests; chosen before the server starts, so that the
	// advertised address can name it).
	ClusterPort int

	// Advertise is the host:port other nodes dial to open a route to this
	// one when they learn of it from a third node. Default: Host and the
	// route port when Host is a specific address; when Host is unspecified
	// ("0.0.0.0", "::" or ""), the first non-loopback IPv4 address of the
	// machine (the container's address under docker compose), or 127.0.0.1
	// if there is none. Set it explicitly on multi-homed hosts and behind
	// NAT.
	Advertise string

	// Seeds are the route addresses (host:port) of seed nodes. A node may
	// list itself: the server detects the route to itself and drops it.
	// Listing every node gives each pair its own route from the start;
	// nodes that only share a seed learn of each other through it and
	// connect using their advertised addresses.
	Seeds []string

	// Secret, when set, is required on routes (user "route") and is the
	// password of user "kvs", the nodes' own user with every right in the
	// application account; users "watch" and "sys" have passwords of
	// their own (WatchPassword, SystemPassword), derived from it by
	// default. When empty, nothing is authenticated: every user has an
	// empty password, and a connection without credentials is "watch".
	// It must pass [ValidSecret]. See the package documentation for what
	// each user may do.
	Secret string

	// WatchPassword is the password of user "watch" ([WatchUser]), which
	// may only subscribe to heartbeats and the change feed. Default:
	// [DerivePassword](Secret, "watch"); empty when Secret is. Setting it
	// needs a Secret (without one there is no authentication), and it must
	// pass [ValidSecret] and differ from the Secret. Give every node the
	// same one: a client logs in to whichever node it reaches.
	WatchPassword string

	// SystemPassword is the password of user "sys" ([SystemUser]) in the
	// system account, which `nats server list` and the node's own
	// JetStream peer removal ([Bus.RemovePeer]) use. Default:
	// [DerivePassword](Secret, "sys"); empty when Secret is. The same
	// rules as WatchPassword apply.
	SystemPassword string

	// PingInterval is the route ping interval; a route is closed after
	// two unanswered pings. Default 1 s, so a paused peer is noticed within
	// about 2-3 s.
	PingInterval time.Duration

	// RequestTimeout is the timeout of [Bus.Request] when its context has
	// no deadline. Default 2 s.
	RequestTimeout time.Duration

	// Logger receives the embedded server's logs and this package's own.
	// Nil discards them. Connection and route churn is logged at debug.
	Logger *slog.Logger

	// MaxPayload is the largest message in bytes, requests and replies
	// included. Default 1 MiB; at most 64 MiB. All nodes should agree.
	MaxPayload int32

	// HandlerConcurrency is how many handlers of one subscription may run
	// at once (each message is handled on its own goroutine). When that
	// many are busy, further messages wait in the subscription's pending
	// buffer. Default 256.
	HandlerConcurrency int

	// TLS, when set, puts the client port and the routes under TLS: the
	// client port refuses plaintext, routes are mutual TLS against
	// TLS.CA (see [TLS] for what the certificates must name). The node's
	// own in-process connections, JetStream's included, are unaffected.
	// Nil: plaintext. It must pass [TLS.Validate]; all nodes of a cluster
	// should agree, as a plaintext node cannot route to a TLS one.
	TLS *TLS

	// JetStreamDir, when set, turns on JetStream in the embedded server
	// with its storage in this directory (created if missing; it must
	// survive restarts, and belongs to this node alone). [Bus.KV] needs
	// it. Default empty: JetStream off.
	//
	// JetStream runs clustered: every server with JetStream joins one
	// meta group (nats-server's Raft) that places buckets on servers.
	// Writes are synced to disk before they are acknowledged (SyncAlways),
	// and memory and disk are capped at [JetStreamMaxMemory] and
	// [JetStreamMaxStore].
	//
	// A node with no Seeds gets a route to itself, which the server
	// drops, so that it runs clustered and other nodes can join it later.
	//
	// On a first start (the directory holds no meta group state: new, or
	// wiped) JetStream starts only once the node's routes cover the
	// cluster, so that its new meta group counts the running servers and
	// cannot elect a leader with other new servers alone: at least one
	// route, routes to every server the peers are routed to, and, in a new
	// cluster (no meta leader anywhere), routes to as many servers as
	// there are Seeds other than this node. That takes about 0.3 s when
	// the cluster is up. With no route it waits as long as it takes,
	// warning every 30 s (a lone node's buckets are unavailable either
	// way: a new meta group expects at least two servers); once routed, at
	// most 10 s, then it starts with the routes it has. Meanwhile KV
	// operations wait, and fail with [ErrUnavailable] when their context
	// ends. A restart on a non-empty directory starts JetStream at once.
	// See the package documentation for what the wait cannot prevent.
	JetStreamDir string
}

// Validate checks c and fills in defaults for the fields left at their zero
// value. It does not resolve random ports or the default advertise address;
// [Start] does.
func (c *Config) Validate() error {
	var errs []error
	if err := ValidToken(c.NodeID); err != nil {
		errs = append(errs, fmt.Errorf("node ID: %w", err))
	}
	if c.Cluster == "" {
		c.Cluster = DefaultCluster
	}
	if err := ValidToken(c.Cluster); err != nil {
		errs = append(errs, fmt.Errorf("cluster: %w", err))
	}
	if c.Host == "" {
		c.Host = DefaultHost
	}
	if c.ClientPort == 0 {
		c.ClientPort = DefaultClientPort
	}
	if c.ClientPort < -1 || c.ClientPort > 65535 {
		errs = append(errs, fmt.Errorf("client port %d out of range (-1 for random, 0 for %d)", c.ClientPort, DefaultClientPort))
	}
	if c.ClusterPort == 0 {
		c.ClusterPort = DefaultClusterPort
	}
	if c.ClusterPort < -1 || c.ClusterPort > 65535 {
		errs = append(errs, fmt.Errorf("cluster port %d out of range (-1 for random, 0 for %d)", c.ClusterPort, DefaultClusterPort))
	}
	if c.ClientPort > 0 && c.ClientPort == c.ClusterPort {
		errs = append(errs, fmt.Errorf("client port and cluster port are both %d", c.ClientPort))
	}
	if err := ValidSecret(c.Secret); err != nil {
		errs = append(errs, fmt.Errorf("secret: %w", err))
	}
	errs = append(errs, c.userPasswords()...)
	if c.Advertise != "" {
		if err := checkHostPort(c.Advertise); err != nil {
			errs = append(errs, fmt.Errorf("advertise: %w", err))
		}
	}
	for _, s := range c.Seeds {
		if err := checkHostPort(s); err != nil {
			errs = append(errs, fmt.Errorf("seed: %w", err))
		}
	}
	if c.TLS != nil {
		if err := c.TLS.Validate(time.Now()); err != nil {
			errs = append(errs, err)
		}
	}
	if c.PingInterval == 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.PingInterval < 0 {
		errs = append(errs, fmt.Errorf("ping interval %v is negative", c.PingInterval))
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.RequestTimeout < 0 {
		errs = append(errs, fmt.Errorf("request timeout %v is negative", c.RequestTimeout))
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = DefaultMaxPayload
	}
	if c.MaxPayload < 0 || c.MaxPayload > maxPayloadLimit {
		errs = append(errs, fmt.Errorf("max payload %d out of range (1 to %d bytes)", c.MaxPayload, maxPayloadLimit))
	}
	if c.HandlerConcurrency == 0 {
		c.HandlerConcurrency = DefaultHandlerConcurrency
	}
	if c.HandlerConcurrency < 0 {
		errs = append(errs, fmt.Errorf("handler concurrency %d is negative", c.HandlerConcurrency))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bus: invalid config: %w", err)
	}
	return nil
}

// bcryptPrefixes begin the passwords nats-server takes for bcrypt hashes.
// Its rule (isBcrypt in server/auth.go) is the regular expression
// ^\$2[abxy]\$\d{2}\$; the whole prefix is refused, so that a looser rule in
// a later nats-server cannot turn an accepted secret into a hash.
var bcryptPrefixes = []string{"$2a$", "$2b$", "$2x$", "$2y$"}

// ValidSecret reports whether s can be the cluster secret: it must not
// begin like a bcrypt hash ($2a$, $2b$, $2x$ or $2y$). nats-server would
// take such a secret for the hash of the password and compare what
// clients and routes send with bcrypt, so nothing, this node's own
// connection included, could authenticate with the secret itself. The
// empty secret (no authentication) is valid.
func ValidSecret(s string) error {
	for _, p := range bcryptPrefixes {
		if strings.HasPrefix(s, p) {
			return fmt.Errorf("it begins with %q, and nats-server takes a password beginning with $2a$, $2b$, $2x$ or $2y$ for a bcrypt hash; choose one that does not", p)
		}
	}
	return nil
}

// checkHostPort checks that s is a host:port with a non-empty host and a
// port from 1 to 65535.
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	if host == "" {
		return fmt.Errorf("%q: empty host", s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%q: port must be 1 to 65535", s)
	}
	return nil
}

// isUnspecifiedHost reports whether host means "all interfaces".
func isUnspecifiedHost(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// defaultAdvertiseHost returns the host to advertise for routes when none
// is configured: host itself when it names one address, else the first
// non-loopback IPv4 address of the machine, else 127.0.0.1.
func defaultAdvertiseHost(host string) string {
	if !isUnspecifiedHost(host) {
		return host
	}
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			if ip4 := ipn.IP.To4(); ip4 != nil && !ip4.IsLoopback() && !ip4.IsLinkLocalUnicast() {
				return ip4.String()
			}
		}
	}
	return "127.0.0.1"
}

// localHost returns the host a client on this machine uses to reach a
// listener bound to host.
func localHost(host string) string {
	if isUnspecifiedHost(host) {
		return "127.0.0.1"
	}
	return host
}
