package node

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// MemNetwork is an in-memory network of nodes for tests. Each node gets its
// Transport with Transport(id). A node can be stopped (requests to and from
// it fail at once, as with a killed process: "no responders"), paused
// (requests to and from it hang until their context ends, as with a SIGSTOPped
// process) or partitioned from one peer; heartbeats follow the same rules.
// Requests are served synchronously in the caller's goroutine.
type MemNetwork struct {
	mu        sync.Mutex
	nodes     map[string]*memNode
	stopped   map[string]bool
	paused    map[string]bool
	partition map[[2]string]bool
	events    []MemEvent
	requests  map[string]int // requests addressed to each node
}

// MemEvent is one event published on a MemNetwork's change feed.
type MemEvent struct {
	// From is the publishing node; Op the event's operation (put, delete).
	From, Op string
	// Msg is the event's JSON document.
	Msg []byte
}

type memNode struct {
	handlers  map[string]*memHandler
	listeners []*memListener
}

type memHandler struct{ h Handler }

type memListener struct{ fn func([]byte) }

// NewMemNetwork returns an empty network.
func NewMemNetwork() *MemNetwork {
	return &MemNetwork{
		nodes:     map[string]*memNode{},
		stopped:   map[string]bool{},
		paused:    map[string]bool{},
		partition: map[[2]string]bool{},
		requests:  map[string]int{},
	}
}

// Transport returns the transport of node id. Calling it again for the same
// id (a restarted node) returns a transport sharing the node's slot: the
// handlers a closed node unsubscribed are gone, new ones replace them.
func (m *MemNetwork) Transport(id string) Transport {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.nodes[id] == nil {
		m.nodes[id] = &memNode{handlers: map[string]*memHandler{}}
	}
	return &memTransport{net: m, id: id}
}

// Stop makes node id unreachable: requests to or from it fail at once, and
// its heartbeats are not delivered, nor are others' delivered to it.
func (m *MemNetwork) Stop(id string) { m.set(m.stopped, id, true) }

// Start undoes Stop.
func (m *MemNetwork) Start(id string) { m.set(m.stopped, id, false) }

// Pause makes requests to or from node id hang until their context ends,
// and drops heartbeats to and from it.
func (m *MemNetwork) Pause(id string) { m.set(m.paused, id, true) }

// Resume undoes Pause.
func (m *MemNetwork) Resume(id string) { m.set(m.paused, id, false) }

// Partition cuts the link between a and b both ways: requests between them
// fail at once and heartbeats are dropped.
func (m *MemNetwork) Partition(a, b string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.partition[[2]string{a, b}] = true
	m.partition[[2]string{b, a}] = true
}

// Heal undoes Partition(a, b).
func (m *MemNetwork) Heal(a, b string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.partition, [2]string{a, b})
	delete(m.partition, [2]string{b, a})
}

// Requests returns the number of requests sent to node id so far, delivered
// or not.
func (m *MemNetwork) Requests(id string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.requests[id]
}

// Events returns the events published so far. The caller owns the slice.
func (m *MemNetwork) Events() []MemEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.events)
}

func (m *MemNetwork) set(set map[string]bool, id string, v bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v {
		set[id] = true
	} else {
		delete(set, id)
	}
}

// link reports how a message from a to b fares: "" delivered, "stopped",
// "paused" or "partitioned". Callers hold m.mu.
func (m *MemNetwork) link(a, b string) string {
	switch {
	case m.stopped[a] || m.stopped[b]:
		return "stopped"
	case m.paused[a] || m.paused[b]:
		return "paused"
	case m.partition[[2]string{a, b}]:
		return "partitioned"
	}
	return ""
}

type memTransport struct {
	net *MemNetwork
	id  string
}

var _ Transport = (*memTransport)(nil)

func (t *memTransport) Request(ctx context.Context, to, op string, req []byte) ([]byte, error) {
	m := t.net
	m.mu.Lock()
	m.requests[to]++
	state := m.link(t.id, to)
	var h *memHandler
	if n := m.nodes[to]; n != nil {
		h = n.handlers[op]
	}
	m.mu.Unlock()
	switch {
	case state == "paused":
		<-ctx.Done()
		return nil, fmt.Errorf("%w: %s %s: %w", ErrUnreachable, to, op, ctx.Err())
	case state != "":
		return nil, fmt.Errorf("%w: %s %s: %s", ErrUnreachable, to, op, state)
	case h == nil:
		return nil, fmt.Errorf("%w: %s %s: no responders", ErrUnreachable, to, op)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s %s: %w", ErrUnreachable, to, op, err)
	}
	return h.h(slices.Clone(req)), nil
}

func (t *memTransport) Handle(op string, h Handler) (func() error, error) {
	m := t.net
	mh := &memHandler{h: h}
	m.mu.Lock()
	m.nodes[t.id].handlers[op] = mh
	m.mu.Unlock()
	return func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		if n := m.nodes[t.id]; n.handlers[op] == mh {
			delete(n.handlers, op)
		}
		return nil
	}, nil
}

func (t *memTransport) Broadcast(msg []byte) error {
	m := t.net
	m.mu.Lock()
	var fns []func([]byte)
	for id, n := range m.nodes {
		if id == t.id || m.link(t.id, id) != "" {
			continue
		}
		for _, l := range n.listeners {
			fns = append(fns, l.fn)
		}
	}
	m.mu.Unlock()
	for _, fn := range fns {
		fn(slices.Clone(msg))
	}
	return nil
}

func (t *memTransport) OnBroadcast(fn func([]byte)) (func() error, error) {
	m := t.net
	l := &memListener{fn: fn}
	m.mu.Lock()
	n := m.nodes[t.id]
	n.listeners = append(n.listeners, l)
	m.mu.Unlock()
	return func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		n.listeners = slices.DeleteFunc(n.listeners, func(x *memListener) bool { return x == l })
		return nil
	}, nil
}

// EventInterest is always true: the in-memory network records every event
// for tests to read (MemNetwork.Events).
func (t *memTransport) EventInterest(string) bool { return true }

func (t *memTransport) PublishEvent(op string, msg []byte) error {
	m := t.net
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.events) < 100000 {
		m.events = append(m.events, MemEvent{From: t.id, Op: op, Msg: slices.Clone(msg)})
	}
	return nil
}
