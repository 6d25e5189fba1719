package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
)

// headerRequestID carries a request's ID: taken from the client when it is
// sane, made up otherwise, and always echoed in the response. The body of
// a 5xx answer carries it too, and the log line with the full error names
// it, so that a client can report a failure that the operator can find.
//
// It is spelled in canonical form (what http.CanonicalHeaderKey returns;
// header names are case-insensitive on the wire), so that setting it on
// every response costs no canonicalization.
const headerRequestID = "X-Request-Id"

// maxRequestIDLen bounds an ID taken from a client.
const maxRequestIDLen = 128

// saneRequestID reports whether a client's ID may be used as is: 1 to
// maxRequestIDLen printable ASCII characters, no spaces, so that it cannot
// forge log lines or grow them without bound.
func saneRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// randomRequestID is the default Config.NewRequestID: 16 hex digits from
// crypto/rand.
func randomRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b[:])
}

// requestID returns r's ID: its X-Request-ID if sane, else a new one.
func (g *Gateway) requestID(r *http.Request) string {
	if vals := r.Header.Values(headerRequestID); len(vals) == 1 && saneRequestID(vals[0]) {
		return vals[0]
	}
	return g.newRequestID()
}
