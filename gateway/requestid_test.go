package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/kvs-db/kvs/node"
)

// syncBuffer is a log sink safe for the handler's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newLoggedGateway is newTestGateway with its log kept, and request IDs
// counted up from "gen-1".
func newLoggedGateway(t *testing.T, f *fakeNode) (*Gateway, *syncBuffer) {
	t.Helper()
	var logs syncBuffer
	var mu sync.Mutex
	n := 0
	g, err := New(Config{
		Node:   f,
		Secret: testSecret,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		NewRequestID: func() string {
			mu.Lock()
			defer mu.Unlock()
			n++
			return fmt.Sprintf("gen-%d", n)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return g, &logs
}

// A path of the server's, as a store error would carry it.
const serverPath = "/var/lib/kvs/store/000042.log"

// TestServerErrorsHideInternals fails requests with errors whose text holds
// a server path: the 5xx answers carry a fixed message and the request ID
// of their X-Request-ID header, never the path, and the log line with the
// full error names the same ID.
func TestServerErrorsHideInternals(t *testing.T) {
	internal := fmt.Errorf("lsm: create WAL 000042.log: open %s: too many open files", serverPath)
	for _, tt := range []struct {
		name    string
		err     error
		req     request
		status  int
		message string
	}{
		{"quorum", fmt.Errorf("%w: node2: %w", node.ErrQuorum, internal), request{method: "PUT", target: "/kv/k", body: "v"}, 503, "quorum not reached"},
		{"unexpected", internal, request{method: "GET", target: "/kv/k"}, 500, "internal error"},
		{"store", fmt.Errorf("node: local apply: %w: %w", node.ErrStoreUnwritable, internal),
			request{method: "POST", target: "/internal/kv?key=k", body: "v", header: map[string]string{
				"Authorization": "Bearer " + testSecret, headerVersion: "5.1"}}, 503, "the store cannot write for now"},
		{"not ready", fmt.Errorf("%w: %w", node.ErrNotReady, internal), request{method: "DELETE", target: "/kv/k"}, 503, "node not ready"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeNode()
			f.err = tt.err
			g, logs := newLoggedGateway(t, f)
			w := do(t, g, tt.req)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			id := w.Header().Get(headerRequestID)
			var body errorBody
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if body.Error != tt.message || body.RequestID != id || id == "" {
				t.Fatalf("body %+v with X-Request-ID %q, want %q and the ID", body, id, tt.message)
			}
			if strings.Contains(w.Body.String(), serverPath) || strings.Contains(w.Body.String(), "open files") {
				t.Fatalf("body shows internals: %s", w.Body)
			}
			log := logs.String()
			if !strings.Contains(log, "request_id="+id) || !strings.Contains(log, serverPath) {
				t.Fatalf("log lacks the ID %s or the full error:\n%s", id, log)
			}
		})
	}
}

// TestClientErrorsKeepTheirWords checks that 4xx answers still say what is
// wrong with the request, and carry no request_id in their body.
func TestClientErrorsKeepTheirWords(t *testing.T) {
	f := newFakeNode()
	g, _ := newLoggedGateway(t, f)
	w := do(t, g, request{method: "GET", target: "/kv/k?r=0"})
	if w.Code != 400 || !strings.Contains(w.Body.String(), "r must be an integer") || strings.Contains(w.Body.String(), "request_id") {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if w.Header().Get(headerRequestID) == "" {
		t.Fatal("no X-Request-ID on a 4xx answer")
	}
}

// TestRequestIDFromClient takes a sane X-Request-ID as it is and replaces
// one that is too long, empty or holds spaces or control characters.
func TestRequestIDFromClient(t *testing.T) {
	for _, tt := range []struct {
		sent string
		kept bool
	}{
		{"abc-123_DEF.456:7", true},
		{strings.Repeat("x", maxRequestIDLen), true},
		{strings.Repeat("x", maxRequestIDLen+1), false},
		{"with space", false},
		{"new\nline", false},
		{"tab\there", false},
		{"é", false},
	} {
		f := newFakeNode()
		f.err = errors.New("boom")
		g, logs := newLoggedGateway(t, f)
		w := do(t, g, request{method: "GET", target: "/kv/k", header: map[string]string{headerRequestID: tt.sent}})
		got := w.Header().Get(headerRequestID)
		want := "gen-1"
		if tt.kept {
			want = tt.sent
		}
		if got != want || !strings.Contains(w.Body.String(), `"request_id":"`+want+`"`) {
			t.Errorf("sent %q: X-Request-ID %q, body %s; want %q", tt.sent, got, w.Body, want)
		}
		if !tt.kept && strings.Contains(logs.String(), tt.sent) {
			t.Errorf("sent %q: it reached the log", tt.sent)
		}
	}
}

// TestReadyzStoreUnwritable: /readyz answers 503 with the store's reason
// while it cannot write, and 200 once it can again.
func TestReadyzStoreUnwritable(t *testing.T) {
	f := newFakeNode()
	g, _ := newLoggedGateway(t, f)
	f.mu.Lock()
	f.unwritable = fmt.Errorf("%w: too many open files", node.ErrStoreUnwritable)
	f.mu.Unlock()
	w := do(t, g, request{method: "GET", target: "/readyz"})
	var body errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if w.Code != 503 || body.Error != "node: store cannot write: too many open files" || body.RequestID == "" {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	f.mu.Lock()
	f.unwritable = nil
	f.mu.Unlock()
	if w := do(t, g, request{method: "GET", target: "/readyz"}); w.Code != 200 {
		t.Fatalf("after recovery: %d %s", w.Code, w.Body)
	}
}
