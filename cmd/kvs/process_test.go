package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvs-db/kvs/gateway"
)

// kvsBinary is the real binary, built once by TestMain for the process
// tests; empty under -short.
var kvsBinary string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if !testing.Short() {
		dir, err := os.MkdirTemp("", "kvs-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		kvsBinary = filepath.Join(dir, "kvs")
		build := exec.Command("go", "build", "-o", kvsBinary, ".")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building kvs:", err)
			return 1
		}
	}
	return m.Run()
}

// processSecret is the cluster secret of the process tests' nodes.
const processSecret = "process-test-secret"

// procNode is one `kvs serve` process of a process test, restartable with
// the same arguments and data directory.
type procNode struct {
	t       *testing.T
	id      string
	args    []string
	env     []string // added to the test's environment without KVS_*
	wrap    []string // a command the binary runs under (prlimit ...), if any
	httpURL string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
}

// start launches the process, appending its output to its log file.
func (p *procNode) start() {
	p.t.Helper()
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	fmt.Fprintf(logf, "=== start %s at %s\n", p.id, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(kvsBinary, p.args...)
	if len(p.wrap) > 0 {
		cmd = exec.Command(p.wrap[0], append(append(p.wrap[1:len(p.wrap):len(p.wrap)], kvsBinary), p.args...)...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(cleanEnv(), p.env...)
	if err := cmd.Start(); err != nil {
		logf.Close()
		p.t.Fatal(err)
	}
	p.cmd = cmd
	p.done = make(chan struct{})
	done := p.done
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *procNode) kill() {
	p.t.Helper()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	p.cmd = nil
}

// startNode1 starts one `kvs serve` process, node1 without seeds, on
// free loopback ports (returned: HTTP, NATS, cluster) with extra flags; at
// the end of the test it is killed, and its log shown if the test failed.
// It does not wait for the node to be ready.
func startNode1(t *testing.T, dir string, extra ...string) (*procNode, []int) {
	t.Helper()
	ports := freePorts(t, 3)
	p := newProcNode(t, dir, "node1", procPorts{ports[0], ports[1], ports[2]}, nil, extra)
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			dumpLogTail(t, p.logPath, 40)
		}
	})
	p.start()
	return p, ports
}

// signal sends sig to the process.
func (p *procNode) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v to %s: %v", sig, p.id, err)
	}
}

// logText returns what the process has logged so far.
func (p *procNode) logText() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// waitProcUntil polls cond until it holds, failing the test when p exits
// first or within passes.
func waitProcUntil(t *testing.T, p *procNode, within time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(50 * time.Millisecond) {
		select {
		case <-p.done:
			t.Fatalf("%s exited while waiting until %s", p.id, what)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not %s after %v", what, within)
		}
	}
}

// cleanEnv is this process's environment without KVS_* variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KVS_") {
			env = append(env, kv)
		}
	}
	return env
}

// startProcCluster starts three `kvs serve` processes on free loopback
// ports, each seeded with the other two, and waits until all are ready.
func startProcCluster(t *testing.T, extra ...string) []*procNode {
	return startProcClusterN(t, 3, extra...)
}

// procPorts are the HTTP, NATS client and NATS cluster ports of one node.
type procPorts struct{ http, nats, cluster int }

// procSecretFile returns the path of the secret file of the nodes under
// dir, writing processSecret and a newline to it the first time: never
// again, as a node may be reading it.
func procSecretFile(t *testing.T, dir string) string {
	path := filepath.Join(dir, "cluster-secret")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return path
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(processSecret + "\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// newProcNode describes node id with the given ports and seeds (cluster
// ports), data under dir, and extra serve flags. The node reads the
// cluster secret from a file.
func newProcNode(t *testing.T, dir, id string, pp procPorts, seeds []int, extra []string) *procNode {
	var ss []string
	for _, s := range seeds {
		ss = append(ss, "127.0.0.1:"+strconv.Itoa(s))
	}
	args := []string{"serve",
		"--id", id,
		"--http", "127.0.0.1:" + strconv.Itoa(pp.http),
		"--data", filepath.Join(dir, id),
		"--nats-host", "127.0.0.1",
		"--nats-port", strconv.Itoa(pp.nats),
		"--cluster-port", strconv.Itoa(pp.cluster),
		"--advertise", "127.0.0.1:" + strconv.Itoa(pp.cluster),
		"--seeds", strings.Join(ss, ","),
		"--cluster-secret-file", procSecretFile(t, dir),
		"--sync", "always",
		"--gossip-interval", "250ms",
		"--log-level", "debug",
	}
	return &procNode{
		t:       t,
		id:      id,
		args:    append(args, extra...),
		httpURL: "http://127.0.0.1:" + strconv.Itoa(pp.http),
		logPath: filepath.Join(dir, id+".log"),
	}
}

// startProcClusterN starts n `kvs serve` processes on free loopback ports,
// each seeded with the others, and waits until all are ready.
func startProcClusterN(t *testing.T, n int, extra ...string) []*procNode {
	t.Helper()
	dir := t.TempDir()
	ports := freePorts(t, 3*n)
	var nodes []*procNode
	for i := range n {
		var seeds []int
		for j := range n {
			if j != i {
				seeds = append(seeds, ports[3*j+2])
			}
		}
		pp := procPorts{ports[3*i], ports[3*i+1], ports[3*i+2]}
		nodes = append(nodes, newProcNode(t, dir, "node"+strconv.Itoa(i+1), pp, seeds, extra))
	}
	t.Cleanup(func() {
		for _, p := range nodes {
			p.kill()
		}
		if t.Failed() {
			for _, p := range nodes {
				dumpLogTail(t, p.logPath, 60)
			}
		}
	})
	for _, p := range nodes {
		p.start()
	}
	for _, p := range nodes {
		waitReady(t, p, 60*time.Second)
	}
	return nodes
}

// dumpLogTail logs the last n lines of a node's log file.
func dumpLogTail(t *testing.T, path string, n int) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	t.Logf("--- last %d lines of %s:\n%s", len(lines), path, strings.Join(lines, "\n"))
}

var testClient = &http.Client{Timeout: 10 * time.Second}

// waitReady polls /readyz until it answers 200 or the deadline passes.
func waitReady(t *testing.T, p *procNode, within time.Duration) {
	t.Helper()
	waitReadyWith(t, testClient, p, within)
}

// waitReadyWith polls /readyz with client until it answers 200 or the
// deadline passes.
func waitReadyWith(t *testing.T, client *http.Client, p *procNode, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := client.Get(p.httpURL + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before it was ready", p.id)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %v (last error %v)", p.id, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// httpDo sends one request and returns status and body.
func httpDo(method, url string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	resp, err := testClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// acked records every PUT that got a 2xx: key -> value.
type acked struct {
	mu sync.Mutex
	m  map[string]string
}

func (a *acked) add(k, v string) {
	a.mu.Lock()
	a.m[k] = v
	a.mu.Unlock()
}

func (a *acked) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.m)
}

// waitAcked waits until at least n PUTs were acknowledged, or fails.
func (a *acked) waitAcked(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for a.len() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d PUTs acknowledged after %v, want %d", a.len(), within, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkAllReadable reads every acknowledged key at the default read quorum,
// spreading the reads over the nodes, and fails for each key that is not
// there with its value. A 503 (quorum not yet reachable while gossip
// settles) is retried until the deadline; a 404 or a wrong value is a lost
// write and fails at once.
func checkAllReadable(t *testing.T, nodes []*procNode, a *acked, within time.Duration) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	deadline := time.Now().Add(within)
	lost := 0
	i := 0
	for k, want := range a.m {
		i++
		url := nodes[i%len(nodes)].httpURL + "/kv/" + escapeKey(k)
		for {
			code, body, err := httpDo(http.MethodGet, url, nil)
			if err == nil && code == http.StatusOK && string(body) == want {
				break
			}
			if err == nil && code != http.StatusServiceUnavailable {
				lost++
				if lost <= 10 {
					t.Errorf("acknowledged %s=%q: GET %s answered %d %q", k, want, url, code, body)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("acknowledged %s: GET %s still failing after %v: %d %q %v", k, url, within, code, body, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged writes lost", lost, len(a.m))
	}
	t.Logf("all %d acknowledged writes readable", len(a.m))
}

// checkReplicaHolds waits until p's own replica (GET /internal/kv) holds
// every acknowledged write with its value.
func checkReplicaHolds(t *testing.T, p *procNode, a *acked, within time.Duration) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	deadline := time.Now().Add(within)
	for k, want := range a.m {
		for {
			req, err := http.NewRequest(http.MethodGet, p.httpURL+"/internal/kv?key="+url.QueryEscape(k), nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+processSecret)
			var code int
			var body []byte
			resp, err := testClient.Do(req)
			if err == nil {
				body, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				code = resp.StatusCode
			}
			if err == nil && code == http.StatusOK && string(body) == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s's replica does not hold acknowledged %s=%q after %v: %d %q %v", p.id, k, want, within, code, body, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("%s's replica holds all %d acknowledged writes", p.id, len(a.m))
}

// runBinary runs the kvs binary with args and stdin, fails the test on a
// non-zero exit, and returns its stdout.
func runBinary(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(kvsBinary, args...)
	cmd.Env = cleanEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("kvs %q: %v; stdout %q stderr %q", args, err, out.String(), errOut.String())
	}
	return out.String()
}

// waitMemberAlive waits until p's /cluster shows member id with the given
// liveness.
func waitMemberAlive(t *testing.T, p *procNode, id string, alive bool, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, body, err := httpDo(http.MethodGet, p.httpURL+"/cluster", nil)
		var st gateway.ClusterJSON
		if err == nil && code == http.StatusOK && json.Unmarshal(body, &st) == nil {
			for _, m := range st.Members {
				if m.ID == id && m.Alive == alive {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not show %s alive=%v after %v", p.id, id, alive, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestProcessKillNine runs the real binary as three processes. It streams
// PUTs through node1 while node2 is killed with SIGKILL and restarted; every
// PUT that got a 2xx must then be readable. Then all three are killed and
// restarted, and again nothing acknowledged may be lost.
func TestProcessKillNine(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: builds the binary and runs three nodes")
	}
	nodes := startProcCluster(t)
	node1, node2 := nodes[0], nodes[1]

	// The client commands of the real binary against the real cluster.
	const cliKey = "cli key/with?odd&chars=+%"
	runBinary(t, "", "put", cliKey, "cli value", "--url", node1.httpURL)
	if out := runBinary(t, "", "get", cliKey, "--url", nodes[2].httpURL); out != "cli value" {
		t.Fatalf("kvs get via node3: %q, want %q", out, "cli value")
	}
	runBinary(t, "", "delete", cliKey, "--url", nodes[1].httpURL, "--w", "3")
	get := exec.Command(kvsBinary, "get", cliKey, "--url", node1.httpURL)
	get.Env = cleanEnv()
	if out, err := get.CombinedOutput(); err == nil || !strings.Contains(string(out), "not found") {
		t.Fatalf("kvs get after delete: %v %q, want exit 1 and not found", err, out)
	}
	if out := runBinary(t, "", "status", "--url", node1.httpURL); !strings.Contains(out, "node3") {
		t.Fatalf("kvs status: %q", out)
	}
	runBinary(t, "", "health", "--url", nodes[2].httpURL)

	a := &acked{m: map[string]string{}}
	var failed, sent sync.Map // counters by worker, for the log
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	const workers = 4
	const maxPuts = 20000 // bound on the whole stream
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nFail, nSent := 0, 0
			defer func() { failed.Store(w, nFail); sent.Store(w, nSent) }()
			for i := 0; i < maxPuts/workers && ctx.Err() == nil; i++ {
				k := fmt.Sprintf("w%d/k%05d", w, i)
				v := fmt.Sprintf("value of %s at %d", k, time.Now().UnixNano())
				nSent++
				code, _, err := httpDo(http.MethodPut, node1.httpURL+"/kv/"+escapeKey(k), []byte(v))
				if err == nil && code/100 == 2 {
					a.add(k, v)
				} else {
					nFail++
					time.Sleep(5 * time.Millisecond)
				}
			}
		}()
	}

	a.waitAcked(t, 200, 30*time.Second)
	t.Logf("kill -9 %s after %d acknowledged PUTs", node2.id, a.len())
	node2.kill()
	// Keep writing until node1's gossip marks node2 down and after, so that
	// both paths are covered: requests failing at once ("no responders")
	// and writes for a known-down replica kept as hints.
	waitMemberAlive(t, node1, node2.id, false, 30*time.Second)
	n := a.len()
	a.waitAcked(t, n+300, 30*time.Second)
	t.Logf("restarting %s after %d acknowledged PUTs", node2.id, a.len())
	node2.start()
	waitReady(t, node2, 30*time.Second)
	n = a.len()
	a.waitAcked(t, n+200, 30*time.Second)
	stop()
	wg.Wait()
	var totalFailed, totalSent int
	failed.Range(func(_, v any) bool { totalFailed += v.(int); return true })
	sent.Range(func(_, v any) bool { totalSent += v.(int); return true })
	t.Logf("stream done: %d PUTs sent, %d acknowledged, %d failed", totalSent, a.len(), totalFailed)

	checkAllReadable(t, nodes, a, 30*time.Second)
	// node2 catches up with no operator action: its own replica comes to
	// hold every acknowledged write (N = 3: every node is a replica of
	// every key), through hinted handoff and repair.
	checkReplicaHolds(t, node2, a, 60*time.Second)

	// Kill all three at once and restart them: nothing acknowledged is lost.
	for _, p := range nodes {
		p.kill()
	}
	for _, p := range nodes {
		p.start()
	}
	for _, p := range nodes {
		waitReady(t, p, 30*time.Second)
	}
	checkAllReadable(t, nodes, a, 30*time.Second)
}
