package gateway

import (
	"net/http"
)

// statusBody is the JSON body of a successful health or readiness check.
type statusBody struct {
	Status string `json:"status"`
}

// serveHealthz answers 200 as long as the process serves HTTP. It checks
// nothing else, so an orchestrator restarts the process only when it hangs.
func (g *Gateway) serveHealthz(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	writeJSON(w, http.StatusOK, statusBody{Status: "ok"})
}

// serveReadyz answers 200 when the node may coordinate requests and its
// own store takes writes, and 503 with the reason otherwise (for example,
// it has not yet heard from its seeds, or its store is out of file
// descriptors), so a load balancer sends it no traffic until it is ready.
// The reasons are the node's own words, without paths; a store that
// recovers makes the node ready again by itself.
func (g *Gateway) serveReadyz(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	err := g.node.Ready()
	if err == nil {
		err = g.node.StoreWritable()
	}
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, statusBody{Status: "ready"})
}
