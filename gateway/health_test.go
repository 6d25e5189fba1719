package gateway

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/kvs-db/kvs/node"
)

func TestHealthReadyCluster(t *testing.T) {
	tests := []struct {
		name       string
		notReady   error
		req        request
		wantStatus int
		wantIn     string // substring of the body
	}{
		{name: "healthz", req: request{method: "GET", target: "/healthz"}, wantStatus: 200, wantIn: `"ok"`},
		{name: "healthz while not ready", notReady: node.ErrNotReady, req: request{method: "GET", target: "/healthz"}, wantStatus: 200},
		{name: "healthz post", req: request{method: "POST", target: "/healthz"}, wantStatus: 405},
		{name: "readyz", req: request{method: "GET", target: "/readyz"}, wantStatus: 200, wantIn: `"ready"`},
		{name: "readyz head", req: request{method: "HEAD", target: "/readyz"}, wantStatus: 200},
		{name: "not ready", notReady: fmt.Errorf("%w: waiting for seeds", node.ErrNotReady), req: request{method: "GET", target: "/readyz"}, wantStatus: 503, wantIn: "waiting for seeds"},
		{name: "readyz delete", req: request{method: "DELETE", target: "/readyz"}, wantStatus: 405},
		{name: "cluster", req: request{method: "GET", target: "/cluster"}, wantStatus: 200, wantIn: `"hints_pending":5`},
		{name: "cluster put", req: request{method: "PUT", target: "/cluster"}, wantStatus: 405},
		{name: "metrics post", req: request{method: "POST", target: "/metrics"}, wantStatus: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeNode()
			f.notReady = tt.notReady
			w := do(t, newTestGateway(t, f, 0), tt.req)
			if w.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %q", w.Code, tt.wantStatus, w.Body.String())
			}
			if !strings.Contains(w.Body.String(), tt.wantIn) {
				t.Errorf("body %q does not contain %q", w.Body.String(), tt.wantIn)
			}
		})
	}
}

func TestClusterJSON(t *testing.T) {
	w := do(t, newTestGateway(t, newFakeNode(), 0), request{method: "GET", target: "/cluster"})
	var got ClusterJSON
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Self != "node1" || got.N != 3 || len(got.Members) != 2 {
		t.Fatalf("got %+v", got)
	}
	m := got.Members[1]
	if m.ID != "node2" || m.Alive || m.HintsPending != 5 || m.Ownership != 0.33 || m.LastSeen != nil {
		t.Errorf("member %+v", m)
	}
}

func TestMetrics(t *testing.T) {
	g := newTestGateway(t, newFakeNode(), 0)
	do(t, g, request{method: "PUT", target: "/kv/k", body: "v"})
	do(t, g, request{method: "GET", target: "/kv/missing"})
	w := do(t, g, request{method: "GET", target: "/metrics"})
	if w.Code != 200 {
		t.Fatalf("status %d", w.Code)
	}
	body := w.Body.String()
	for _, want := range []string{
		`kvs_http_requests_total{code="204",method="PUT",route="kv"} 1`,
		`kvs_http_requests_total{code="404",method="GET",route="kv"} 1`,
		`kvs_http_request_duration_seconds_bucket`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestMetricsDisabled(t *testing.T) {
	g, err := New(Config{Node: newFakeNode()})
	if err != nil {
		t.Fatal(err)
	}
	if w := do(t, g, request{method: "GET", target: "/metrics"}); w.Code != 404 {
		t.Fatalf("status %d, want 404", w.Code)
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without a node succeeded")
	}
	if _, err := New(Config{Node: newFakeNode(), MaxValueBytes: -1}); err == nil {
		t.Error("New with a negative limit succeeded")
	}
}
