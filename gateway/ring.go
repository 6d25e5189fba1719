package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/kvs-db/kvs/node"
	"github.com/kvs-db/kvs/node/topology"
)

// RingJSON is the body of GET /ring and of the admin endpoints' answers:
// the topology as the answering node knows it. `kvs ring` decodes it.
type RingJSON struct {
	// Self answered.
	Self string `json:"self"`
	// ClusterID and Epoch identify the topology; Revision is its revision
	// in the topology store (0: only the answering node has it yet).
	ClusterID string `json:"cluster_id"`
	Epoch     uint64 `json:"epoch"`
	Revision  uint64 `json:"revision"`
	// N and VNodes are the cluster's.
	N      int `json:"n"`
	VNodes int `json:"vnodes"`
	// Members lists every member, removed ones included.
	Members []RingMemberJSON `json:"members"`
	// Change is the pending change; absent when none is.
	Change *RingChangeJSON `json:"change,omitempty"`
}

// RingMemberJSON is one member of RingJSON.
type RingMemberJSON struct {
	ID    string `json:"id"`
	State string `json:"state"`
	HTTP  string `json:"http,omitempty"`
	// Since is the epoch the member entered its state at.
	Since uint64 `json:"since"`
	// Alive and Epoch are its liveness and the epoch it last reported, as
	// the answering node sees them.
	Alive bool   `json:"alive"`
	Epoch uint64 `json:"epoch,omitempty"`
	// Ownership is its share of the key space as first replica;
	// Replicated its share as any replica.
	Ownership  float64 `json:"ownership"`
	Replicated float64 `json:"replicated"`
}

// RingChangeJSON is the pending change of RingJSON.
type RingChangeJSON struct {
	Kind     string   `json:"kind"`
	Node     string   `json:"node"`
	Epoch    uint64   `json:"epoch"`
	Gainers  []string `json:"gainers"`
	Streamed []string `json:"streamed"`
	// Transfers are the streams the change needs: gainer <- loser, share
	// of the key space.
	Transfers []TransferJSON `json:"transfers"`
	// Progress is each gainer's last published streaming progress.
	Progress []ProgressJSON `json:"progress"`
}

// TransferJSON is one stream of a change.
type TransferJSON struct {
	Gainer string  `json:"gainer"`
	Loser  string  `json:"loser"`
	Share  float64 `json:"share"`
}

// ProgressJSON is a gainer's streaming progress.
type ProgressJSON struct {
	Node      string    `json:"node"`
	Transfers int       `json:"transfers"`
	Done      int       `json:"done"`
	Keys      uint64    `json:"keys"`
	Bytes     uint64    `json:"bytes"`
	Updated   time.Time `json:"updated"`
}

func ringJSON(s node.RingStatus) RingJSON {
	out := RingJSON{Self: s.Self, ClusterID: s.ClusterID, Epoch: s.Epoch, Revision: s.Revision, N: s.N, VNodes: s.VNodes,
		Members: make([]RingMemberJSON, 0, len(s.Members))}
	for _, m := range s.Members {
		out.Members = append(out.Members, RingMemberJSON{ID: m.ID, State: m.State, HTTP: m.HTTP, Since: m.Since,
			Alive: m.Alive, Epoch: m.Epoch, Ownership: m.Ownership, Replicated: m.Replicated})
	}
	if c := s.Change; c != nil {
		rc := &RingChangeJSON{Kind: c.Kind, Node: c.Node, Epoch: c.Epoch, Gainers: c.Gainers, Streamed: c.Streamed,
			Transfers: []TransferJSON{}, Progress: []ProgressJSON{}}
		if rc.Streamed == nil {
			rc.Streamed = []string{}
		}
		for _, t := range c.Transfers {
			rc.Transfers = append(rc.Transfers, TransferJSON{Gainer: t.Gainer, Loser: t.Loser, Share: t.Share})
		}
		for _, p := range c.Progress {
			rc.Progress = append(rc.Progress, ProgressJSON{Node: p.Node, Transfers: p.Transfers, Done: p.Done,
				Keys: p.Keys, Bytes: p.Bytes, Updated: time.UnixMilli(p.UpdatedMs).UTC()})
		}
		out.Change = rc
	}
	return out
}

// serveRing answers the topology as RingJSON.
func (g *Gateway) serveRing(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) || !g.requireInfo(w, r, routeRing) {
		return
	}
	g.writeRing(w, r, http.StatusOK)
}

func (g *Gateway) writeRing(w http.ResponseWriter, r *http.Request, status int) {
	rs, err := g.node.Ring(r.Context())
	if err != nil {
		g.writeNodeError(w, r, err)
		return
	}
	writeJSON(w, status, ringJSON(rs))
}

// serveAdmin serves the topology commands, all POST and behind the cluster
// secret:
//
//	POST /admin/decommission            decommission the answering node
//	POST /admin/removenode?id=X[&force=true]
//	POST /admin/abort                   abandon the pending change
//	POST /admin/repair                  an anti-entropy round with every peer now (NDJSON progress)
//
// A command applied answers 202 with the ring (the change then runs in the
// background; `kvs ring` follows it); a refused one answers 409 (or 404
// for a member that does not exist) and changes nothing.
func (g *Gateway) serveAdmin(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodPost) {
		return
	}
	if !g.requireSecret(w, r, routeAdmin) {
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad query string: "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
	defer cancel()
	switch r.URL.EscapedPath() {
	case "/admin/decommission":
		err = g.node.Decommission(ctx)
	case "/admin/removenode":
		id := q.Get("id")
		if id == "" {
			writeError(w, http.StatusBadRequest, "the id query parameter names the member to remove")
			return
		}
		force := false
		if f := q.Get("force"); f != "" {
			if force, err = strconv.ParseBool(f); err != nil {
				writeError(w, http.StatusBadRequest, "force must be true or false")
				return
			}
		}
		err = g.node.RemoveNode(ctx, id, force)
	case "/admin/abort":
		err = g.node.AbortChange(ctx)
	case "/admin/repair":
		g.serveRepair(w, r)
		return
	default:
		writeError(w, http.StatusNotFound, "no such endpoint")
		return
	}
	if err != nil {
		g.writeAdminError(w, r, err)
		return
	}
	g.writeRing(w, r, http.StatusAccepted)
}

// adminTimeout bounds a topology command: a compare-and-set on the store.
const adminTimeout = 10 * time.Second

// writeAdminError answers a refused topology command: 409 when it does not
// fit the topology, 404 for a member that does not exist, 400 for a
// malformed one, 503 when the store cannot answer.
func (g *Gateway) writeAdminError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, topology.ErrBusy), errors.Is(err, topology.ErrTooFew), errors.Is(err, topology.ErrState),
		errors.Is(err, topology.ErrExists), errors.Is(err, topology.ErrNoChange), errors.Is(err, node.ErrAlive),
		errors.Is(err, topology.ErrConflict):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, topology.ErrNotMember):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, topology.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, topology.ErrUnavailable):
		g.logFailure(w, r, http.StatusServiceUnavailable, err)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "the topology store is unavailable")
	default:
		g.writeNodeError(w, r, err)
	}
}
