package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/kvs-db/kvs/node"
)

// errorBody is the JSON body of every error response.
type errorBody struct {
	Error string `json:"error"`
}

// writeJSON writes v as a JSON response with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only our own fixed types are marshalled; this does not happen.
		status = http.StatusInternalServerError
		body = []byte(`{"error":"encoding response"}`)
	}
	body = append(body, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeError writes {"error": msg} with the given status. Headers meant for
// a success (the version) are removed first.
func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Del(headerVersion)
	w.Header().Del(headerTombstone)
	writeJSON(w, status, errorBody{Error: msg})
}

// statusOf maps an error from the node to the HTTP status that tells the
// client what to do: fix the request (4xx) or retry later (503).
func statusOf(err error) int {
	switch {
	case errors.Is(err, node.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, node.ErrInvalidKey), errors.Is(err, node.ErrInvalidQuorum),
		errors.Is(err, node.ErrMalformed):
		return http.StatusBadRequest
	case errors.Is(err, node.ErrValueTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, node.ErrQuorum), errors.Is(err, node.ErrNotReady):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this status, but the access
		// log and metrics should not count it as a server failure.
		return statusClientClosed
	}
	return http.StatusInternalServerError
}

// statusClientClosed is nginx's code for "client closed the request", used
// in logs and metrics only.
const statusClientClosed = 499

// writeNodeError answers with the status and message of an error returned
// by the node. Unexpected errors are logged.
func (g *Gateway) writeNodeError(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	if status == http.StatusInternalServerError {
		g.log.Error("request failed", "method", r.Method, "path", r.URL.EscapedPath(), "err", err)
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	msg := err.Error()
	if errors.Is(err, node.ErrNotFound) {
		msg = "not found"
	}
	writeError(w, status, msg)
}
