package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/kvs-db/kvs/node"
)

// errorBody is the JSON body of every error response. RequestID is set
// on 5xx answers: the ID the log line with the full error names.
type errorBody struct {
	Error     string `json:"error"`
	RequestID string `json:"request_id,omitempty"`
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

// writeError writes {"error": msg} with the given status, and with a 5xx
// status the request's ID as "request_id". Headers meant for a success
// (the version) are removed first. msg must hold no internal error text.
func writeError(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Del(headerVersion)
	h.Del(headerTombstone)
	body := errorBody{Error: msg}
	if status >= 500 {
		body.RequestID = h.Get(headerRequestID)
	}
	writeJSON(w, status, body)
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
	case errors.Is(err, node.ErrQuorum), errors.Is(err, node.ErrNotReady), errors.Is(err, node.ErrStoreUnwritable):
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

// writeNodeError answers with the status of an error returned by the
// node. A 4xx answer carries the error's text, which names the client's
// mistake; a 5xx one a fixed phrase (publicMessage) and the request ID,
// and the full error is logged with that ID.
func (g *Gateway) writeNodeError(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	msg := err.Error()
	switch {
	case errors.Is(err, node.ErrNotFound):
		msg = "not found"
	case status >= 500:
		msg = publicMessage(err)
		g.logFailure(w, r, status, err)
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeError(w, status, msg)
}

// logFailure logs a failed request's full error with its request ID: at
// error level for a 500 (a bug or an unexpected failure), at info level for
// a 503 (the cluster or the store cannot serve it now; a node down makes
// many of them).
func (g *Gateway) logFailure(w http.ResponseWriter, r *http.Request, status int, err error) {
	level := slog.LevelInfo
	if status == http.StatusInternalServerError {
		level = slog.LevelError
	}
	g.log.Log(r.Context(), level, "request failed",
		"request_id", w.Header().Get(headerRequestID), "status", status,
		"method", r.Method, "path", r.URL.EscapedPath(), "err", err)
}

// publicMessage is what a client is told of a server-side failure: a fixed
// phrase per kind of failure, never the error's text.
func publicMessage(err error) string {
	switch {
	case errors.Is(err, node.ErrStoreUnwritable):
		return "the store cannot write for now"
	case errors.Is(err, node.ErrQuorum):
		return "quorum not reached"
	case errors.Is(err, node.ErrNotReady):
		return "node not ready"
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case errors.Is(err, context.Canceled):
		return "request canceled"
	}
	return "internal error"
}
