package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvs-db/kvs/ring"
)

// heartbeat is the gossip message, JSON so that `nats sub` shows it readably:
//
//	{"id":"n1","cluster":"kvs","http":"127.0.0.1:8081","members":["n1","n2","n3"],
//	 "ts_ms":1764093600000,"ready":true,"n":3,"vnodes":100}
type heartbeat struct {
	ID      string   `json:"id"`
	Cluster string   `json:"cluster"`
	HTTP    string   `json:"http,omitempty"`
	Members []string `json:"members"`
	TsMs    int64    `json:"ts_ms"`
	Ready   bool     `json:"ready"`
	// N and VNodes must agree across the cluster, or nodes place keys
	// differently; a mismatch is logged.
	N      int `json:"n"`
	VNodes int `json:"vnodes"`
}

// ringFile is the persisted ring in DataDir.
const ringFile = "ring.json"

type ringDoc struct {
	Members []string `json:"members"`
}

type memberState struct {
	http     string
	lastSeen time.Time // last heartbeat, or the time it was learned of
	heard    bool      // a heartbeat arrived since this node started
	down     bool      // last known liveness, to notice a return
	warned   bool      // a config mismatch was logged
}

// membership is the member table, liveness and the ring.
type membership struct {
	cfg    *Config
	log    *slog.Logger
	wake   func() // a peer came back: run handoff now
	rp     atomic.Pointer[ring.Ring]
	cfgR   ring.Config
	selfV  uint32
	closed atomic.Bool
	start  atomic.Bool

	mu        sync.Mutex
	members   map[string]*memberState // peers (not self)
	persisted bool                    // ring loaded from disk with enough peers
	isReady   bool                    // latched once ready
	capped    int                     // last logged effective N
	persistMu sync.Mutex              // serialises ring file writes
}

func newMembership(cfg *Config, log *slog.Logger, wake func()) (*membership, error) {
	m := &membership{
		cfg:     cfg,
		log:     log,
		wake:    wake,
		cfgR:    ring.Config{VNodes: cfg.VNodes},
		selfV:   NodeHash(cfg.ID),
		members: map[string]*memberState{},
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("node: data dir: %w", err)
	}
	saved, err := loadRing(filepath.Join(cfg.DataDir, ringFile))
	if err != nil {
		return nil, err
	}
	r, err := ring.New(append(saved, cfg.ID), m.cfgR)
	if err != nil {
		return nil, fmt.Errorf("node: ring: %w", err)
	}
	m.rp.Store(r)
	now := cfg.Clock.Now()
	for _, id := range r.Members() {
		if id != cfg.ID {
			// Optimistic until DownAfter passes unheard: a restarted node
			// must not hint every write in its first seconds.
			m.members[id] = &memberState{lastSeen: now}
		}
	}
	m.persisted = len(saved) > 0 && r.Len()-1 >= cfg.NeedPeers
	if !slices.Equal(saved, r.Members()) {
		if err := m.persist(r); err != nil {
			return nil, err
		}
	}
	m.logCap(r)
	return m, nil
}

func loadRing(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: read ring: %w", err)
	}
	var doc ringDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("node: ring file %s: %w", path, err)
	}
	for _, id := range doc.Members {
		if id == "" || validToken(id) != nil {
			return nil, fmt.Errorf("node: ring file %s: bad member %q", path, id)
		}
	}
	return doc.Members, nil
}

// persist writes the ring members atomically: temp file, fsync, rename,
// directory fsync.
func (m *membership) persist(r *ring.Ring) error {
	m.persistMu.Lock()
	defer m.persistMu.Unlock()
	if cur := m.rp.Load(); cur != nil && cur.Len() > r.Len() {
		r = cur // a concurrent join got here first; write the bigger ring
	}
	b, err := json.Marshal(ringDoc{Members: r.Members()})
	if err != nil {
		return fmt.Errorf("node: persist ring: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(m.cfg.DataDir, ringFile), append(b, '\n')); err != nil {
		return fmt.Errorf("node: persist ring: %w", err)
	}
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (m *membership) ring() *ring.Ring { return m.rp.Load() }

func (m *membership) setStarted() { m.start.Store(true) }
func (m *membership) setClosed()  { m.closed.Store(true) }

// alive reports whether id is up: the node itself always is; a peer is when
// it was heard from (or learned of) within DownAfter.
func (m *membership) alive(id string) bool {
	if id == m.cfg.ID {
		return true
	}
	now := m.cfg.Clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.members[id]
	return s != nil && now.Sub(s.lastSeen) <= m.cfg.DownAfter
}

// ready says whether the node may coordinate.
func (m *membership) ready() error {
	switch {
	case m.closed.Load():
		return fmt.Errorf("%w: closed", ErrNotReady)
	case !m.start.Load():
		return fmt.Errorf("%w: not started", ErrNotReady)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.isReady {
		return nil
	}
	heard := 0
	for _, s := range m.members {
		if s.heard {
			heard++
		}
	}
	if m.persisted || heard >= m.cfg.NeedPeers {
		m.isReady = true
		return nil
	}
	return fmt.Errorf("%w: heard from %d of %d peers needed, and no persisted ring", ErrNotReady, heard, m.cfg.NeedPeers)
}

// heartbeat builds this node's heartbeat.
func (m *membership) heartbeat(ready bool) []byte {
	b, _ := json.Marshal(heartbeat{
		ID:      m.cfg.ID,
		Cluster: m.cfg.Cluster,
		HTTP:    m.cfg.HTTPAddr,
		Members: m.ring().Members(),
		TsMs:    m.cfg.Clock.Now().UnixMilli(),
		Ready:   ready,
		N:       m.cfg.N,
		VNodes:  m.cfg.VNodes,
	})
	return b
}

// onHeartbeat records a peer's heartbeat: liveness, address, and ring
// members (the sender and every member it knows join the ring).
func (m *membership) onHeartbeat(b []byte) {
	if m.closed.Load() {
		return
	}
	var hb heartbeat
	if err := json.Unmarshal(b, &hb); err != nil {
		m.log.Debug("bad heartbeat", "err", err)
		return
	}
	if hb.ID == "" || hb.ID == m.cfg.ID || validToken(hb.ID) != nil || hb.Cluster != m.cfg.Cluster {
		return
	}
	now := m.cfg.Clock.Now()
	joined := []string{hb.ID}
	for _, id := range hb.Members {
		if validToken(id) == nil {
			joined = append(joined, id)
		}
	}
	// The ring grows (and is persisted) before the sender counts as heard,
	// so that readiness, which counts heard peers, never comes with a ring
	// that lacks the members they told us of.
	if cur := m.ring(); cur.With(joined...) != cur {
		m.mu.Lock()
		cur = m.ring() // again under mu: concurrent joins must not lose one another
		nr := cur.With(joined...)
		m.rp.Store(nr)
		for _, id := range nr.Members() {
			if id != m.cfg.ID && m.members[id] == nil {
				// Presumed up until DownAfter passes unheard.
				m.members[id] = &memberState{lastSeen: now}
				if NodeHash(id) == m.selfV {
					m.log.Error("node ID hash collision: versions of the two nodes could tie", "peer", id)
				}
			}
		}
		m.mu.Unlock()
		m.log.Info("ring members changed", "members", nr.Members())
		m.logCap(nr)
		if err := m.persist(nr); err != nil {
			m.log.Error("persist ring", "err", err)
		}
	}
	m.mu.Lock()
	s := m.members[hb.ID]
	if s == nil { // cannot happen: every ring member has an entry
		s = &memberState{}
		m.members[hb.ID] = s
	}
	returned := s.down || now.Sub(s.lastSeen) > m.cfg.DownAfter || !s.heard
	s.lastSeen, s.heard, s.down, s.http = now, true, false, hb.HTTP
	mismatch := (hb.N != m.cfg.N || hb.VNodes != m.cfg.VNodes) && !s.warned
	s.warned = s.warned || mismatch
	m.mu.Unlock()
	if mismatch {
		m.log.Error("peer configured differently: keys are placed inconsistently until N and VNodes agree",
			"peer", hb.ID, "peer_n", hb.N, "peer_vnodes", hb.VNodes, "n", m.cfg.N, "vnodes", m.cfg.VNodes)
	}
	if returned {
		m.log.Info("peer up", "peer", hb.ID)
		m.wake()
	}
}

// logCap logs when the ring is too small for N.
func (m *membership) logCap(r *ring.Ring) {
	nEff := min(m.cfg.N, r.Len())
	m.mu.Lock()
	changed := m.capped != nEff
	m.capped = nEff
	m.mu.Unlock()
	if changed && nEff < m.cfg.N {
		m.log.Info("replication capped at the number of ring members",
			"members", r.Len(), "n", nEff, "w", min(m.cfg.W, nEff), "r", min(m.cfg.R, nEff))
	}
}

// markDowns notes peers that went down, for logging.
func (m *membership) markDowns() {
	now := m.cfg.Clock.Now()
	var down []string
	m.mu.Lock()
	for id, s := range m.members {
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

type memberView struct {
	id, http string
	alive    bool
	lastSeen time.Time
}

// snapshot returns every ring member, sorted by ID.
func (m *membership) snapshot() []memberView {
	now := m.cfg.Clock.Now()
	r := m.ring()
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []memberView
	for _, id := range r.Members() {
		if id == m.cfg.ID {
			out = append(out, memberView{id: id, http: m.cfg.HTTPAddr, alive: true, lastSeen: now})
			continue
		}
		v := memberView{id: id}
		if s := m.members[id]; s != nil {
			v.http, v.alive = s.http, now.Sub(s.lastSeen) <= m.cfg.DownAfter
			if s.heard {
				v.lastSeen = s.lastSeen
			}
		}
		out = append(out, v)
	}
	return out
}

// gossipLoop publishes a heartbeat every GossipInterval.
func (n *Node) gossipLoop(ctx context.Context) {
	defer n.loops.Done()
	t := time.NewTicker(n.cfg.GossipInterval)
	defer t.Stop()
	for {
		if err := n.tr.Broadcast(n.mem.heartbeat(n.Ready() == nil)); err != nil {
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
