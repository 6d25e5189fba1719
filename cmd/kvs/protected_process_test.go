package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestProcessProtectedDefaults runs `kvs serve` with no secret and no
// listen hosts: it serves on loopback, and advertises 127.0.0.1 for
// routes, not the machine's first address, which it does not listen on.
func TestProcessProtectedDefaults(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: builds the binary and runs a node")
	}
	dir := t.TempDir()
	ports := freePorts(t, 3)
	p := &procNode{
		t:  t,
		id: "node1",
		args: []string{"serve", "--id", "node1", "--data", filepath.Join(dir, "node1"),
			"--http", ":" + strconv.Itoa(ports[0]), "--nats-port", strconv.Itoa(ports[1]), "--cluster-port", strconv.Itoa(ports[2])},
		httpURL: "http://127.0.0.1:" + strconv.Itoa(ports[0]),
		logPath: filepath.Join(dir, "node1.log"),
	}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			dumpLogTail(t, p.logPath, 40)
		}
	})
	p.start()
	waitReady(t, p, 60*time.Second)
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	for _, want := range []string{
		"loopback only (protected mode)",
		"--http :" + strconv.Itoa(ports[0]) + " -> 127.0.0.1:" + strconv.Itoa(ports[0]),
		"--nats-host 0.0.0.0 -> 127.0.0.1",
		"http=127.0.0.1:" + strconv.Itoa(ports[0]),
		"nats=nats://127.0.0.1:" + strconv.Itoa(ports[1]),
		"advertise=127.0.0.1:" + strconv.Itoa(ports[2]),
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// TestProcessDev runs `kvs dev` with one node, without a secret and with
// one read from the file KVS_CLUSTER_SECRET_FILE names, which the node
// must get in place of the file; each time the node becomes ready and
// Ctrl-C (SIGTERM) stops it.
func TestProcessDev(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: builds the binary and runs kvs dev")
	}
	for _, withSecret := range []bool{false, true} {
		name := "no secret"
		if withSecret {
			name = "secret file"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			ports := freePorts(t, 3)
			p := &procNode{
				t:  t,
				id: "kvs dev",
				args: []string{"dev", "--nodes", "1", "--data", filepath.Join(dir, "data"),
					"--base-http", strconv.Itoa(ports[0]), "--base-nats", strconv.Itoa(ports[1]), "--base-cluster", strconv.Itoa(ports[2])},
				httpURL: "http://127.0.0.1:" + strconv.Itoa(ports[0]),
				logPath: filepath.Join(dir, "dev.log"),
			}
			if withSecret {
				p.env = []string{"KVS_CLUSTER_SECRET_FILE=" + procSecretFile(t, dir)}
			}
			t.Cleanup(func() {
				p.kill() // the node gets SIGTERM when kvs dev dies
				if t.Failed() {
					dumpLogTail(t, p.logPath, 40)
				}
			})
			p.start()
			waitReady(t, p, 60*time.Second)

			// /internal/* needs the secret exactly when the node has one.
			code, _, err := httpDo(http.MethodGet, p.httpURL+"/internal/kv?key=k", nil)
			if err != nil {
				t.Fatal(err)
			}
			if withSecret != (code == http.StatusUnauthorized) {
				t.Errorf("/internal/kv without the secret: %d", code)
			}
			if withSecret {
				req, _ := http.NewRequest(http.MethodGet, p.httpURL+"/internal/kv?key=k", nil)
				req.Header.Set("Authorization", "Bearer "+processSecret)
				resp, err := testClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusUnauthorized {
					t.Errorf("/internal/kv with the secret: %d", resp.StatusCode)
				}
			}

			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case <-p.done:
			case <-time.After(30 * time.Second):
				t.Fatal("kvs dev still running 30 s after SIGTERM")
			}
			if !p.cmd.ProcessState.Success() {
				t.Errorf("kvs dev exited with %v", p.cmd.ProcessState)
			}
			p.cmd = nil
			b, err := os.ReadFile(p.logPath)
			if err != nil {
				t.Fatal(err)
			}
			if log := string(b); !strings.Contains(log, "all nodes stopped") {
				t.Errorf("kvs dev did not stop its node in order")
			}
		})
	}
}
