package gateway

import (
	"net/http"
	"time"

	"github.com/kvs-db/kvs/node"
)

// ClusterJSON is the body of GET /cluster: the answering node's view of the
// cluster. Clients such as `kvs status` decode it.
type ClusterJSON struct {
	// Self is the ID of the node that answered.
	Self string `json:"self"`
	// Cluster is the cluster name.
	Cluster string `json:"cluster"`
	// N, W and R are the node's default replication factor and quorums.
	N int `json:"n"`
	W int `json:"w"`
	R int `json:"r"`
	// Ready is whether the answering node may coordinate requests.
	Ready bool `json:"ready"`
	// Epoch is the topology epoch the answering node acts on.
	Epoch uint64 `json:"epoch"`
	// Members lists the ring members, the answering node included.
	Members []MemberJSON `json:"members"`
}

// MemberJSON describes one ring member in ClusterJSON.
type MemberJSON struct {
	// ID is the member's node ID.
	ID string `json:"id"`
	// HTTPAddr is the address its gateway serves on, as it advertises it.
	HTTPAddr string `json:"http_addr,omitempty"`
	// State is its state in the ring: joining, normal or leaving.
	State string `json:"state"`
	// Alive is whether gossip has heard from it recently.
	Alive bool `json:"alive"`
	// LastSeen is when it was last heard from; absent if never.
	LastSeen *time.Time `json:"last_seen,omitempty"`
	// Epoch is the topology epoch it last reported.
	Epoch uint64 `json:"epoch,omitempty"`
	// Ownership is the fraction of the hash ring, 0 to 1, for which the
	// member is the first replica.
	Ownership float64 `json:"ownership"`
	// HintsPending counts writes the answering node holds for the member
	// until it can hand them over.
	HintsPending int `json:"hints_pending"`
}

// clusterJSON converts a node status to its JSON form.
func clusterJSON(s node.ClusterStatus) ClusterJSON {
	out := ClusterJSON{
		Self: s.Self, Cluster: s.Cluster,
		N: s.N, W: s.W, R: s.R,
		Ready:   s.Ready,
		Epoch:   s.Epoch,
		Members: make([]MemberJSON, 0, len(s.Members)),
	}
	for _, m := range s.Members {
		mj := MemberJSON{
			ID:           m.ID,
			HTTPAddr:     m.HTTPAddr,
			State:        m.State,
			Epoch:        m.Epoch,
			Alive:        m.Alive,
			Ownership:    m.Ownership,
			HintsPending: m.HintsPending,
		}
		if !m.LastSeen.IsZero() {
			t := m.LastSeen.UTC()
			mj.LastSeen = &t
		}
		out.Members = append(out.Members, mj)
	}
	return out
}

// serveCluster answers the node's view of the cluster as ClusterJSON.
func (g *Gateway) serveCluster(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) || !g.requireInfo(w, r, routeCluster) {
		return
	}
	writeJSON(w, http.StatusOK, clusterJSON(g.node.Status()))
}
