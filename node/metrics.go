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
	requests       *prometheus.CounterVec
	latency        *prometheus.HistogramVec
	replicaErrors  *prometheus.CounterVec
	badRequests    *prometheus.CounterVec
	hintsStored    prometheus.Counter
	hintsForwarded prometheus.Counter
	hintsDelivered prometheus.Counter
	readRepairs    prometheus.Counter
	restamps       prometheus.Counter
	aeRounds       prometheus.Counter
	aeKeysPushed   prometheus.Counter
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
	}
	if reg == nil {
		return m, nil
	}
	reg = prometheus.WrapRegistererWith(prometheus.Labels{"node": n.self}, reg)
	cs := []prometheus.Collector{
		m.requests, m.latency, m.replicaErrors, m.badRequests,
		m.hintsStored, m.hintsForwarded, m.hintsDelivered, m.readRepairs, m.restamps,
		m.aeRounds, m.aeKeysPushed,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "kvs", Subsystem: "node", Name: "hints_pending",
			Help: "Hints held by this node, not yet delivered.",
		}, func() float64 { return float64(n.hints.total()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "kvs", Subsystem: "node", Name: "ring_members",
			Help: "Members of the ring as this node knows it.",
		}, func() float64 { return float64(n.mem.ring().Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "kvs", Subsystem: "node", Name: "members_alive",
			Help: "Ring members this node considers alive (itself included).",
		}, func() float64 {
			alive := 0
			for _, m := range n.mem.snapshot() {
				if m.alive {
					alive++
				}
			}
			return float64(alive)
		}),
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
