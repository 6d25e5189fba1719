package node

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Gossip carries liveness only. Each node publishes a small JSON heartbeat
// every GossipInterval; a member unheard for DownAfter is down. A
// heartbeat speaks for its sender alone: it never adds or removes a member
// (the topology does that), and one from a node that is not a member only
// counts toward founding a new cluster (Config.NeedPeers). Oversized,
// malformed and foreign heartbeats are dropped and counted.

// heartbeat is the gossip message, JSON so that `nats sub` shows it readably:
//
//	{"id":"n1","cluster":"kvs","http":"127.0.0.1:8081","ts_ms":1764093600000,
//	 "ready":true,"epoch":3,"n":3,"vnodes":100}
type heartbeat struct {
	ID      string `json:"id"`
	Cluster string `json:"cluster"`
	HTTP    string `json:"http,omitempty"`
	TsMs    int64  `json:"ts_ms"`
	Ready   bool   `json:"ready"`
	// Epoch is the topology epoch the sender acts on; 0 before it knows a
	// topology. A node founding a cluster waits while a peer reports one.
	Epoch uint64 `json:"epoch"`
	// N and VNodes are the sender's configuration, for operators.
	N      int `json:"n"`
	VNodes int `json:"vnodes"`
}

// maxHeartbeatBytes bounds a heartbeat: a real one is about 150 bytes (IDs
// are at most 255). Larger ones are dropped unread.
const maxHeartbeatBytes = 1024

// maxCandidates bounds the non-members remembered for founding a cluster,
// so that a flood of made-up senders costs a bounded amount of memory.
const maxCandidates = 64

// Reasons a heartbeat is dropped, the label of kvs_node_gossip_dropped_total.
const (
	dropOversized = "oversized"
	dropMalformed = "malformed"
	dropForeign   = "foreign"    // another cluster, an invalid ID, or this node's own ID
	dropNotMember = "not_member" // a valid sender that is not a member
)

type peerState struct {
	http     string
	lastSeen time.Time // last heartbeat, or when it became a member
	heard    bool      // a heartbeat arrived since this node started
	down     bool      // last known liveness, to notice a return
	epoch    uint64    // the epoch its last heartbeat reported
}

// membership tracks the liveness of the topology's members.
type membership struct {
	cfg     *Config
	log     *slog.Logger
	wake    func()              // a peer came back: run handoff now
	dropped func(reason string) // counts a dropped heartbeat
	closed  atomic.Bool

	mu    sync.Mutex
	peers map[string]*peerState // members other than this node
	cands map[string]*peerState // heard non-members, at most maxCandidates
}

func newMembership(cfg *Config, log *slog.Logger, wake func(), dropped func(string)) *membership {
	return &membership{
		cfg: cfg, log: log, wake: wake, dropped: dropped,
		peers: map[string]*peerState{},
		cands: map[string]*peerState{},
	}
}

func (m *membership) setClosed() { m.closed.Store(true) }

// setMembers makes ids (this node excluded) the tracked members. A new
// member is presumed up until DownAfter passes unheard, so that a node
// does not hint every write to a member it just learned of.
func (m *membership) setMembers(ids []string) {
	now := m.cfg.Clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for id := range m.peers {
		if !slices.Contains(ids, id) {
			delete(m.peers, id)
		}
	}
	for _, id := range ids {
		if id == m.cfg.ID || m.peers[id] != nil {
			continue
		}
		if c := m.cands[id]; c != nil {
			m.peers[id] = c
			delete(m.cands, id)
			continue
		}
		m.peers[id] = &peerState{lastSeen: now}
	}
}

// alive reports whether id is up: the node itself always is; a member is
// when it was heard from (or became a member) within DownAfter.
func (m *membership) alive(id string) bool {
	if id == m.cfg.ID {
		return true
	}
	now := m.cfg.Clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.peers[id]
	return s != nil && now.Sub(s.lastSeen) <= m.cfg.DownAfter
}

// downFor returns how long member id has been down: 0 while it is alive
// (and for this node, or an id that is not a member), else the time since
// it was last heard from (or became a member, if never since this node
// started).
func (m *membership) downFor(id string) time.Duration {
	if id == m.cfg.ID {
		return 0
	}
	now := m.cfg.Clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.peers[id]
	if s == nil {
		return 0
	}
	if d := now.Sub(s.lastSeen); d > m.cfg.DownAfter {
		return d
	}
	return 0
}

// heartbeat builds this node's heartbeat.
func (m *membership) heartbeat(ready bool, epoch uint64) []byte {
	b, _ := json.Marshal(heartbeat{
		ID:      m.cfg.ID,
		Cluster: m.cfg.Cluster,
		HTTP:    m.cfg.HTTPAddr,
		TsMs:    m.cfg.Clock.Now().UnixMilli(),
		Ready:   ready,
		Epoch:   epoch,
		N:       m.cfg.N,
		VNodes:  m.cfg.VNodes,
	})
	return b
}

// onHeartbeat records a member's heartbeat, or a non-member's as a
// candidate for founding a cluster.
func (m *membership) onHeartbeat(b []byte) {
	if m.closed.Load() {
		return
	}
	if len(b) > maxHeartbeatBytes {
		m.dropped(dropOversized)
		return
	}
	var hb heartbeat
	if err := json.Unmarshal(b, &hb); err != nil {
		m.dropped(dropMalformed)
		return
	}
	if hb.ID == m.cfg.ID || validToken(hb.ID) != nil || hb.Cluster != m.cfg.Cluster {
		m.dropped(dropForeign)
		return
	}
	now := m.cfg.Clock.Now()
	m.mu.Lock()
	s := m.peers[hb.ID]
	if s == nil {
		m.candidate(hb, now)
		m.mu.Unlock()
		m.dropped(dropNotMember)
		return
	}
	returned := s.down || now.Sub(s.lastSeen) > m.cfg.DownAfter || !s.heard
	s.lastSeen, s.heard, s.down, s.http, s.epoch = now, true, false, hb.HTTP, hb.Epoch
	m.mu.Unlock()
	if returned {
		m.log.Info("peer up", "peer", hb.ID)
		m.wake()
	}
}

// candidate remembers a non-member's heartbeat; callers hold m.mu.
func (m *membership) candidate(hb heartbeat, now time.Time) {
	c := m.cands[hb.ID]
	if c == nil {
		if len(m.cands) >= maxCandidates {
			for id, old := range m.cands { // make room by forgetting a silent one
				if now.Sub(old.lastSeen) > m.cfg.DownAfter {
					delete(m.cands, id)
					break
				}
			}
			if len(m.cands) >= maxCandidates {
				return
			}
		}
		c = &peerState{}
		m.cands[hb.ID] = c
	}
	c.lastSeen, c.heard, c.http, c.epoch = now, true, hb.HTTP, hb.Epoch
}

// candidates returns the non-members heard from within DownAfter, sorted by
// ID, with the epoch each reported.
func (m *membership) candidates() (ids []string, https map[string]string, maxEpoch uint64) {
	now := m.cfg.Clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	https = map[string]string{}
	for id, c := range m.cands {
		if now.Sub(c.lastSeen) > m.cfg.DownAfter {
			continue
		}
		ids = append(ids, id)
		https[id] = c.http
		maxEpoch = max(maxEpoch, c.epoch)
	}
	slices.Sort(ids)
	return ids, https, maxEpoch
}

// markDowns notes members that went down, for logging.
func (m *membership) markDowns() {
	now := m.cfg.Clock.Now()
	var down []string
	m.mu.Lock()
	for id, s := range m.peers {
		if !s.down && now.Sub(s.lastSeen) > m.cfg.DownAfter {
			s.down = true
			down = append(down, id)
		}
	}
	m.mu.Unlock()
	for _, id := range down {
		m.log.Warn("peer down", "peer", id)
	}
}

// peerView is a member's liveness as this node sees it.
type peerView struct {
	http     string
	alive    bool
	lastSeen time.Time // zero if never heard since this node started
	epoch    uint64
}

// peer returns id's liveness (id is not this node).
func (m *membership) peer(id string) peerView {
	now := m.cfg.Clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.peers[id]
	if s == nil {
		return peerView{}
	}
	v := peerView{http: s.http, alive: now.Sub(s.lastSeen) <= m.cfg.DownAfter, epoch: s.epoch}
	if s.heard {
		v.lastSeen = s.lastSeen
	}
	return v
}

// gossipLoop publishes a heartbeat every GossipInterval.
func (n *Node) gossipLoop(ctx context.Context) {
	defer n.loops.Done()
	t := time.NewTicker(n.cfg.GossipInterval)
	defer t.Stop()
	for {
		if err := n.tr.Broadcast(n.mem.heartbeat(n.Ready() == nil, n.epoch())); err != nil {
			n.log.Debug("broadcast heartbeat", "err", err)
		}
		n.mem.markDowns()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
