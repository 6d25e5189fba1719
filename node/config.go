package node

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvs-db/kvs/bus"
	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node/topology"
	"github.com/kvs-db/kvs/node/wire"
	"github.com/kvs-db/kvs/ring"
)

// Defaults of Config. Each is chosen so that a three-node cluster on one LAN
// behaves like the reference system; tests shorten the timers.
const (
	// DefaultCluster is the cluster name when Config.Cluster is empty.
	DefaultCluster = "kvs"
	// DefaultN is the replication factor: three copies survive one lost node
	// while a majority (two) still answers.
	DefaultN = 3
	// DefaultW is the write quorum: with R = 2 and N = 3, W + R > N, so every
	// read quorum meets every write quorum.
	DefaultW = 2
	// DefaultR is the read quorum.
	DefaultR = 2
	// DefaultGossipInterval is how often a node publishes a heartbeat.
	DefaultGossipInterval = time.Second
	// DefaultRequestTimeout bounds one request to one replica. A replica
	// marked down by gossip is never asked, so this is paid only in the few
	// seconds before gossip notices a stalled node.
	DefaultRequestTimeout = 2 * time.Second
	// DefaultAntiEntropyInterval is the period of anti-entropy rounds: a
	// round scans the store, so it is not run much more often than this.
	DefaultAntiEntropyInterval = 30 * time.Second
	// DefaultMaxValueBytes is the largest value: 1 MiB (NATS's default max
	// payload) minus 16 KiB for the key (at most 1 KiB) and the framing.
	DefaultMaxValueBytes = 1<<20 - 16<<10
	// MaxKeyBytes is the largest key. Keys are 1 to MaxKeyBytes bytes.
	MaxKeyBytes = wire.MaxKeyBytes
	// DefaultStreamThroughput bounds what a gainer pulls while a topology
	// change streams ranges, in bytes per second: about a third of a
	// commodity disk's sequential write rate, so that client traffic keeps
	// most of it (Cassandra's default is 24 MiB/s).
	DefaultStreamThroughput = 32 << 20
	// DefaultStreamFallbackAfter is how long a stream's source may stay
	// unreachable before the gainer pulls the same keys from the other
	// replicas instead.
	DefaultStreamFallbackAfter = 30 * time.Second
	// DefaultMaxHintBytesPerTarget bounds the hints held for one target:
	// 64 MiB holds about 450,000 hints of 100-byte values, a minute and a
	// half of the benchmark's full write rate and far longer at ordinary
	// load, enough for the short outages hints are meant for; anti-entropy
	// repairs the rest.
	DefaultMaxHintBytesPerTarget = 64 << 20
	// DefaultMaxHintBytes bounds all the hints a node holds: four targets'
	// worth, so that one target's hints cannot crowd out everyone's, and
	// the hint store stays a small fraction of a node's disk.
	DefaultMaxHintBytes = 256 << 20
	// DefaultHintWindow is how long a hint is kept, and how long a target
	// may be down and still get new hints: Cassandra's max_hint_window.
	// Past it, anti-entropy, which compares whole ranges, is the cheaper
	// repair.
	DefaultHintWindow = 3 * time.Hour
	// DefaultMaxScanRequests bounds the scan-heavy requests a node serves
	// at once: enough for an anti-entropy round and a stream page from
	// each of a few gainers, while on a small machine (two cores) the
	// rest of its CPU and disk stays with client requests.
	DefaultMaxScanRequests = 4
	// DefaultBatchInFlight is how many messages of replica requests may be
	// in flight to one peer for one operation before further requests
	// queue and travel together in the next (batcher.go). One gives the
	// largest batches: over NATS at 64 requests in flight
	// (BenchmarkNATSBatchInFlight, three sessions) it cost the least CPU
	// per GET and per PUT of 1, 2 and 4, with no worse latency (README,
	// Performance).
	DefaultBatchInFlight = 1
	// DefaultMaxBatchRequests bounds the requests of one batch: with 64
	// client requests in flight a node has at most 64 replica requests of
	// one operation per peer to batch.
	DefaultMaxBatchRequests = 128
	// DefaultMaxBatchBytes bounds the requests of one batch in bytes: half
	// of NATS's default max payload (1 MiB), so that a batch never
	// approaches it; a request larger than this is sent on its own.
	DefaultMaxBatchBytes = 512 << 10
)

// ErrInvalidConfig is wrapped by the errors of Config.Validate.
var ErrInvalidConfig = errors.New("node: invalid config")

// Config holds a node's parameters. Validate fills defaults.
type Config struct {
	// ID names the node in the ring, on the wire and in heartbeats. It must
	// be unique in the cluster, at most 255 bytes, and a valid NATS subject
	// token (bus.ValidToken: no '.', '*', '>' or whitespace). The Node field of every
	// version the node issues is uint32(xxhash64(ID)); two IDs whose hashes
	// collide in 32 bits are reported at join (their writes could tie).
	ID string
	// Cluster names the cluster; it is part of every subject. Default "kvs".
	Cluster string
	// HTTPAddr is the node's HTTP address, advertised in heartbeats so that
	// `kvs status` can show it. Informational.
	HTTPAddr string
	// N is the number of replicas of each key (default 3). W and R are the
	// default write and read quorums (default 2 each). The effective values
	// are capped at the number of ring members. N is the cluster's: a node
	// that founds a cluster records its N in the topology, and a node whose
	// N differs from the topology's refuses to serve.
	N, W, R int
	// VNodes is the number of virtual nodes per ring member (default 100);
	// like N, the cluster's, recorded at bootstrap.
	VNodes int
	// GossipInterval is the period of heartbeats and of hint handoff rounds
	// (default 1s).
	GossipInterval time.Duration
	// DownAfter is how long a peer may go unheard before it is considered
	// down: requests skip it at once and its writes become hints. Default
	// 3 * GossipInterval, so one or two lost heartbeats do not flap it.
	DownAfter time.Duration
	// RequestTimeout bounds each request to one replica (default 2s).
	RequestTimeout time.Duration
	// AntiEntropyInterval is the period of anti-entropy rounds: each
	// compares the keys shared with the next live peer and pushes the
	// records it lacks. Default 30s; negative disables anti-entropy.
	AntiEntropyInterval time.Duration
	// MaxValueBytes is the largest value accepted (default
	// DefaultMaxValueBytes, which fits a NATS message with its framing).
	MaxValueBytes int
	// NeedPeers is how many peers a node must hear from before it founds a
	// new cluster with them (when the topology store holds none), so that
	// a cluster started all at once begins with every seed in its ring. A
	// node that finds a cluster joins it instead, and a node with a
	// topology of its own (DataDir/topology.json) uses it at once. With
	// NeedPeers 0 and no peer heard, a node whose store is unavailable
	// founds a cluster of one by itself (a lone node's JetStream has no
	// quorum) and publishes it once the store answers. cmd sets the number
	// of seeds other than the node.
	NeedPeers int
	// Topology is where the cluster's ring metadata lives: a JetStream KV
	// bucket (topology.NewKVStore) in production, one topology.MemStore
	// shared by all nodes in tests. Required.
	Topology topology.Store
	// StreamThroughput bounds, in bytes per second, what this node pulls
	// when it streams ranges it gains in a topology change (default
	// DefaultStreamThroughput; negative: unlimited).
	StreamThroughput int64
	// StreamFallbackAfter is how long a stream source may stay unreachable
	// before the gainer pulls from the other replicas instead (default
	// DefaultStreamFallbackAfter).
	StreamFallbackAfter time.Duration
	// DisableHints turns hinted handoff off: a replica that misses a write
	// gets it from read repair or anti-entropy only. For tests of those.
	DisableHints bool
	// MaxHintBytesPerTarget bounds the hints this node holds for one
	// target, in bytes of hint records (key, target and the encoded
	// record: about the key and value plus 30 bytes). A hint that would
	// pass it is dropped and counted (kvs_node_hints_dropped_total
	// {reason="cap"}); held hints are never evicted for it (see hints.go).
	// Default DefaultMaxHintBytesPerTarget (64 MiB); negative: no bound.
	MaxHintBytesPerTarget int64
	// MaxHintBytes bounds all the hints this node holds, in the same bytes
	// and the same way. Default DefaultMaxHintBytes (256 MiB); negative: no
	// bound.
	MaxHintBytes int64
	// MaxScanRequests bounds how many of its peers' requests that scan the
	// store or copy hash trees (anti-entropy leaves and keys, stream pages)
	// this node serves at once. Beyond it a request is refused at once
	// with an ErrOverloaded error reply, and counted
	// (kvs_node_scan_requests_refused_total); the anti-entropy round
	// fails and runs again at the next interval, the stream pull retries
	// after its backoff. Default DefaultMaxScanRequests; negative: no
	// bound (the transport runs up to 256 handlers of one operation at
	// once).
	MaxScanRequests int
	// BatchInFlight is how many messages of put, get or hint requests may
	// be in flight to one peer for one operation; a request sent while
	// that many are is queued, and the next message to go takes every
	// request queued, as one batch (batcher.go). A request that finds a
	// free slot is sent at once, so batching adds no latency at low load.
	// Default DefaultBatchInFlight; -1 disables batching (every request
	// is sent on its own).
	BatchInFlight int
	// MaxBatchRequests bounds the requests of one batch (default
	// DefaultMaxBatchRequests, at most 1024).
	MaxBatchRequests int
	// MaxBatchBytes bounds the requests of one batch in bytes (default
	// DefaultMaxBatchBytes, at most DefaultMaxValueBytes so that a batch
	// fits the bus's default max payload; keep it under the bus's max
	// payload when that is lowered). A larger request is sent on its own.
	MaxBatchBytes int
	// HintWindow is how long a hint lives, on this node's clock from when
	// it was stored: an older one is dropped instead of delivered. No hint
	// is stored for a target down for longer than this (gossip's last
	// heartbeat). Default DefaultHintWindow (3h); negative: hints never
	// expire.
	HintWindow time.Duration
	// DisableReadRepair turns read repair off. For tests of anti-entropy.
	DisableReadRepair bool
	// DataDir holds this node's last known topology (topology.json), its
	// streaming state and the hint store (DataDir/hints). Required.
	DataDir string
	// Store is this node's replica storage; *lsm.DB satisfies it. Required.
	// The caller owns it: Close does not close it.
	Store Store
	// Hooks connects the Store's OnApply and TombstoneHorizon hooks
	// (lsm.Options) to the node, which keeps its anti-entropy hash trees
	// with them. Without it anti-entropy is off and tombstones are kept
	// until their grace period alone has passed.
	Hooks *StoreHooks
	// Transport carries requests and heartbeats between nodes. Required:
	// NewNATSTransport in production, MemNetwork in tests. The caller owns
	// it.
	Transport Transport
	// Clock is the source of wall-clock time for versions and liveness.
	// Nil means the real time.
	Clock Clock
	// Logger receives the node's logs. Nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the node's Prometheus collectors. Nil means no
	// metrics are registered.
	Registerer prometheus.Registerer
}

// Store is a replica's storage: versioned records, applied only when newer.
// *lsm.DB satisfies it.
type Store interface {
	// Apply stores rec if its version is newer than the one held for its
	// key, atomically per key, durably before it returns. It returns the
	// version held afterwards and whether rec was applied.
	Apply(rec lsm.Record) (held lsm.Version, applied bool, err error)
	// ApplyBatch applies each record of recs as Apply would (of several
	// records of one key, only the newest can), in few WAL writes and
	// fsyncs, and returns how many it applied. Each record is atomic, the
	// batch is not (lsm.DB.ApplyBatch); an invalid record fails the whole
	// call before anything is written.
	ApplyBatch(recs []lsm.Record) (applied int, err error)
	// ApplyBatchResults is ApplyBatch that also fills res (of len(recs))
	// with what Apply would have returned for each record: the version its
	// key holds afterwards and whether it applied (lsm.DB.ApplyBatchResults).
	ApplyBatchResults(recs []lsm.Record, res []lsm.ApplyResult) (applied int, err error)
	// Get returns the newest record of key, tombstones included, or an
	// error wrapping lsm.ErrNotFound.
	Get(key []byte) (lsm.Record, error)
	// Scan calls fn for each record with start <= key < end (nil end: no
	// bound) in key order, tombstones included, until fn returns false.
	Scan(start, end []byte, fn func(lsm.Record) bool) error
	// ScanAt is Scan that calls atSnapshot while the snapshot is taken,
	// ordered with the OnApply hook calls (lsm.DB.ScanAt).
	ScanAt(start, end []byte, atSnapshot func(), fn func(lsm.Record) bool) error
	// Purge drops key's record if it is still at version v, leaving
	// nothing (not a tombstone): a later write of any version applies.
	Purge(key []byte, v lsm.Version) (bool, error)
}

// Validate fills defaults and reports invalid values with errors wrapping
// ErrInvalidConfig.
func (c *Config) Validate() error {
	if c.ID == "" {
		return fmt.Errorf("%w: ID is required", ErrInvalidConfig)
	}
	if err := validToken(c.ID); err != nil {
		return fmt.Errorf("%w: ID: %w", ErrInvalidConfig, err)
	}
	if c.Cluster == "" {
		c.Cluster = DefaultCluster
	}
	if err := validToken(c.Cluster); err != nil {
		return fmt.Errorf("%w: Cluster: %w", ErrInvalidConfig, err)
	}
	if c.N == 0 {
		c.N = DefaultN
	}
	if c.W == 0 {
		c.W = min(DefaultW, c.N)
	}
	if c.R == 0 {
		c.R = min(DefaultR, c.N)
	}
	if c.N < 1 || c.N > 16 {
		return fmt.Errorf("%w: N %d out of range [1, 16]", ErrInvalidConfig, c.N)
	}
	if c.W < 1 || c.W > c.N {
		return fmt.Errorf("%w: W %d out of range [1, N=%d]", ErrInvalidConfig, c.W, c.N)
	}
	if c.R < 1 || c.R > c.N {
		return fmt.Errorf("%w: R %d out of range [1, N=%d]", ErrInvalidConfig, c.R, c.N)
	}
	if c.VNodes == 0 {
		c.VNodes = ring.DefaultVNodes
	}
	if c.VNodes < 1 || c.VNodes > 1<<16 {
		return fmt.Errorf("%w: VNodes %d out of range [1, 65536]", ErrInvalidConfig, c.VNodes)
	}
	if c.GossipInterval == 0 {
		c.GossipInterval = DefaultGossipInterval
	}
	if c.GossipInterval < 0 {
		return fmt.Errorf("%w: GossipInterval %v < 0", ErrInvalidConfig, c.GossipInterval)
	}
	if c.DownAfter == 0 {
		c.DownAfter = 3 * c.GossipInterval
	}
	if c.DownAfter < c.GossipInterval {
		return fmt.Errorf("%w: DownAfter %v shorter than GossipInterval %v", ErrInvalidConfig, c.DownAfter, c.GossipInterval)
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.RequestTimeout < 0 {
		return fmt.Errorf("%w: RequestTimeout %v < 0", ErrInvalidConfig, c.RequestTimeout)
	}
	if c.AntiEntropyInterval == 0 {
		c.AntiEntropyInterval = DefaultAntiEntropyInterval
	}
	if c.MaxValueBytes == 0 {
		c.MaxValueBytes = DefaultMaxValueBytes
	}
	if c.MaxValueBytes < 0 || c.MaxValueBytes > DefaultMaxValueBytes {
		return fmt.Errorf("%w: MaxValueBytes %d out of range [1, %d]", ErrInvalidConfig, c.MaxValueBytes, DefaultMaxValueBytes)
	}
	if c.NeedPeers < 0 {
		return fmt.Errorf("%w: NeedPeers %d < 0", ErrInvalidConfig, c.NeedPeers)
	}
	if c.DataDir == "" {
		return fmt.Errorf("%w: DataDir is required (ring and hints are persisted there)", ErrInvalidConfig)
	}
	if c.Store == nil {
		return fmt.Errorf("%w: Store is required", ErrInvalidConfig)
	}
	if c.Transport == nil {
		return fmt.Errorf("%w: Transport is required", ErrInvalidConfig)
	}
	if c.Topology == nil {
		return fmt.Errorf("%w: Topology is required", ErrInvalidConfig)
	}
	if c.StreamThroughput == 0 {
		c.StreamThroughput = DefaultStreamThroughput
	}
	if c.StreamFallbackAfter == 0 {
		c.StreamFallbackAfter = DefaultStreamFallbackAfter
	}
	if c.StreamFallbackAfter < 0 {
		return fmt.Errorf("%w: StreamFallbackAfter %v < 0", ErrInvalidConfig, c.StreamFallbackAfter)
	}
	if c.MaxHintBytesPerTarget == 0 {
		c.MaxHintBytesPerTarget = DefaultMaxHintBytesPerTarget
	}
	if c.MaxHintBytes == 0 {
		c.MaxHintBytes = DefaultMaxHintBytes
	}
	if c.HintWindow == 0 {
		c.HintWindow = DefaultHintWindow
	}
	if c.MaxScanRequests == 0 {
		c.MaxScanRequests = DefaultMaxScanRequests
	}
	if c.BatchInFlight == 0 {
		c.BatchInFlight = DefaultBatchInFlight
	}
	if c.BatchInFlight < -1 {
		return fmt.Errorf("%w: BatchInFlight %d, want -1 (no batching) or more than 0", ErrInvalidConfig, c.BatchInFlight)
	}
	if c.MaxBatchRequests == 0 {
		c.MaxBatchRequests = DefaultMaxBatchRequests
	}
	if c.MaxBatchRequests < 1 || c.MaxBatchRequests > maxBatchMessages {
		return fmt.Errorf("%w: MaxBatchRequests %d out of range [1, %d]", ErrInvalidConfig, c.MaxBatchRequests, maxBatchMessages)
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if c.MaxBatchBytes < 1 || c.MaxBatchBytes > DefaultMaxValueBytes {
		return fmt.Errorf("%w: MaxBatchBytes %d out of range [1, %d]", ErrInvalidConfig, c.MaxBatchBytes, DefaultMaxValueBytes)
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// validToken reports whether s can be one token of a NATS subject, as node
// IDs and cluster names must be.
func validToken(s string) error {
	if err := bus.ValidToken(s); err != nil {
		return err
	}
	if len(s) > maxTargetBytes {
		return fmt.Errorf("longer than %d bytes", maxTargetBytes)
	}
	return nil
}
