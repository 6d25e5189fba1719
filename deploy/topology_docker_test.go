//go:build docker

package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvs-db/kvs/gateway"
	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node/topology"
)

// The topology test grows the compose cluster to four nodes and shrinks it
// back to three while writers keep writing, and checks the promise a
// topology change must keep: every acknowledged write is on at least W of
// the key's replicas as the committed ring places them (not merely
// somewhere in the cluster), and reads back from every remaining node.
const (
	// joinProfile is the compose profile of node4: `up` leaves it out.
	joinProfile = "join"
	// quorumW is the cluster's write quorum.
	quorumW = 2
	// writers write unique keys concurrently, each pausing writeGap after
	// an acknowledged write (so the two cores are not saturated and the
	// number of keys to check stays in the thousands).
	writers  = 4
	writeGap = 10 * time.Millisecond
	// valueBytes pads every value, so that the data a change streams is
	// a few hundred kilobytes (see streamThroughput).
	valueBytes = 100
)

// ackedWrite is a write the cluster acknowledged: the version is the one
// its X-Kvs-Version header named.
type ackedWrite struct {
	key, value, via string
	version         lsm.Version
	at              time.Time // when the answer came
}

// writeLoad runs writers goroutines, each writing its own unique keys
// through the current coordinators in turn, and records every
// acknowledged write and every failure.
type writeLoad struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	targets []string // coordinators, changed by setTargets
	acked   []ackedWrite
	failed  map[string]int // by coordinator
	errs    []string       // the first few failures
}

func startWrites(targets ...string) *writeLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &writeLoad{cancel: cancel, targets: targets, failed: map[string]int{}}
	for g := 0; g < writers; g++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				l.mu.Lock()
				via := l.targets[(g+i)%len(l.targets)]
				l.mu.Unlock()
				key := fmt.Sprintf("topo-%d-%d", g, i)
				value := fmt.Sprintf("value-%d-%d-", g, i)
				value += strings.Repeat("x", valueBytes-len(value))
				v, err := putVersion(via, key, value)
				l.mu.Lock()
				if err != nil {
					l.failed[via]++
					if len(l.errs) < 10 {
						l.errs = append(l.errs, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
					}
				} else {
					l.acked = append(l.acked, ackedWrite{key: key, value: value, via: via, version: v, at: time.Now()})
				}
				l.mu.Unlock()
				if err != nil {
					time.Sleep(100 * time.Millisecond) // a dead coordinator refuses at once
				} else {
					time.Sleep(writeGap)
				}
			}
		}()
	}
	return l
}

func (l *writeLoad) setTargets(targets ...string) {
	l.mu.Lock()
	l.targets = targets
	l.mu.Unlock()
}

// snapshot returns the writes acknowledged so far.
func (l *writeLoad) snapshot() []ackedWrite {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.acked)
}

func (l *writeLoad) stop() {
	l.cancel()
	l.wg.Wait()
}

// counts describes the acknowledged and failed writes so far, by
// coordinator, and the first failures.
func (l *writeLoad) counts() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	by := map[string]int{}
	for _, w := range l.acked {
		by[w.via]++
	}
	failed := 0
	for _, n := range l.failed {
		failed += n
	}
	s := fmt.Sprintf("acked %d %v, failed %d %v", len(l.acked), by, failed, l.failed)
	if len(l.errs) > 0 {
		s += "; first failures:\n  " + strings.Join(l.errs, "\n  ")
	}
	return s
}

// putVersion writes key through node and returns the version it got.
func putVersion(node, key, value string) (lsm.Version, error) {
	req, err := http.NewRequest(http.MethodPut, nodes[node]+"/kv/"+url.PathEscape(key), strings.NewReader(value))
	if err != nil {
		return lsm.Version{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return lsm.Version{}, err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return lsm.Version{}, fmt.Errorf("PUT %s via %s: %d %s", key, node, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return parseVersion(resp.Header.Get("X-Kvs-Version"))
}

// parseVersion parses a version header, "counter.node".
func parseVersion(s string) (lsm.Version, error) {
	c, n, ok := strings.Cut(s, ".")
	counter, err1 := strconv.ParseUint(c, 10, 64)
	id, err2 := strconv.ParseUint(n, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return lsm.Version{}, fmt.Errorf("version %q: want counter.node", s)
	}
	return lsm.Version{Counter: counter, Node: uint32(id)}, nil
}

// ring asks node for GET /ring.
func ring(node string) (gateway.RingJSON, error) {
	var r gateway.RingJSON
	code, body, err := do(http.MethodGet, nodes[node]+"/ring", nil, nil)
	if err != nil {
		return r, err
	}
	if code != http.StatusOK {
		return r, fmt.Errorf("GET /ring of %s: %d %s", node, code, body)
	}
	return r, json.Unmarshal(body, &r)
}

// pending is what settled saw of the change it waited out.
type pending struct {
	// first is when a pending change was first seen, zero if never.
	first time.Time
	// last is the last pending change seen.
	last *gateway.RingChangeJSON
}

// settled waits until every node of observers answers GET /ring with the
// same epoch, no pending change, and every member of want in its state;
// it returns that ring and when it saw it. p, when not nil, records the
// pending change seen meanwhile.
func settled(t *testing.T, timeout time.Duration, want map[string]string, p *pending, observers ...string) (gateway.RingJSON, time.Time) {
	t.Helper()
	var out gateway.RingJSON
	eventually(t, timeout, fmt.Sprintf("ring settled with %v, seen by %v", want, observers), func() error {
		var epoch uint64
		for i, o := range observers {
			r, err := ring(o)
			if err != nil {
				return err
			}
			if r.Change != nil {
				if p != nil {
					if p.first.IsZero() {
						p.first = time.Now()
					}
					p.last = r.Change
				}
				return fmt.Errorf("%s: change pending: %s %s at epoch %d", o, r.Change.Kind, r.Change.Node, r.Change.Epoch)
			}
			if i > 0 && r.Epoch != epoch {
				return fmt.Errorf("%s at epoch %d, %s at %d", observers[0], epoch, o, r.Epoch)
			}
			epoch = r.Epoch
			for id, state := range want {
				found := false
				for _, m := range r.Members {
					if m.ID == id {
						found = true
						if m.State != state {
							return fmt.Errorf("%s: %s is %s, want %s", o, id, m.State, state)
						}
					}
				}
				if !found {
					return fmt.Errorf("%s: %s is no member", o, id)
				}
			}
			out = r
		}
		return nil
	})
	return out, time.Now()
}

// during counts the writes acknowledged in [from, to].
func during(writes []ackedWrite, from, to time.Time) int {
	n := 0
	for _, w := range writes {
		if !w.at.Before(from) && !w.at.After(to) {
			n++
		}
	}
	return n
}

// placement builds the placement of a ring with no change pending, as the
// nodes compute it.
func placement(t *testing.T, r gateway.RingJSON) *topology.Placement {
	t.Helper()
	if r.Change != nil {
		t.Fatalf("placement of a ring with a change pending")
	}
	topo := topology.Topology{ClusterID: r.ClusterID, Epoch: r.Epoch, N: r.N, VNodes: r.VNodes}
	for _, m := range r.Members {
		topo.Members = append(topo.Members, topology.Member{ID: m.ID, State: topology.State(m.State), HTTP: m.HTTP, Since: m.Since})
	}
	p, err := topo.Placement()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// getHeader is a GET that also returns the answer's headers.
func getHeader(u string, header http.Header) (int, http.Header, string, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, "", err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b), err
}

// replicaVersion is the version node's own replica holds of key (zero when
// it holds none), from GET /internal/kv.
func replicaVersion(node, key string) (lsm.Version, error) {
	code, h, body, err := getHeader(nodes[node]+"/internal/kv?key="+url.QueryEscape(key),
		http.Header{"Authorization": {"Bearer " + secret}})
	switch {
	case err != nil:
		return lsm.Version{}, fmt.Errorf("GET /internal/kv of %s on %s: %w", key, node, err)
	case code == http.StatusNotFound:
		return lsm.Version{}, nil
	case code != http.StatusOK:
		return lsm.Version{}, fmt.Errorf("GET /internal/kv of %s on %s: %d %s", key, node, code, body)
	}
	return parseVersion(h.Get("X-Kvs-Version"))
}

// parallel runs fn on every write with a few workers and returns the
// errors, at most one per write.
func parallel(writes []ackedWrite, fn func(ackedWrite) error) []error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	work := make(chan ackedWrite)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w := range work {
				if err := fn(w); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for _, w := range writes {
		work <- w
	}
	close(work)
	wg.Wait()
	return errs
}

// report fails the test with the number of errors and the first few.
func report(t *testing.T, what string, total int, errs []error) {
	t.Helper()
	if len(errs) == 0 {
		t.Logf("%s: all %d hold", what, total)
		return
	}
	t.Errorf("%s: %d of %d do not hold; the first:\n%v", what, len(errs), total, errors.Join(errs[:min(len(errs), 20)]...))
}

// checkOnReplicas checks that every write is held, at its version or a
// newer one, by at least quorumW of the key's replicas under p, asking
// each replica for its own copy through /internal/kv.
func checkOnReplicas(t *testing.T, p *topology.Placement, writes []ackedWrite) {
	t.Helper()
	errs := parallel(writes, func(w ackedWrite) error {
		replicas := p.Replicas(nil, p.Current.Hash([]byte(w.key)))
		holders := 0
		var seen []string
		for _, r := range replicas {
			v, err := replicaVersion(r, w.key)
			if err != nil {
				return err
			}
			if !v.Less(w.version) {
				holders++
			}
			seen = append(seen, fmt.Sprintf("%s=%s", r, v))
		}
		if holders < quorumW {
			return fmt.Errorf("%s (acked %s via %s) is on %d of its replicas %v, want %d",
				w.key, w.version, w.via, holders, seen, quorumW)
		}
		return nil
	})
	report(t, fmt.Sprintf("acknowledged writes on >= %d of their replicas at epoch %d", quorumW, p.Epoch), len(writes), errs)
}

// checkReads checks that every write reads back with R=2 through every
// node of via.
func checkReads(t *testing.T, writes []ackedWrite, via ...string) {
	t.Helper()
	errs := parallel(writes, func(w ackedWrite) error {
		for _, n := range via {
			code, h, body, err := getHeader(nodes[n]+"/kv/"+url.PathEscape(w.key)+"?r=2", nil)
			if err != nil {
				return fmt.Errorf("GET %s?r=2 via %s: %w", w.key, n, err)
			}
			v, verr := parseVersion(h.Get("X-Kvs-Version"))
			if code != http.StatusOK || body != w.value || verr != nil || v.Less(w.version) {
				return fmt.Errorf("GET %s?r=2 via %s: %d %q version %q, want %q at %s or newer (acked via %s)",
					w.key, n, code, body, h.Get("X-Kvs-Version"), w.value, w.version, w.via)
			}
		}
		return nil
	})
	report(t, fmt.Sprintf("acknowledged writes read back with r=2 via each of %v", via), len(writes), errs)
}

// exitedZero reports nil once the container has exited with status 0, and
// fails the test at once when it exited with another status.
func exitedZero(t *testing.T, id string) error {
	t.Helper()
	out, err := exec.Command("docker", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", id).CombinedOutput()
	if err != nil {
		return fmt.Errorf("docker inspect: %v: %s", err, out)
	}
	switch s := strings.TrimSpace(string(out)); {
	case s == "exited 0":
		return nil
	case strings.HasPrefix(s, "exited "):
		t.Fatalf("container %s: %s, want exit status 0", id, s)
	default:
		return fmt.Errorf("container %s: %s", id, s)
	}
	return nil
}

func TestComposeTopology(t *testing.T) {
	requireImage(t)
	composeDown(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cluster logs:\n%s", compose(t, "--profile", joinProfile, "logs", "--no-color", "--tail", "300"))
		}
		composeDown(t)
	})
	compose(t, "up", "-d")
	waitReady(t, "node1", "node2", "node3")
	if ids := strings.TrimSpace(compose(t, "ps", "-q", "node4")); ids != "" {
		t.Fatalf("`up -d` started node4 (%s); its profile should keep it out", ids)
	}
	bearer := http.Header{"Authorization": {"Bearer " + secret}}
	three := map[string]string{"node1": "normal", "node2": "normal", "node3": "normal"}
	settled(t, 30*time.Second, three, nil, "node1", "node2", "node3")

	load := startWrites("node1", "node2", "node3")
	defer load.stop()
	time.Sleep(3 * time.Second) // some data for node4 to stream
	t.Logf("before the join: %s", load.counts())

	t.Run("node4 joins under writes", func(t *testing.T) {
		start := time.Now()
		compose(t, "--profile", joinProfile, "up", "-d", "node4")
		var seen pending
		want := map[string]string{"node1": "normal", "node2": "normal", "node3": "normal", "node4": "normal"}
		r, at := settled(t, 2*time.Minute, want, &seen, "node1", "node2", "node3", "node4")
		writes := load.snapshot()
		t.Logf("node4 normal after %v at epoch %d; %s", at.Sub(start).Round(time.Millisecond), r.Epoch, load.counts())
		logPending(t, seen, at, writes)
		start = time.Now()
		checkOnReplicas(t, placement(t, r), writes)
		t.Logf("checked %d writes on their replicas in %v", len(writes), time.Since(start).Round(time.Millisecond))
	})
	if t.Failed() {
		return
	}

	t.Run("decommission node2 under writes", func(t *testing.T) {
		load.setTargets("node1", "node2", "node3", "node4")
		id := containerID(t, "node2")
		start := time.Now()
		code, body, err := do(http.MethodPost, nodes["node2"]+"/admin/decommission", nil, bearer)
		if err != nil || code != http.StatusAccepted {
			t.Fatalf("POST /admin/decommission on node2: %d %s %v", code, body, err)
		}
		// The answer is the ring with the change pending.
		seen := pending{first: time.Now()}
		want := map[string]string{"node1": "normal", "node2": "removed", "node3": "normal", "node4": "normal"}
		r, at := settled(t, 2*time.Minute, want, &seen, "node1", "node3", "node4")
		load.setTargets("node1", "node3", "node4")
		t.Logf("node2 removed after %v at epoch %d", at.Sub(start).Round(time.Millisecond), r.Epoch)
		eventually(t, 30*time.Second, "node2's container exited with status 0", func() error { return exitedZero(t, id) })
		t.Logf("node2 exited 0 after %v", time.Since(start).Round(time.Millisecond))
		load.stop()
		writes := load.snapshot()
		t.Logf("writers stopped: %s", load.counts())
		logPending(t, seen, at, writes)

		start = time.Now()
		checkOnReplicas(t, placement(t, r), writes)
		t.Logf("checked %d writes on their replicas in %v", len(writes), time.Since(start).Round(time.Millisecond))
		start = time.Now()
		checkReads(t, writes, "node1", "node3", "node4")
		t.Logf("read back %d writes via 3 nodes in %v", len(writes), time.Since(start).Round(time.Millisecond))
	})
}

// logPending logs the change settled waited out and how many writes were
// acknowledged while it was pending; none means the test did not test a
// change under writes.
func logPending(t *testing.T, seen pending, settledAt time.Time, writes []ackedWrite) {
	t.Helper()
	if seen.first.IsZero() {
		t.Errorf("the change was never seen pending: no write was acknowledged during it")
		return
	}
	n := during(writes, seen.first, settledAt)
	t.Logf("%d writes acknowledged while the change was pending (%v)", n, settledAt.Sub(seen.first).Round(time.Millisecond))
	if c := seen.last; c != nil {
		t.Logf("last pending change seen: %s %s, transfers %+v, progress %+v", c.Kind, c.Node, c.Transfers, c.Progress)
	}
	if n == 0 {
		t.Errorf("no write was acknowledged while the change was pending")
	}
}
