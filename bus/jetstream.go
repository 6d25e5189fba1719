package bus

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// jsAPIServerRemove is the JetStream API subject that removes a server
	// from the meta group; only the system account may use it, and only
	// the meta leader answers, once the removal has committed.
	jsAPIServerRemove = "$JS.API.SERVER.REMOVE"
	// jsCodeServerNotMember is the JetStream error "server is not a
	// member of the cluster" (of the meta group).
	jsCodeServerNotMember = 10044
)

// MetaGroup is one server's view of the JetStream meta group: the Raft
// group of every JetStream server in the cluster, whose leader places
// buckets on servers.
type MetaGroup struct {
	// Leader is the server name (node ID) of the meta leader, "" while
	// there is none.
	Leader string
	// Peers are the members of the group, this server included, sorted by
	// name.
	Peers []MetaPeer
}

// MetaPeer is one member of the JetStream meta group.
type MetaPeer struct {
	// Name is the server name (node ID); "" when this server has not
	// learned it (a peer that has been down since this server started).
	Name string
	// ID is the Raft peer ID, a hash of the name.
	ID string
	// Current reports that the peer was recently seen and is caught up
	// with the leader (for this server: that it is the leader or caught
	// up with it).
	Current bool
	// Offline reports that the peer has not been seen recently.
	Offline bool
}

// Names returns the names of the peers, sorted; peers whose name is
// unknown are left out.
func (g MetaGroup) Names() []string {
	var names []string
	for _, p := range g.Peers {
		if p.Name != "" {
			names = append(names, p.Name)
		}
	}
	return names
}

// MetaGroup returns this server's view of the JetStream meta group. It
// asks nothing of other servers. While JetStream starts on a first start
// (see [Config.JetStreamDir]) it fails with [ErrUnavailable].
func (b *Bus) MetaGroup() (MetaGroup, error) {
	if b.js == nil {
		return MetaGroup{}, fmt.Errorf("bus: meta group: %w", ErrJetStreamDisabled)
	}
	if !b.jetStreamRunning() {
		return MetaGroup{}, fmt.Errorf("%w: meta group: JetStream is starting on this server", ErrUnavailable)
	}
	jsz, err := b.srv.Jsz(&server.JSzOptions{})
	if err != nil {
		return MetaGroup{}, fmt.Errorf("bus: meta group: %w", err)
	}
	if jsz.Meta == nil {
		return MetaGroup{}, errors.New("bus: meta group: JetStream is not clustered")
	}
	g := MetaGroup{Leader: jsz.Meta.Leader}
	self := b.cfg.NodeID
	g.Peers = append(g.Peers, MetaPeer{Name: self, ID: peerID(self), Current: b.srv.JetStreamIsCurrent()})
	for _, r := range jsz.Meta.Replicas {
		if r.Peer == peerID(self) {
			continue // listed while there is no leader
		}
		p := MetaPeer{Name: r.Name, ID: r.Peer, Current: r.Current || r.Name == g.Leader, Offline: r.Offline}
		if strings.HasPrefix(p.Name, "Server name unknown") {
			p.Name = ""
		}
		g.Peers = append(g.Peers, p)
	}
	slices.SortFunc(g.Peers, func(a, b MetaPeer) int { return strings.Compare(a.Name, b.Name) })
	return g, nil
}

// RemovePeer removes a server, named by its node ID, from the JetStream
// meta group, so that the group's quorum no longer counts it. Do it for a
// node that is gone for good: JetStream then moves the bucket replicas it
// held to other servers where it can. It asks the meta leader through
// the system account, and returns when the removal has committed.
//
// Removing a server that is not in the meta group (never was, or already
// removed) succeeds: it is logged at info and RemovePeer returns nil, so
// that a retry after a lost reply is harmless. With no meta leader or no
// quorum (nothing answers before ctx ends; [DefaultKVTimeout] without a
// deadline) or while another membership change is in flight, it fails
// with [ErrUnavailable].
//
// A removed name can come back, but not at once. For 5 minutes after the
// removal nats-server's Raft does not add that server back: a server
// started with the name in that time (with an empty JetStreamDir) routes,
// follows the meta leader and serves KV requests (they go to the stream
// leaders), but is not a member: it holds no replica and does not count
// for quorum, though its own [Bus.MetaGroup] lists it. After 5 minutes the
// leader adds it like a new server and buckets short of replicas place
// them on it (measured: 5 min 2 s).
//
// Such a server, like any server with an empty JetStreamDir, starts
// JetStream once it is routed to the cluster (see [Config.JetStreamDir]),
// so that it cannot elect a meta leader with other new servers alone.
func (b *Bus) RemovePeer(ctx context.Context, server string) error {
	if b.js == nil {
		return fmt.Errorf("bus: remove peer %s: %w", server, ErrJetStreamDisabled)
	}
	if err := ValidToken(server); err != nil {
		return fmt.Errorf("bus: remove peer: %w", err)
	}
	nc, err := b.sysConn()
	if err != nil {
		return fmt.Errorf("bus: remove peer %s: %w", server, err)
	}
	ctx, cancel := kvContext(ctx)
	defer cancel()
	// The peer ID, a hash of the name, finds the peer even when the meta
	// leader never learned its name (it has been down since the leader
	// started); the server name is kept for the server's logs.
	req, err := json.Marshal(struct {
		Server string `json:"peer"`
		Peer   string `json:"peer_id"`
	}{server, peerID(server)})
	if err != nil {
		return fmt.Errorf("bus: remove peer %s: %w", server, err)
	}
	notMember := false
	err = retry(ctx, func(ctx context.Context) error {
		msg, err := nc.RequestWithContext(ctx, jsAPIServerRemove, req)
		if err != nil {
			return err
		}
		var resp struct {
			Success bool                `json:"success"`
			Error   *jetstream.APIError `json:"error"`
		}
		if err := json.Unmarshal(msg.Data, &resp); err != nil {
			return fmt.Errorf("reply %q: %w", msg.Data, err)
		}
		switch {
		case resp.Error != nil && resp.Error.ErrorCode == jsCodeServerNotMember:
			notMember = true
		case resp.Error != nil:
			return resp.Error
		case !resp.Success:
			return fmt.Errorf("reply %q", msg.Data)
		}
		return nil
	})
	if err != nil {
		if s := classify(err); s != nil {
			return fmt.Errorf("%w: remove peer %s: %w", s, server, err)
		}
		return fmt.Errorf("bus: remove peer %s: %w", server, err)
	}
	if notMember {
		b.log.Info("remove peer: not in the JetStream meta group", slog.String("peer", server))
		return nil
	}
	b.log.Info("removed peer from the JetStream meta group", slog.String("peer", server))
	return nil
}

// sysConn returns the in-process system-account connection, opening it on
// first use.
func (b *Bus) sysConn() (*nats.Conn, error) {
	// Holding sysMu while reading closed orders this with Close, which
	// sets closed before it closes sysNC under sysMu.
	b.sysMu.Lock()
	defer b.sysMu.Unlock()
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if b.sysNC != nil {
		return b.sysNC, nil
	}
	nc, err := nats.Connect("",
		nats.InProcessServer(b.srv),
		nats.Name(b.cfg.NodeID+"-sys"),
		nats.UserInfo(nodeSystemUser, b.cfg.Secret))
	if err != nil {
		return nil, fmt.Errorf("system account connection: %w", err)
	}
	b.sysNC = nc
	return nc, nil
}

// peerID returns the JetStream Raft peer ID of a server name, as
// nats-server computes it (server/events.go getHash): the first 8 bytes of
// the name's SHA-256, each mapped to one of 62 letters and digits.
func peerID(name string) string {
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	sum := sha256.Sum256([]byte(name))
	id := make([]byte, 8)
	for i := range id {
		id[i] = digits[int(sum[i]%byte(len(digits)))]
	}
	return string(id)
}
