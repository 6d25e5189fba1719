package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node"
	"github.com/kvs-db/kvs/node/topology"
	"github.com/prometheus/client_golang/prometheus"
)

// testCluster is three real nodes on an in-memory network, each behind its
// own gateway on a local HTTP server.
type testCluster struct {
	net   *node.MemNetwork
	nodes []*node.Node
	urls  []string
}

func startTestCluster(t *testing.T) *testCluster {
	t.Helper()
	tc := &testCluster{net: node.NewMemNetwork()}
	topo := topology.NewMemStore()
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("node%d", i)
		db, err := lsm.Open(lsm.Options{Dir: "/db", FS: lsm.NewMemFS()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		reg := prometheus.NewRegistry()
		// Real time: DownAfter leaves room for a goroutine stalled by -race
		// on a loaded two-core machine, so no live node is taken for down;
		// the test waits on the condition, not the duration.
		n, err := node.New(node.Config{
			ID:             id,
			GossipInterval: 50 * time.Millisecond,
			DownAfter:      time.Second,
			RequestTimeout: time.Second,
			NeedPeers:      2,
			DataDir:        t.TempDir(),
			Store:          db,
			Transport:      tc.net.Transport(id),
			Topology:       topo,
			Logger:         slog.New(slog.DiscardHandler),
			Registerer:     reg,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		g, err := New(Config{Node: n, Secret: testSecret, Registerer: reg, Gatherer: reg, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(g)
		t.Cleanup(srv.Close)
		tc.nodes = append(tc.nodes, n)
		tc.urls = append(tc.urls, srv.URL)
	}
	// Ready, and every node sees three live members.
	waitFor(t, "three ready nodes with three live members", func() bool {
		for _, n := range tc.nodes {
			if n.Ready() != nil {
				return false
			}
			alive := 0
			for _, m := range n.Status().Members {
				if m.Alive {
					alive++
				}
			}
			if alive != 3 {
				return false
			}
		}
		return true
	})
	return tc
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// call sends one request and returns status, headers and body.
func call(t *testing.T, method, url, body string, header map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func TestRealCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes")
	}
	tc := startTestCluster(t)
	const key = "a+b/c?d&e=f %"
	const escaped = "a+b%2Fc%3Fd&e=f%20%25"

	// PUT through node1, GET through node2 and node3.
	code, h, body := call(t, "PUT", tc.urls[0]+"/kv/"+escaped, "hello", nil)
	if code != 204 || h.Get("X-Kvs-Version") == "" {
		t.Fatalf("PUT: %d %q version %q", code, body, h.Get("X-Kvs-Version"))
	}
	version := h.Get("X-Kvs-Version")
	for _, u := range tc.urls[1:] {
		code, h, body := call(t, "GET", u+"/kv/"+escaped, "", nil)
		if code != 200 || body != "hello" || h.Get("X-Kvs-Version") != version {
			t.Fatalf("GET %s: %d %q version %q, want 200 hello %s", u, code, body, h.Get("X-Kvs-Version"), version)
		}
	}
	// Every node's own replica holds it (N = 3), seen through /internal/kv.
	waitFor(t, "all replicas to hold the write", func() bool {
		for _, u := range tc.urls {
			code, h, body := call(t, "GET", u+"/internal/kv?key="+url.QueryEscape(key), "", auth)
			if code != 200 || body != "hello" || h.Get("X-Kvs-Version") != version || h.Get("X-Kvs-Tombstone") != "false" {
				return false
			}
		}
		return true
	})
	if code, _, _ := call(t, "GET", tc.urls[0]+"/internal/kv?key=x", "", nil); code != 401 {
		t.Errorf("internal GET without secret: %d, want 401", code)
	}

	// A record whose version is far ahead of the node's clock is refused
	// as bad input, and changes nothing.
	code, _, body = call(t, "POST", tc.urls[0]+"/internal/kv?key="+url.QueryEscape(key), "future",
		map[string]string{"Authorization": "Bearer " + testSecret, "X-Kvs-Version": "18446744073709551615.1"})
	if code != 400 {
		t.Errorf("internal POST of a far-future version: %d %q, want 400", code, body)
	}
	if code, _, body := call(t, "GET", tc.urls[0]+"/kv/"+escaped, "", nil); code != 200 || body != "hello" {
		t.Errorf("GET after a refused internal POST: %d %q", code, body)
	}

	// Bad quorums are refused, not hung on.
	if code, _, body := call(t, "PUT", tc.urls[0]+"/kv/k?w=4", "v", nil); code != 400 {
		t.Errorf("w=4: %d %q, want 400", code, body)
	}

	// DELETE, then 404 everywhere.
	if code, _, body := call(t, "DELETE", tc.urls[2]+"/kv/"+escaped, "", nil); code != 204 {
		t.Fatalf("DELETE: %d %q", code, body)
	}
	for _, u := range tc.urls {
		if code, _, body := call(t, "GET", u+"/kv/"+escaped, "", nil); code != 404 {
			t.Fatalf("GET after DELETE via %s: %d %q, want 404", u, code, body)
		}
	}

	// /cluster shows the three members.
	code, _, body = call(t, "GET", tc.urls[0]+"/cluster", "", nil)
	var cj ClusterJSON
	if err := json.Unmarshal([]byte(body), &cj); code != 200 || err != nil || len(cj.Members) != 3 || !cj.Ready {
		t.Fatalf("/cluster: %d %q", code, body)
	}

	// Stop node2: writes and reads through node1 and node3 still succeed
	// at the default quorums; W = 3 cannot be reached and says so.
	tc.net.Stop("node2")
	waitFor(t, "node1 to see node2 down", func() bool {
		for _, m := range tc.nodes[0].Status().Members {
			if m.ID == "node2" {
				return !m.Alive
			}
		}
		return false
	})
	for i := range 20 {
		k := fmt.Sprintf("down-%d", i)
		if code, _, body := call(t, "PUT", tc.urls[0]+"/kv/"+k, k, nil); code != 204 {
			t.Fatalf("PUT with node2 down: %d %q", code, body)
		}
		if code, _, body := call(t, "GET", tc.urls[2]+"/kv/"+k, "", nil); code != 200 || body != k {
			t.Fatalf("GET with node2 down: %d %q", code, body)
		}
	}
	if code, _, body := call(t, "PUT", tc.urls[0]+"/kv/k?w=3", "v", nil); code != 503 {
		t.Errorf("w=3 with node2 down: %d %q, want 503", code, body)
	}
	if code, _, _ := call(t, "GET", tc.urls[0]+"/readyz", "", nil); code != 200 {
		t.Errorf("readyz with node2 down: %d, want 200", code)
	}
}
