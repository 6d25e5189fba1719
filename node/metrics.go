package node

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the node's Prometheus collectors. They exist whether or not a
// Registerer is given; without one they are simply not exported. Every
// collector carries the constant label node=<ID>, so that several nodes of
// one process (tests, `kvs dev`) can share a registry.
type metrics struct {
	requests          *prometheus.CounterVec
	latency           *prometheus.HistogramVec
	replicaErrors     *prometheus.CounterVec
	badRequests       *prometheus.CounterVec
	hintsStored       prometheus.Counter
	hintsForwarded    prometheus.Counter
	hintsDelivered    prometheus.Counter
	readRepairs       prometheus.Counter
	restamps          prometheus.Counter
	aeRounds          prometheus.Counter
	aeKeysPushed      prometheus.Counter
	aeKeysPulled      prometheus.Counter
	aeBytes           prometheus.Counter
	aeRangesDiffering prometheus.Counter
	gossipDropped     *prometheus.CounterVec
	staleRefused      prometheus.Counter
	staleRetries      prometheus.Counter
	streamKeys        prometheus.Counter
	streamBytes       prometheus.Counter
	cleanupPurged     prometheus.Counter
	hintsDropped      *prometheus.CounterVec
	scansRefused      *prometheus.CounterVec
	batchRequests     *prometheus.HistogramVec
	speculativeReads  prometheus.Counter
}

func newMetrics(n *Node, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kvs", Subsystem: "node", Name: "requests_total",
			Help: "Client requests coordinated by this node, by operation and result (ok, not_found, quorum, invalid, not_ready, error).",
		}, []string{"op", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "kvs", Subsystem: "node", Name: "request_seconds",
			Help:    "Latency of client requests coordinated by this node.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"op"}),
		replicaErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kvs", Subsystem: "node", Name: "replica_errors_total",
			Help: "Replica requests that failed or timed out, by operation.",
		}, []string{"op"}),
		badRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kvs", Subsystem: "node", Name: "malformed_requests_total",
			Help: "Malformed internal requests answered with an error, by operation.",
		}, []string{"op"}),
		hintsStored: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvs", Subsystem: "node", Name: "hints_stored_total",
			Help: "Hints stored in this node's hint store.",
		}),
		hintsForwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvs", Subsystem: "node", Name: "hints_forwarded_total",
			Help: "Hints handed to the next healthy node past a preference list.",
		}),
		hintsDelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvs", Subsystem: "node", Name: "hints_delivered_total",
			Help: "Hints delivered to their target and deleted.",
		}),
		readRepairs: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvs", Subsystem: "node", Name: "read_repairs_total",
			Help: "Stale or missing replicas sent the newest record after a read.",
		}),
		restamps: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvs", Subsystem: "node", Name: "write_restamps_total",
			Help: "Writes re-stamped because a replica held a newer version than the coordinator's clock.",
		}),
		aeRounds: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvs", Subsystem: "node", Name: "antientropy_rounds_total",
			Help: "Anti-entropy rounds run with a peer.",
		}),
		aeKeysPushed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvs", Subsystem: "node", Name: "antientropy_keys_pushed_total",
			Help: "Records pushed to a peer that lacked them or held them older, by anti-entropy.",
		}),
		aeKeysPulled: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvs", Subsystem: "node", Name: "antientropy_keys_pulled_total",
			Help: "Records pulled from a peer that held them newer, by anti-entropy.",
		}),
		aeBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvs", Subsystem: "node", Name: "antientropy_bytes_sent_total",
			Help: "Bytes of anti-entropy requests (roots, leaves, key lists) this node sent.",
		}),
		aeRangesDiffering: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvs", Subsystem: "node", Name: "antientropy_ranges_differing_total",
			Help: "Ranges whose hash tree roots differed from a peer's in an anti-entropy round.",
		}),
		gossipDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kvs", Subsystem: "node", Name: "gossip_dropped_total",
			Help: "Heartbeats dropped unread, by reason: oversized, malformed, foreign (another cluster, a bad ID, this node's own ID), not_member.",
		}, []string{"reason"}),
		staleRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvs", Subsystem: "node", Name: "stale_epoch_refused_total",
			Help: "Replica requests refused because their coordinator planned them at an older topology epoch.",
		}),
		staleRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvs", Subsystem: "node", Name: "stale_epoch_retries_total",
			Help: "Client requests planned again after a replica reported a newer topology epoch.",
		}),
		streamKeys: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvs", Subsystem: "node", Name: "stream_keys_total",
			Help: "Records received by streaming ranges this node gained in a topology change.",
		}),
		streamBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvs", Subsystem: "node", Name: "stream_bytes_total",
			Help: "Key and value bytes received by streaming ranges this node gained.",
		}),
		cleanupPurged: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvs", Subsystem: "node", Name: "cleanup_keys_total",
			Help: "Records dropped because this node no longer replicates their range.",
		}),
		hintsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kvs", Subsystem: "node", Name: "hints_dropped_total",
			Help: "Hints not stored or not delivered, by reason: cap (the hint store's byte cap, per target or in all, was reached), " +
				"expired (held longer than the hint window), target_down (its target was down longer than the hint window), " +
				"not_member (its target is not a member of the ring, or left it), not_held (its target no longer replicates the key), " +
				"error (the hint store failed to write it).",
		}, []string{"reason"}),
		scansRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kvs", Subsystem: "node", Name: "scan_requests_refused_total",
			Help: "Scan-heavy requests from peers (leaves, keys, stream) refused as overloaded because MaxScanRequests were in progress, by operation.",
		}, []string{"op"}),
		speculativeReads: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvs", Subsystem: "node", Name: "speculative_reads_total",
			Help: "Reads that asked one more replica because one asked was slower than its usual latency.",
		}),
		batchRequests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "kvs", Subsystem: "node", Name: "replica_message_requests",
			Help:    "Replica requests (put, get, hint) per message sent to a peer: 1 for a request sent on its own, more for a batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 9),
		}, []string{"op"}),
	}
	for _, r := range hintDropReasons {
		m.hintsDropped.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	reg = prometheus.WrapRegistererWith(prometheus.Labels{"node": n.self}, reg)
	cs := []prometheus.Collector{
		m.requests, m.latency, m.replicaErrors, m.badRequests,
		m.hintsStored, m.hintsForwarded, m.hintsDelivered, m.readRepairs, m.restamps,
		m.aeRounds, m.aeKeysPushed, m.aeKeysPulled, m.aeBytes, m.aeRangesDiffering, m.gossipDropped, m.staleRefused, m.staleRetries,
		m.streamKeys, m.streamBytes, m.cleanupPurged, m.hintsDropped, m.scansRefused, m.batchRequests, m.speculativeReads,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "kvs", Subsystem: "node", Name: "scan_requests_in_progress",
			Help: "Scan-heavy requests from peers this node is serving (at most MaxScanRequests).",
		}, func() float64 { return float64(len(n.scans)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "kvs", Subsystem: "node", Name: "hints_pending",
			Help: "Hints held by this node, not yet delivered.",
		}, func() float64 { return float64(n.hints.total()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "kvs", Subsystem: "node", Name: "hints_pending_bytes",
			Help: "Bytes of the hints held by this node (hint key and encoded record), what the hint caps bound.",
		}, func() float64 { return float64(n.hints.totalBytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "kvs", Subsystem: "node", Name: "ring_members",
			Help: "Members of the ring (joining, normal and leaving) as this node knows it.",
		}, func() float64 { return float64(len(n.Status().Members)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "kvs", Subsystem: "node", Name: "members_alive",
			Help: "Ring members this node considers alive (itself included).",
		}, func() float64 {
			alive := 0
			for _, m := range n.Status().Members {
				if m.Alive {
					alive++
				}
			}
			return float64(alive)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "kvs", Subsystem: "node", Name: "topology_epoch",
			Help: "The topology epoch this node acts on.",
		}, func() float64 { return float64(n.epoch()) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("node: register metrics: %w", err)
		}
	}
	return m, nil
}

// done records the outcome of one client request.
func (m *metrics) done(op string, start time.Time, err error) {
	m.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	m.requests.WithLabelValues(op, resultLabel(err)).Inc()
}

func resultLabel(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrQuorum):
		return "quorum"
	case errors.Is(err, ErrNotReady):
		return "not_ready"
	case errors.Is(err, ErrInvalidKey), errors.Is(err, ErrValueTooLarge), errors.Is(err, ErrInvalidQuorum):
		return "invalid"
	}
	return "error"
}
