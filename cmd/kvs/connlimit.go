package main

import (
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// connLimiter is a listener that serves at most max connections at once,
// so that clients cannot take the file descriptors the store needs. When
// all slots are taken, Accept holds the connection it accepted (one
// descriptor more, at most) and makes room: it closes the connection that
// has been idle between keep-alive requests the longest, or the next one
// to turn idle, or waits for one to end. Further clients wait in the
// kernel's backlog, where they cost this process no descriptor.
//
// Its ConnState method must be the http.Server's ConnState hook: that is
// how it knows which connections are idle.
type connLimiter struct {
	net.Listener
	slots chan struct{}
	done  chan struct{}
	once  sync.Once

	mu      sync.Mutex
	idle    map[net.Conn]time.Time // idle connections and since when
	waiting bool                   // Accept waits for a slot

	open       prometheus.GaugeFunc
	waits      prometheus.Counter
	idleClosed prometheus.Counter
}

// newConnLimiter limits ln to max open connections.
func newConnLimiter(ln net.Listener, max int) *connLimiter {
	l := &connLimiter{
		Listener: ln,
		slots:    make(chan struct{}, max),
		done:     make(chan struct{}),
		idle:     map[net.Conn]time.Time{},
		waits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kvs_http_connection_waits_total",
			Help: "Connections that found every --max-conns slot taken and waited in the backlog for one.",
		}),
		idleClosed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kvs_http_idle_connections_closed_total",
			Help: "Idle keep-alive connections closed to make room for a new connection at --max-conns.",
		}),
	}
	l.open = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kvs_http_connections",
		Help: "HTTP connections open now (at most --max-conns).",
	}, func() float64 { return float64(len(l.slots)) })
	return l
}

// collectors returns the limiter's metrics, and the limit as a constant.
func (l *connLimiter) collectors() []prometheus.Collector {
	limit := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kvs_http_max_connections",
		Help: "The --max-conns limit on open HTTP connections.",
	})
	limit.Set(float64(cap(l.slots)))
	return []prometheus.Collector{l.open, l.waits, l.idleClosed, limit}
}

// Accept accepts a connection and returns it once it has a slot, which
// it frees when closed.
func (l *connLimiter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	select {
	case l.slots <- struct{}{}:
	default:
		l.waits.Inc()
		l.setWaiting(true)
		l.closeOldestIdle()
		select {
		case l.slots <- struct{}{}:
			l.setWaiting(false)
		case <-l.done:
			l.setWaiting(false)
			c.Close()
			return nil, net.ErrClosed
		}
	}
	return &limitedConn{Conn: c, l: l}, nil
}

// Close closes the listener and wakes an Accept waiting for a slot.
func (l *connLimiter) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

func (l *connLimiter) setWaiting(w bool) {
	l.mu.Lock()
	l.waiting = w
	l.mu.Unlock()
}

// ConnState tracks which connections are idle; install it as
// http.Server.ConnState. A connection that turns idle while Accept waits
// for a slot is closed at once, to make room.
func (l *connLimiter) ConnState(c net.Conn, s http.ConnState) {
	l.mu.Lock()
	closeIt := false
	switch {
	case s == http.StateIdle && l.waiting:
		closeIt = true
	case s == http.StateIdle:
		l.idle[c] = time.Now()
	default:
		delete(l.idle, c)
	}
	l.mu.Unlock()
	if closeIt {
		c.Close()
		l.idleClosed.Inc()
	}
}

// closeOldestIdle closes the connection idle the longest, if any. The
// server's own IdleTimeout closes idle connections the same way, and a
// client that sent a request on it at that moment sees the same error.
func (l *connLimiter) closeOldestIdle() {
	l.mu.Lock()
	var oldest net.Conn
	var since time.Time
	for c, t := range l.idle {
		if oldest == nil || t.Before(since) {
			oldest, since = c, t
		}
	}
	delete(l.idle, oldest)
	l.mu.Unlock()
	if oldest != nil {
		oldest.Close()
		l.idleClosed.Inc()
	}
}

// limitedConn frees its slot once, on its first Close.
type limitedConn struct {
	net.Conn
	l    *connLimiter
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { <-c.l.slots })
	return err
}
