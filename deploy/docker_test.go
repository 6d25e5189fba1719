//go:build docker

package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The compose project these tests start; down -v removes it afterwards.
const project = "kvstest"

// secret is the cluster secret the test cluster runs with.
const secret = "docker-test-secret"

// streamThroughput is the bytes per second the test cluster's nodes stream
// at in a topology change: slow enough that a join or a decommission of a
// few hundred kilobytes stays pending for seconds, so that many writes land
// while it is (at kvs's default, 32 MiB/s, it is over in a fraction of a
// second).
const streamThroughput = 64 << 10

var nodes = map[string]string{
	"node1": "http://127.0.0.1:8081",
	"node2": "http://127.0.0.1:8082",
	"node3": "http://127.0.0.1:8083",
	"node4": "http://127.0.0.1:8084", // the "join" profile; only the topology test starts it
}

var client = &http.Client{Timeout: 5 * time.Second}

// compose runs docker compose (v2 plugin or v1 binary, whichever exists) on
// this directory's compose file.
func compose(t *testing.T, args ...string) string {
	t.Helper()
	var name string
	var full []string
	if exec.Command("docker", "compose", "version").Run() == nil {
		name, full = "docker", []string{"compose"}
	} else {
		name = "docker-compose"
	}
	full = append(full, "-p", project, "-f", "docker-compose.yml")
	full = append(full, args...)
	cmd := exec.Command(name, full...)
	cmd.Env = append(os.Environ(), "KVS_CLUSTER_SECRET="+secret, "KVS_LOG_LEVEL=debug",
		fmt.Sprintf("KVS_STREAM_THROUGHPUT=%d", streamThroughput))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(full, " "), err, out)
	}
	return string(out)
}

// eventually polls cond until it returns nil or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func do(method, u string, body []byte, header http.Header) (int, []byte, error) {
	req, err := http.NewRequestWithContext(context.Background(), method, u, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func put(node, key, value string) error {
	code, body, err := do(http.MethodPut, nodes[node]+"/kv/"+url.PathEscape(key), []byte(value), nil)
	if err != nil {
		return err
	}
	if code/100 != 2 {
		return fmt.Errorf("PUT %s via %s: %d %s", key, node, code, body)
	}
	return nil
}

func get(node, key string) (int, string, error) {
	code, body, err := do(http.MethodGet, nodes[node]+"/kv/"+url.PathEscape(key), nil, nil)
	return code, string(body), err
}

// replicaHolds asks node for its own replica of key through /internal/kv.
func replicaHolds(node, key, want string) error {
	h := http.Header{"Authorization": {"Bearer " + secret}}
	code, body, err := do(http.MethodGet, nodes[node]+"/internal/kv?key="+url.QueryEscape(key), nil, h)
	if err != nil {
		return err
	}
	if code != http.StatusOK || string(body) != want {
		return fmt.Errorf("%s's replica of %s: %d %q, want 200 %q", node, key, code, body, want)
	}
	return nil
}

func waitReady(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		eventually(t, 60*time.Second, n+" ready", func() error {
			code, body, err := do(http.MethodGet, nodes[n]+"/readyz", nil, nil)
			if err != nil {
				return err
			}
			if code != http.StatusOK {
				return fmt.Errorf("readyz %d %s", code, body)
			}
			return nil
		})
	}
}

// containerID is the docker container ID of a compose service.
func containerID(t *testing.T, service string) string {
	t.Helper()
	id := strings.TrimSpace(compose(t, "ps", "-q", service))
	if id == "" {
		t.Fatalf("no container for service %s", service)
	}
	return id
}

// docker runs the docker CLI.
func docker(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("docker", args...).CombinedOutput(); err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// caughtUp waits until node's own replica holds every key of written.
func caughtUp(t *testing.T, node string, written map[string]string) {
	t.Helper()
	eventually(t, 60*time.Second, node+" replica caught up", func() error {
		for k, v := range written {
			if err := replicaHolds(node, k, v); err != nil {
				return err
			}
		}
		return nil
	})
}

// seesAlive waits until observer's /cluster reports member's liveness as
// alive.
func seesAlive(t *testing.T, observer, member string, alive bool) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("%s sees %s alive=%v", observer, member, alive), func() error {
		code, body, err := do(http.MethodGet, nodes[observer]+"/cluster", nil, nil)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("/cluster: %d %v", code, err)
		}
		var st struct {
			Members []struct {
				ID    string `json:"id"`
				Alive bool   `json:"alive"`
			} `json:"members"`
		}
		if err := json.Unmarshal(body, &st); err != nil {
			return err
		}
		for _, m := range st.Members {
			if m.ID == member && m.Alive == alive {
				return nil
			}
		}
		return fmt.Errorf("not yet: %s", body)
	})
}

// requireImage fails the test when the image the compose file runs is
// missing.
func requireImage(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("docker", "image", "inspect", "kvs:dev").CombinedOutput(); err != nil {
		t.Fatalf("image kvs:dev missing (run `make image` or `make test-docker`): %v\n%s", err, out)
	}
}

// composeDown removes the test's compose project: containers (node4 of the
// "join" profile too), network and volumes.
func composeDown(t *testing.T) {
	t.Helper()
	compose(t, "--profile", "join", "down", "-v", "--remove-orphans")
}

func TestComposeCluster(t *testing.T) {
	requireImage(t)
	composeDown(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cluster logs:\n%s", compose(t, "logs", "--no-color", "--tail", "200"))
		}
		composeDown(t)
	})
	compose(t, "up", "-d")
	waitReady(t, "node1", "node2", "node3")

	t.Run("seed workflow", func(t *testing.T) {
		// echo -n hello | curl -X PUT --data-binary @- localhost:8081/kv/greeting
		if err := put("node1", "greeting", "hello"); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"node2", "node3"} {
			code, body, err := get(n, "greeting")
			if err != nil || code != http.StatusOK || body != "hello" {
				t.Fatalf("GET greeting via %s: %d %q %v", n, code, body, err)
			}
		}
		if code, _, _ := get("node2", "never-written"); code != http.StatusNotFound {
			t.Fatalf("GET of a missing key: %d, want 404", code)
		}
	})

	t.Run("stop node2, write, start it, it catches up", func(t *testing.T) {
		compose(t, "stop", "node2")
		written := map[string]string{}
		for i := 0; i < 50; i++ {
			k, v := fmt.Sprintf("while-down-%d", i), fmt.Sprintf("value-%d", i)
			via := []string{"node1", "node3"}[i%2]
			if err := put(via, k, v); err != nil {
				t.Fatalf("write with node2 stopped: %v", err)
			}
			written[k] = v
		}
		for k, v := range written {
			if code, body, err := get("node3", k); err != nil || code != 200 || body != v {
				t.Fatalf("GET %s via node3 with node2 stopped: %d %q %v", k, code, body, err)
			}
		}
		compose(t, "start", "node2")
		waitReady(t, "node2")
		// node2 catches up by itself (hinted handoff); nobody reads the
		// keys through it, so this checks its own replica, not a quorum read.
		caughtUp(t, "node2", written)
	})

	t.Run("pause node3, writes still succeed", func(t *testing.T) {
		compose(t, "pause", "node3")
		paused := true
		defer func() {
			if paused {
				compose(t, "unpause", "node3")
			}
		}()
		written := map[string]string{}
		for i := 0; i < 20; i++ {
			k, v := fmt.Sprintf("while-paused-%d", i), fmt.Sprintf("p-%d", i)
			if err := put([]string{"node1", "node2"}[i%2], k, v); err != nil {
				t.Fatalf("write with node3 paused: %v", err)
			}
			written[k] = v
		}
		compose(t, "unpause", "node3")
		paused = false
		caughtUp(t, "node3", written)
	})

	t.Run("kill -9 node2 mid-stream, restart, nothing acknowledged is lost", func(t *testing.T) {
		acked := map[string]string{}
		killed := false
		for i := 0; i < 200; i++ {
			if i == 50 {
				docker(t, "kill", "--signal", "KILL", containerID(t, "node2"))
				killed = true
			}
			k, v := fmt.Sprintf("kill-stream-%d", i), fmt.Sprintf("k-%d", i)
			// Some writes may fail while the kill is noticed; only the
			// acknowledged ones are promised.
			if err := put([]string{"node1", "node3"}[i%2], k, v); err == nil {
				acked[k] = v
			}
		}
		if !killed || len(acked) < 150 {
			t.Fatalf("only %d of 200 writes acknowledged with one node killed", len(acked))
		}
		compose(t, "start", "node2")
		waitReady(t, "node2")
		for k, v := range acked {
			for _, n := range []string{"node1", "node2", "node3"} {
				if code, body, err := get(n, k); err != nil || code != 200 || body != v {
					t.Fatalf("acknowledged %s=%s reads %d %q %v via %s", k, v, code, body, err, n)
				}
			}
		}
		caughtUp(t, "node2", acked)
	})

	t.Run("cut node3 off the network, write, reconnect, it catches up", func(t *testing.T) {
		network := project + "_default"
		id := containerID(t, "node3")
		docker(t, "network", "disconnect", network, id)
		connected := false
		defer func() {
			if !connected {
				docker(t, "network", "connect", "--alias", "node3", network, id)
			}
		}()
		// Write once the others have noticed, so that the writes go to
		// node3 as hints rather than sitting in a stalled connection.
		seesAlive(t, "node1", "node3", false)
		seesAlive(t, "node2", "node3", false)
		written := map[string]string{}
		for i := 0; i < 30; i++ {
			k, v := fmt.Sprintf("while-cut-%d", i), fmt.Sprintf("c-%d", i)
			if err := put([]string{"node1", "node2"}[i%2], k, v); err != nil {
				t.Fatalf("write with node3 cut off: %v", err)
			}
			written[k] = v
		}
		docker(t, "network", "connect", "--alias", "node3", network, id)
		connected = true
		seesAlive(t, "node1", "node3", true)
		caughtUp(t, "node3", written)
	})
}
