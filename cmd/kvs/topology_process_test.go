package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kvs-db/kvs/bus"
	"github.com/kvs-db/kvs/gateway"
	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node/topology"
)

// ringOf asks p for the topology.
func ringOf(p *procNode) (gateway.RingJSON, error) {
	var r gateway.RingJSON
	code, body, err := httpDo(http.MethodGet, p.httpURL+"/ring", nil)
	if err != nil {
		return r, err
	}
	if code != http.StatusOK {
		return r, fmt.Errorf("/ring: %d %s", code, body)
	}
	return r, json.Unmarshal(body, &r)
}

// waitRing waits until p's topology satisfies cond with no change pending.
func waitRing(t *testing.T, p *procNode, what string, within time.Duration, cond func(gateway.RingJSON) bool) gateway.RingJSON {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r, err := ringOf(p)
		if err == nil && r.Change == nil && cond(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v (last ring %+v, %v)", what, within, r, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func memberState(r gateway.RingJSON, id string) string {
	for _, m := range r.Members {
		if m.ID == id {
			return m.State
		}
	}
	return ""
}

// placementOf rebuilds the placement of a ring served on /ring.
func placementOf(t *testing.T, r gateway.RingJSON) *topology.Placement {
	t.Helper()
	topo := topology.Topology{ClusterID: r.ClusterID, Epoch: r.Epoch, N: r.N, VNodes: r.VNodes}
	for _, m := range r.Members {
		topo.Members = append(topo.Members, topology.Member{ID: m.ID, State: topology.State(m.State), Since: m.Since})
	}
	p, err := topo.Placement()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// versioned records every acknowledged PUT with the version it got.
type versioned struct {
	mu sync.Mutex
	m  map[string]lsm.Version
}

func (v *versioned) snapshot() map[string]lsm.Version {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[string]lsm.Version, len(v.m))
	for k, ver := range v.m {
		out[k] = ver
	}
	return out
}

func parseVersion(s string) (lsm.Version, error) {
	c, n, ok := strings.Cut(s, ".")
	counter, err1 := strconv.ParseUint(c, 10, 64)
	node, err2 := strconv.ParseUint(n, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return lsm.Version{}, fmt.Errorf("bad version %q", s)
	}
	return lsm.Version{Counter: counter, Node: uint32(node)}, nil
}

// writers streams PUTs of unique keys through a changing set of nodes.
type writers struct {
	targets []*procNode
	mu      sync.Mutex // guards targets
	acked   versioned
	stop    chan struct{}
	wg      sync.WaitGroup
	failed  sync.Map
	paused  atomic.Bool // while the test checks the replicas
}

// pause stops new writes until resume; the checks between changes then
// read replicas that are not also taking load.
func (w *writers) pause()  { w.paused.Store(true) }
func (w *writers) resume() { w.paused.Store(false) }

func startWriters(t *testing.T, n int, targets []*procNode) *writers {
	w := &writers{targets: slices.Clone(targets), acked: versioned{m: map[string]lsm.Version{}}, stop: make(chan struct{})}
	for c := range n {
		w.wg.Add(1)
		go w.run(c)
	}
	return w
}

func (w *writers) setTargets(ts []*procNode) {
	w.mu.Lock()
	w.targets = slices.Clone(ts)
	w.mu.Unlock()
}

func (w *writers) run(c int) {
	defer w.wg.Done()
	fails := 0
	defer func() { w.failed.Store(c, fails) }()
	const maxPuts = 30000 // bound on each writer's stream
	for i := 0; i < maxPuts; i++ {
		select {
		case <-w.stop:
			return
		default:
		}
		if w.paused.Load() {
			time.Sleep(10 * time.Millisecond)
			i--
			continue
		}
		w.mu.Lock()
		p := w.targets[(c+i)%len(w.targets)]
		w.mu.Unlock()
		key := fmt.Sprintf("t%d/%05d", c, i)
		req, _ := http.NewRequest(http.MethodPut, p.httpURL+"/kv/"+escapeKey(key), strings.NewReader(key))
		resp, err := testClient.Do(req)
		if err != nil {
			fails++
			time.Sleep(5 * time.Millisecond)
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			fails++
			time.Sleep(5 * time.Millisecond)
			continue
		}
		v, err := parseVersion(resp.Header.Get("X-Kvs-Version"))
		if err != nil {
			continue
		}
		w.acked.mu.Lock()
		w.acked.m[key] = v
		w.acked.mu.Unlock()
	}
}

func (w *writers) waitAcked(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for len(w.acked.snapshot()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d writes acknowledged after 60s", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (w *writers) end() (map[string]lsm.Version, int) {
	close(w.stop)
	w.wg.Wait()
	fails := 0
	w.failed.Range(func(_, v any) bool { fails += v.(int); return true })
	return w.acked.snapshot(), fails
}

// heldVersion asks p's own replica for key through /internal/kv.
func heldVersion(p *procNode, key string) (lsm.Version, bool, error) {
	req, err := http.NewRequest(http.MethodGet, p.httpURL+"/internal/kv?key="+url.QueryEscape(key), nil)
	if err != nil {
		return lsm.Version{}, false, err
	}
	req.Header.Set("Authorization", "Bearer "+processSecret)
	resp, err := testClient.Do(req)
	if err != nil {
		return lsm.Version{}, false, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode == http.StatusNotFound {
		return lsm.Version{}, false, nil
	}
	if resp.StatusCode != http.StatusOK {
		return lsm.Version{}, false, fmt.Errorf("/internal/kv: %d", resp.StatusCode)
	}
	v, err := parseVersion(resp.Header.Get("X-Kvs-Version"))
	return v, err == nil, err
}

// checkHeldByW checks on the replicas themselves that every acknowledged
// write is held by at least w of its replicas in ring r.
func checkHeldByW(t *testing.T, r gateway.RingJSON, byID map[string]*procNode, acked map[string]lsm.Version, w int) {
	t.Helper()
	p := placementOf(t, r)
	var mu sync.Mutex
	short := 0
	keys := make(chan string)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for key := range keys {
				want := acked[key]
				held := 0
				reps := p.Replicas(nil, p.Current.Hash([]byte(key)))
				for _, id := range reps {
					if node := byID[id]; node != nil {
						v, ok, err := heldVersion(node, key)
						if err != nil {
							t.Errorf("%s's replica of %s: %v", id, key, err)
						}
						if ok && !v.Less(want) {
							held++
						}
					}
				}
				if held < w {
					mu.Lock()
					short++
					if short <= 5 {
						t.Errorf("epoch %d: acknowledged %s %v held by %d of its replicas %v", r.Epoch, key, want, held, reps)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for key := range acked {
		keys <- key
	}
	close(keys)
	wg.Wait()
	if short > 0 {
		t.Fatalf("epoch %d: %d of %d acknowledged writes on fewer than %d replicas", r.Epoch, short, len(acked), w)
	}
	t.Logf("epoch %d: all %d acknowledged writes on at least %d of their replicas", r.Epoch, len(acked), w)
}

// TestProcessTopologyChanges runs the real binary as five processes under
// writes from several clients, with anti-entropy, hints and read repair
// off, so that nothing but the changes themselves moves data: a sixth node
// joins, one is decommissioned, one is killed with SIGKILL and removed.
// After each change every acknowledged write is on at least W=2 of its new
// replicas, checked on the replicas; at the end every acknowledged write
// reads back with R=2 through every node. A forged heartbeat, published
// with the cluster secret, changes no membership.
func TestProcessTopologyChanges(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: builds the binary and runs six nodes")
	}
	extra := []string{"--anti-entropy-interval", "-1s", "--hinted-handoff=false", "--read-repair=false"}
	nodes := startProcClusterN(t, 5, extra...)
	byID := map[string]*procNode{}
	for _, p := range nodes {
		byID[p.id] = p
	}
	node1 := nodes[0]

	forgeHeartbeats(t, node1)

	w := startWriters(t, 6, nodes)
	w.waitAcked(t, 300)

	// Join: node6, seeded with node1 alone.
	dir := filepath.Dir(node1.logPath)
	ports := freePorts(t, 3)
	node6 := newProcNode(t, dir, "node6", procPorts{ports[0], ports[1], ports[2]}, []int{clusterPort(node1)}, extra)
	t.Cleanup(func() {
		node6.kill()
		if t.Failed() {
			dumpLogTail(t, node6.logPath, 60)
		}
	})
	start := time.Now()
	node6.start()
	r := waitRing(t, node1, "node6 normal", 120*time.Second, func(r gateway.RingJSON) bool { return memberState(r, "node6") == "normal" })
	t.Logf("node6 joined in %v; %d writes acknowledged so far", time.Since(start).Round(time.Millisecond), len(w.acked.snapshot()))
	byID["node6"] = node6
	w.pause()
	checkHeldByW(t, r, byID, w.acked.snapshot(), 2)
	w.resume()
	w.setTargets([]*procNode{nodes[0], nodes[2], nodes[3], nodes[4], node6})

	// Decommission node2: it streams its ranges away, leaves and exits.
	node2 := nodes[1]
	runBinary(t, "", "decommission", "--url", node2.httpURL, "--cluster-secret", processSecret, "--wait-timeout", "2m")
	select {
	case <-node2.done:
	case <-time.After(30 * time.Second):
		t.Fatal("node2 still running after its decommission")
	}
	if code := node2.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("decommissioned node2 exited with %d", code)
	}
	node2.cmd = nil
	delete(byID, "node2")
	r = waitRing(t, node1, "node2 removed", 60*time.Second, func(r gateway.RingJSON) bool { return memberState(r, "node2") == "removed" })
	w.pause()
	checkHeldByW(t, r, byID, w.acked.snapshot(), 2)
	w.resume()

	// removenode: refused while node4 is alive, done once it is dead.
	node4 := nodes[3]
	cmd := exec.Command(kvsBinary, "removenode", "node4", "--url", node1.httpURL, "--cluster-secret", processSecret)
	cmd.Env = cleanEnv()
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "alive") {
		t.Fatalf("removenode of a live node: %v %s", err, out)
	}
	w.setTargets([]*procNode{nodes[0], nodes[2], nodes[4], node6})
	node4.kill()
	delete(byID, "node4")
	waitMemberAlive(t, node1, "node4", false, 30*time.Second)
	runBinary(t, "", "removenode", "node4", "--url", node1.httpURL, "--cluster-secret", processSecret, "--wait-timeout", "2m")
	r = waitRing(t, node1, "node4 removed", 60*time.Second, func(r gateway.RingJSON) bool { return memberState(r, "node4") == "removed" })
	acked, fails := w.end()
	t.Logf("writes: %d acknowledged, %d failed", len(acked), fails)
	checkHeldByW(t, r, byID, acked, 2)

	live := []*procNode{nodes[0], nodes[2], nodes[4], node6}
	var rg sync.WaitGroup
	for _, p := range live {
		rg.Add(1)
		go func() {
			defer rg.Done()
			for key, want := range acked {
				req, _ := http.NewRequest(http.MethodGet, p.httpURL+"/kv/"+escapeKey(key)+"?r=2", nil)
				resp, err := testClient.Do(req)
				if err != nil {
					t.Errorf("GET %s via %s: %v", key, p.id, err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				v, _ := parseVersion(resp.Header.Get("X-Kvs-Version"))
				if resp.StatusCode != http.StatusOK || v.Less(want) {
					t.Errorf("acknowledged %s %v: GET via %s = %d %v", key, want, p.id, resp.StatusCode, v)
					return
				}
			}
		}()
	}
	rg.Wait()
	t.Logf("every acknowledged write reads back through each of %d nodes", len(live))
	out := runBinary(t, "", "repair", "--url", node1.httpURL, "--cluster-secret-file", procSecretFile(t, dir))
	if !strings.Contains(out, "total:") {
		t.Errorf("kvs repair:\n%s", out)
	}
	t.Logf("kvs repair:\n%s", out)
	if out := runBinary(t, "", "ring", "--url", node1.httpURL); !strings.Contains(out, "node6   normal") {
		t.Errorf("kvs ring:\n%s", out)
	}
}

// clusterPort returns p's NATS cluster port from its arguments.
func clusterPort(p *procNode) int {
	for i, a := range p.args {
		if a == "--cluster-port" {
			n, _ := strconv.Atoi(p.args[i+1])
			return n
		}
	}
	return 0
}

// natsPort returns p's NATS client port from its arguments.
func natsPort(p *procNode) int {
	for i, a := range p.args {
		if a == "--nats-port" {
			n, _ := strconv.Atoi(p.args[i+1])
			return n
		}
	}
	return 0
}

// forgeHeartbeats publishes, with the cluster secret (as user kvs, the
// nodes' own: watch may publish nothing, see TestProcessNATSUsers),
// heartbeats a stranger holding the secret could send: a 25 KB one listing
// 2000 made-up members and a hundred small ones from made-up senders.
// Membership does not change, and p counts them as dropped.
func forgeHeartbeats(t *testing.T, p *procNode) {
	t.Helper()
	before, _ := ringOf(p)
	oversized := `kvs_node_gossip_dropped_total{node="` + p.id + `",reason="oversized"}`
	notMember := `kvs_node_gossip_dropped_total{node="` + p.id + `",reason="not_member"}`
	o0, n0 := metricValue(t, p, oversized), metricValue(t, p, notMember)
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", natsPort(p)), nats.UserInfo(bus.AppUser, processSecret))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var fake []string
	for i := range 2000 {
		fake = append(fake, fmt.Sprintf("fake%04d", i))
	}
	big, _ := json.Marshal(map[string]any{"id": "fake0000", "cluster": "kvs", "members": fake, "ts_ms": 1, "ready": true})
	if err := nc.Publish("kvs.kvs.gossip", big); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		hb, _ := json.Marshal(map[string]any{"id": fmt.Sprintf("fake%04d", i), "cluster": "kvs", "ready": true, "epoch": 99})
		if err := nc.Publish("kvs.kvs.gossip", hb); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for metricValue(t, p, oversized) < o0+1 || metricValue(t, p, notMember) < n0+100 {
		if time.Now().After(deadline) {
			t.Fatalf("forged heartbeats not counted as dropped: oversized %v -> %v, not_member %v -> %v",
				o0, metricValue(t, p, oversized), n0, metricValue(t, p, notMember))
		}
		time.Sleep(50 * time.Millisecond)
	}
	after, err := ringOf(p)
	if err != nil || after.Epoch != before.Epoch || len(after.Members) != len(before.Members) {
		t.Fatalf("forged heartbeats changed the ring: %+v -> %+v (%v)", before.Members, after.Members, err)
	}
}

// metricValue returns the value of one series on p's /metrics (0 when it
// is not there yet).
func metricValue(t *testing.T, p *procNode, series string) float64 {
	t.Helper()
	code, body, err := httpDo(http.MethodGet, p.httpURL+"/metrics", nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}
