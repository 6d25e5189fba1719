package gateway

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/kvs-db/kvs/node"
)

// kvPrefix is the escaped path prefix of the public key-value API.
const kvPrefix = "/kv/"

// HTTP headers carrying record metadata.
const (
	// headerVersion carries a version as "counter.node" (node.Version.String).
	headerVersion = "X-Kvs-Version"
	// headerTombstone is "true" for a delete record, "false" otherwise.
	headerTombstone = "X-Kvs-Tombstone"
	// headerExpiry carries a record's expiry, Unix milliseconds; absent
	// when the record never expires.
	headerExpiry = "X-Kvs-Expiry"
	// headerApplied tells, on an internal POST, whether the record was newer
	// than the one held and so was applied.
	headerApplied = "X-Kvs-Applied"
)

// errKey is wrapped by every key parsing error.
var errKey = errors.New("invalid key")

// keyFromPath returns the key named by an escaped request path
// ("/kv/" + percent-encoded key). The escaped form is decoded exactly once
// with url.PathUnescape, so "+" stays "+" and "%2F" becomes "/". The key
// must be 1 to node.MaxKeyBytes bytes long.
func keyFromPath(escapedPath string) ([]byte, error) {
	escaped, ok := strings.CutPrefix(escapedPath, kvPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: path must start with %s", errKey, kvPrefix)
	}
	// Every byte of a key takes at most 3 bytes escaped; refuse longer
	// paths before decoding them.
	if len(escaped) > 3*node.MaxKeyBytes {
		return nil, fmt.Errorf("%w: longer than %d bytes", errKey, node.MaxKeyBytes)
	}
	key, err := url.PathUnescape(escaped)
	if err != nil {
		return nil, fmt.Errorf("%w: bad percent-encoding", errKey)
	}
	return checkKey(key)
}

// checkKey checks the length of a decoded key.
func checkKey(key string) ([]byte, error) {
	switch {
	case key == "":
		return nil, fmt.Errorf("%w: empty", errKey)
	case len(key) > node.MaxKeyBytes:
		return nil, fmt.Errorf("%w: %d bytes, longer than %d", errKey, len(key), node.MaxKeyBytes)
	}
	return []byte(key), nil
}

// quorumParam parses the optional query parameter name ("w" or "r"). It
// returns 0 (the node's default) when the parameter is absent. A present
// value must be an integer of at least 1; the node checks the upper bound
// (N) and answers node.ErrInvalidQuorum.
func quorumParam(r *http.Request, name string) (int, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return 0, fmt.Errorf("bad query string: %v", err)
	}
	vals, ok := q[name]
	if !ok {
		return 0, nil
	}
	if len(vals) != 1 {
		return 0, fmt.Errorf("%s given %d times", name, len(vals))
	}
	n, err := strconv.Atoi(vals[0])
	if err != nil || n < 1 || n > 1<<16 {
		return 0, fmt.Errorf("%s must be an integer from 1 to N, not %q", name, vals[0])
	}
	return n, nil
}

// serveKV serves GET, HEAD, PUT and DELETE on /kv/{key}.
func (g *Gateway) serveKV(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete) || !g.requireClient(w, r) {
		return
	}
	key, err := keyFromPath(r.URL.EscapedPath())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		g.getKV(w, r, key)
	case http.MethodPut:
		g.putKV(w, r, key)
	case http.MethodDelete:
		g.deleteKV(w, r, key)
	}
}

func (g *Gateway) getKV(w http.ResponseWriter, r *http.Request, key []byte) {
	rq, err := quorumParam(r, "r")
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	rec, err := g.node.Get(r.Context(), key, node.ReadOptions{R: rq})
	if err == nil && rec.Tombstone {
		// The node reports tombstones as not found; be safe if one slips by.
		err = node.ErrNotFound
	}
	if err != nil {
		g.writeNodeError(w, r, err)
		return
	}
	setValueHeaders(w.Header(), &rec)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(rec.Value)
}

func (g *Gateway) putKV(w http.ResponseWriter, r *http.Request, key []byte) {
	wq, err := quorumParam(r, "w")
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	value, ok := g.readValue(w, r)
	if !ok {
		return
	}
	v, err := g.node.Put(r.Context(), key, value, node.WriteOptions{W: wq})
	if err != nil {
		g.writeNodeError(w, r, err)
		return
	}
	w.Header().Set(headerVersion, v.String())
	w.WriteHeader(http.StatusNoContent)
}

func (g *Gateway) deleteKV(w http.ResponseWriter, r *http.Request, key []byte) {
	wq, err := quorumParam(r, "w")
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	v, err := g.node.Delete(r.Context(), key, node.WriteOptions{W: wq})
	if err != nil {
		g.writeNodeError(w, r, err)
		return
	}
	w.Header().Set(headerVersion, v.String())
	w.WriteHeader(http.StatusNoContent)
}

// firstBodyBuffer is the buffer a request body is first read into; it
// doubles as bytes arrive.
const firstBodyBuffer = 4 << 10

// readValue reads the request body, at most g.maxValue+1 bytes of it. A
// body over the limit gets 413 (without reading it when Content-Length
// already says so); a failed read gets 400. ok is false when an error
// response was written.
//
// The buffer starts at 4 KiB and doubles as bytes arrive, up to what
// Content-Length announces (plus the byte that lets the last read see
// EOF), so the memory a request holds follows what its client has sent,
// not what it says it will send: a client that announces a megabyte and
// sends nothing holds 4 KiB for the read timeout, not the megabyte. The
// doublings copy a body about once more in all, noise next to the write's
// replication. (A semaphore over the bytes of bodies in flight would
// bound legitimate large writes as well and need a figure per machine;
// memory that follows the bytes received makes a client pay in bandwidth
// for every byte it holds.)
func (g *Gateway) readValue(w http.ResponseWriter, r *http.Request) (value []byte, ok bool) {
	if r.ContentLength > int64(g.maxValue) {
		writeError(w, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("value of %d bytes is over the limit of %d", r.ContentLength, g.maxValue))
		return nil, false
	}
	body := http.MaxBytesReader(w, r.Body, int64(g.maxValue))
	// The buffer never needs more than one byte past the body.
	limit := g.maxValue + 1
	if r.ContentLength >= 0 {
		limit = int(r.ContentLength) + 1
	}
	buf := make([]byte, 0, min(limit, firstBodyBuffer))
	for {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), max(min(2*cap(buf), limit), cap(buf)+firstBodyBuffer))
			copy(grown, buf)
			buf = grown
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, true
		}
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				writeError(w, http.StatusRequestEntityTooLarge,
					fmt.Sprintf("value is over the limit of %d bytes", g.maxValue))
				return nil, false
			}
			writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
			return nil, false
		}
	}
}

// parseVersion parses "counter.node" as written by node.Version.String.
func parseVersion(s string) (node.Version, error) {
	c, n, ok := strings.Cut(s, ".")
	if !ok {
		return node.Version{}, fmt.Errorf("version %q: want counter.node", s)
	}
	counter, err := strconv.ParseUint(c, 10, 64)
	if err != nil {
		return node.Version{}, fmt.Errorf("version %q: bad counter", s)
	}
	id, err := strconv.ParseUint(n, 10, 32)
	if err != nil {
		return node.Version{}, fmt.Errorf("version %q: bad node", s)
	}
	return node.Version{Counter: counter, Node: uint32(id)}, nil
}

// setValueHeaders describes a record's value in h: content type and length,
// and the version header.
func setValueHeaders(h http.Header, rec *node.Record) {
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.Itoa(len(rec.Value)))
	h.Set(headerVersion, rec.Version.String())
}
