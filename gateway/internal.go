package gateway

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/kvs-db/kvs/node"
)

// internalApplied is the JSON body of a POST /internal/kv answer.
type internalApplied struct {
	// Version is the version the replica holds after the request.
	Version string `json:"version"`
	// Applied is true when the posted record was newer and was applied.
	Applied bool `json:"applied"`
}

// serveInternalKV serves /internal/kv: direct access to this node's own
// replica, for operators and tests. It requires the cluster secret.
//
// GET ?key=K answers 200 with the held value as body, X-Kvs-Version,
// X-Kvs-Tombstone and X-Kvs-Expiry (when set), or 404 when the replica holds nothing for K.
//
// POST ?key=K applies the record {K, body, X-Kvs-Version, X-Kvs-Tombstone,
// X-Kvs-Expiry (optional, Unix ms)}
// when it is newer than what the replica holds, and answers 200 with the
// version held afterwards (X-Kvs-Version, and JSON {"version", "applied"}).
func (g *Gateway) serveInternalKV(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead, http.MethodPost) {
		return
	}
	if !g.requireSecret(w, r, routeInternalKV) {
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad query string: "+err.Error())
		return
	}
	keys, ok := q["key"]
	if !ok || len(keys) != 1 {
		writeError(w, http.StatusBadRequest, "exactly one key query parameter is required")
		return
	}
	key, err := checkKey(keys[0])
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if r.Method == http.MethodPost {
		g.internalApply(w, r, key)
		return
	}
	rec, err := g.node.LocalGet(key)
	if err != nil {
		g.writeNodeError(w, r, err)
		return
	}
	h := w.Header()
	setValueHeaders(h, &rec)
	h.Set(headerTombstone, strconv.FormatBool(rec.Tombstone))
	if rec.Expiry != 0 {
		h.Set(headerExpiry, strconv.FormatInt(rec.Expiry, 10))
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(rec.Value)
}

// internalApply parses the posted record and applies it locally.
func (g *Gateway) internalApply(w http.ResponseWriter, r *http.Request, key []byte) {
	vh := r.Header.Values(headerVersion)
	if len(vh) != 1 {
		writeError(w, http.StatusBadRequest, "exactly one "+headerVersion+" header is required")
		return
	}
	version, err := parseVersion(vh[0])
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if version.IsZero() {
		writeError(w, http.StatusBadRequest, "version 0.0 is reserved for no record")
		return
	}
	tombstone := false
	if th := r.Header.Values(headerTombstone); len(th) > 0 {
		if len(th) > 1 {
			writeError(w, http.StatusBadRequest, "more than one "+headerTombstone+" header")
			return
		}
		if tombstone, err = strconv.ParseBool(th[0]); err != nil {
			writeError(w, http.StatusBadRequest, headerTombstone+" must be true or false")
			return
		}
	}
	var expiry int64
	if eh := r.Header.Values(headerExpiry); len(eh) > 0 {
		if len(eh) > 1 {
			writeError(w, http.StatusBadRequest, "more than one "+headerExpiry+" header")
			return
		}
		if expiry, err = strconv.ParseInt(eh[0], 10, 64); err != nil || expiry <= 0 {
			writeError(w, http.StatusBadRequest, headerExpiry+" must be Unix milliseconds, above 0")
			return
		}
	}
	value, ok := g.readValue(w, r)
	if !ok {
		return
	}
	if tombstone && len(value) > 0 {
		writeError(w, http.StatusBadRequest, "a tombstone has no value")
		return
	}
	if tombstone {
		value = nil
	}
	held, applied, err := g.node.LocalApply(node.Record{
		Key:       key,
		Value:     value,
		Version:   version,
		Tombstone: tombstone,
		Expiry:    expiry,
	})
	if err != nil {
		g.writeNodeError(w, r, err)
		return
	}
	w.Header().Set(headerVersion, held.String())
	w.Header().Set(headerApplied, strconv.FormatBool(applied))
	writeJSON(w, http.StatusOK, internalApplied{Version: held.String(), Applied: applied})
}
