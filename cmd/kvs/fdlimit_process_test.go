package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fdLimitNode starts one `kvs serve` under `prlimit --nofile=limit:limit`
// (soft and hard: Go raises the soft limit to the hard one at start) with
// extra flags, and waits until it is ready.
func fdLimitNode(t *testing.T, limit int, extra ...string) (*procNode, string) {
	t.Helper()
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("needs prlimit (util-linux) to start a node under a low file descriptor limit")
	}
	dir := t.TempDir()
	ports := freePorts(t, 3)
	data := filepath.Join(dir, "node1")
	p := &procNode{
		t:  t,
		id: "node1",
		args: append([]string{"serve", "--id", "node1", "--data", data,
			"--http", "127.0.0.1:" + strconv.Itoa(ports[0]), "--nats-port", strconv.Itoa(ports[1]),
			"--cluster-port", strconv.Itoa(ports[2]), "--sync", "always"}, extra...),
		wrap:    []string{prlimit, fmt.Sprintf("--nofile=%d:%d", limit, limit), "--"},
		httpURL: "http://127.0.0.1:" + strconv.Itoa(ports[0]),
		logPath: filepath.Join(dir, "node1.log"),
	}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			dumpLogTail(t, p.logPath, 60)
		}
	})
	p.start()
	waitReady(t, p, 60*time.Second)
	return p, data
}

// heldConn is a keep-alive connection of a test, on which it sends
// requests by hand.
type heldConn struct {
	c  net.Conn
	br *bufio.Reader
}

// dialHeld connects to addr and sends GET /healthz; ok is false when no
// answer came within wait (the server could not accept the connection).
func dialHeld(t *testing.T, addr string, wait time.Duration) (*heldConn, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	h := &heldConn{c: c, br: bufio.NewReader(c)}
	code, _, err := h.do("GET", "/healthz", nil, wait)
	if err != nil {
		return h, false
	}
	if code != http.StatusOK {
		t.Fatalf("GET /healthz: %d", code)
	}
	return h, true
}

// do sends one request on the connection and reads the answer within wait.
func (h *heldConn) do(method, path string, body []byte, wait time.Duration) (int, []byte, error) {
	h.c.SetDeadline(time.Now().Add(wait))
	if _, err := fmt.Fprintf(h.c, "%s %s HTTP/1.1\r\nHost: kvs\r\nContent-Length: %d\r\n\r\n", method, path, len(body)); err != nil {
		return 0, nil, err
	}
	if _, err := h.c.Write(body); err != nil {
		return 0, nil, err
	}
	resp, err := http.ReadResponse(h.br, nil)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// TestProcessOutOfFileDescriptors is the probe of the issue: a node under a
// low descriptor limit, with no connection cap, has its descriptors taken
// by idle keep-alive connections. A write that needs a new WAL then fails,
// with a 503 that shows no path, and /readyz says why; once the
// connections close, the store recovers by itself: /readyz turns ready and
// writes go through, with nothing acknowledged lost.
func TestProcessOutOfFileDescriptors(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: builds the binary and runs a node")
	}
	p, data := fdLimitNode(t, 64, "--max-conns", "-1")
	addr := strings.TrimPrefix(p.httpURL, "http://")

	// Take every descriptor: connections until one is not answered.
	var held []*heldConn
	defer func() {
		for _, h := range held {
			h.c.Close()
		}
	}()
	for len(held) < 200 {
		h, ok := dialHeld(t, addr, time.Second)
		held = append(held, h)
		if !ok {
			break
		}
	}
	if len(held) < 3 || len(held) == 200 {
		t.Fatalf("%d connections held: the limit did not bite", len(held))
	}
	t.Logf("%d connections answered before the descriptors ran out", len(held)-1)

	// Fill the memtable (4 MiB) through a held connection until a write
	// fails: the rotation it needs cannot create the new WAL.
	value := bytes.Repeat([]byte("v"), 512<<10)
	var acked []string
	var code int
	var body []byte
	for i := 0; i < 40; i++ {
		key := fmt.Sprintf("big%02d", i)
		var err error
		code, body, err = held[0].do("PUT", "/kv/"+key, value, 30*time.Second)
		if err != nil {
			t.Fatalf("PUT %s: %v", key, err)
		}
		if code != http.StatusNoContent {
			break
		}
		acked = append(acked, key)
	}
	if code != http.StatusServiceUnavailable {
		t.Fatalf("no PUT failed for want of descriptors: last answer %d %s", code, body)
	}
	if strings.Contains(string(body), data) || strings.Contains(string(body), "open files") || !strings.Contains(string(body), `"request_id"`) {
		t.Fatalf("503 body shows internals or lacks the request ID: %s", body)
	}
	code, body, err := held[1].do("GET", "/readyz", nil, 10*time.Second)
	if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(string(body), "store cannot write: too many open files") {
		t.Fatalf("/readyz while out of descriptors: %d %s %v", code, body, err)
	}
	if strings.Contains(string(body), data) {
		t.Fatalf("/readyz shows the data path: %s", body)
	}

	// Release the descriptors: the store recovers with no write from us.
	for _, h := range held {
		h.c.Close()
	}
	held = nil
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body, err := httpDo(http.MethodGet, p.httpURL+"/readyz", nil)
		if err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz after the connections closed: %d %s %v", code, body, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, body, err := httpDo(http.MethodPut, p.httpURL+"/kv/after", []byte("v")); err != nil || code != http.StatusNoContent {
		t.Fatalf("PUT after recovery: %d %s %v", code, body, err)
	}
	for _, k := range append(acked, "after") {
		code, _, err := httpDo(http.MethodGet, p.httpURL+"/kv/"+k, nil)
		if err != nil || code != http.StatusOK {
			t.Fatalf("acknowledged %s: GET %d %v", k, code, err)
		}
	}
	log, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"write path failing", "write path recovered", "file descriptor limit is low"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// TestProcessMaxConnsHoldsIdleConnectionsOff runs the same node with the
// default connection cap (8 at a limit of 64): sixty idle keep-alive
// connections cannot take the store's descriptors, so writes that rotate
// the WAL go through and the node stays ready.
func TestProcessMaxConnsHoldsIdleConnectionsOff(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: builds the binary and runs a node")
	}
	p, _ := fdLimitNode(t, 64)
	addr := strings.TrimPrefix(p.httpURL, "http://")
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range 60 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
		if _, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: kvs\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	value := bytes.Repeat([]byte("v"), 512<<10)
	for i := range 20 {
		key := fmt.Sprintf("big%02d", i)
		if code, body, err := httpDo(http.MethodPut, p.httpURL+"/kv/"+key, value); err != nil || code != http.StatusNoContent {
			t.Fatalf("PUT %s with 60 idle connections: %d %s %v", key, code, body, err)
		}
	}
	if code, body, err := httpDo(http.MethodGet, p.httpURL+"/readyz", nil); err != nil || code != http.StatusOK {
		t.Fatalf("/readyz: %d %s %v", code, body, err)
	}
	code, metrics, err := httpDo(http.MethodGet, p.httpURL+"/metrics", nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	for _, want := range []string{"kvs_http_max_connections 8", "kvs_lsm_transient_errors_total 0", "kvs_lsm_write_stalled 0"} {
		if !strings.Contains(string(metrics), want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	if !strings.Contains(string(metrics), "kvs_http_connection_waits_total ") || strings.Contains(string(metrics), "kvs_http_connection_waits_total 0\n") {
		t.Errorf("no connection waited for a slot")
	}
	log, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "max_conns=8") {
		t.Errorf("log lacks the connection limit")
	}
}
