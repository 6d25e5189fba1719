package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kvs-db/kvs/bus"
)

// TestProcessNATSUsers runs `kvs serve` with a cluster secret and a sys
// password file, and logs in as an operator would, with the URLs `kvs
// nats-credentials` prints: watch receives the node's heartbeats and
// change feed and is refused the node's get operation and its request
// subjects; sys, with the given password and not the derived one, pings
// the server.
func TestProcessNATSUsers(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: builds the binary and runs a node")
	}
	clearKVSEnv(t)
	dir := t.TempDir()
	sysFile := filepath.Join(dir, "sys-password")
	if err := os.WriteFile(sysFile, []byte("process-sys-password-0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, ports := startNode1(t, dir, "--sys-password-file", sysFile)
	waitReady(t, p, 60*time.Second)

	server := "127.0.0.1:" + strconv.Itoa(ports[1])
	credentials := func(args ...string) string {
		t.Helper()
		args = append([]string{"nats-credentials"}, args...)
		args = append(args, "--server", server, "--cluster-secret-file", procSecretFile(t, dir), "--sys-password-file", sysFile)
		out, errOut, code := runCLI(t, "", args...)
		if code != 0 {
			t.Fatalf("kvs %q: code %d stderr %q", args, code, errOut)
		}
		return strings.TrimSpace(out)
	}
	errs := make(chan error, 16)
	w, err := nats.Connect(credentials("watch", "--output", "url"), nats.NoReconnect(), nats.PermissionErrOnSubscribe(true),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatalf("watch with the URL of kvs nats-credentials: %v", err)
	}
	defer w.Close()
	gossip, err := w.SubscribeSync("kvs.kvs.gossip")
	if err != nil {
		t.Fatal(err)
	}
	events, err := w.SubscribeSync("kvs.kvs.events.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	msg, err := gossip.NextMsg(10 * time.Second)
	if err != nil || !strings.Contains(string(msg.Data), `"id":"node1"`) {
		t.Fatalf("watch on gossip: %v %v, want node1's heartbeat", msg, err)
	}
	if code, body, err := httpDo(http.MethodPut, p.httpURL+"/kv/watched", []byte("v")); err != nil || code != http.StatusNoContent {
		t.Fatalf("PUT: %d %q %v", code, body, err)
	}
	msg, err = events.NextMsg(10 * time.Second)
	if err != nil || !strings.Contains(string(msg.Data), `"key":"watched"`) {
		t.Fatalf("watch on the change feed: %v %v, want the put of watched", msg, err)
	}

	// The node's replica read: no answer, and its subjects cannot be
	// subscribed to.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if msg, err := w.RequestWithContext(ctx, "kvs.kvs.node.node1.get", []byte("watched")); err == nil {
		t.Fatalf("watch's request to node1's get answered: %q", msg.Data)
	}
	if _, err := w.SubscribeSync("kvs.kvs.node.>"); err != nil {
		t.Fatal(err)
	}
	waitViolation := func(want string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case err := <-errs:
				if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), want) {
					return
				}
			case <-timeout:
				t.Fatalf("no permission violation for %s", want)
			}
		}
	}
	waitViolation(`Publish to "kvs.kvs.node.node1.get"`)
	waitViolation(`Subscription to "kvs.kvs.node.>"`)

	// sys: the given password, not the derived one.
	sys, err := nats.Connect(credentials("sys", "--output", "url"), nats.NoReconnect())
	if err != nil {
		t.Fatalf("sys with the URL of kvs nats-credentials: %v", err)
	}
	defer sys.Close()
	if msg, err := sys.Request("$SYS.REQ.SERVER.PING", nil, 10*time.Second); err != nil || !strings.Contains(string(msg.Data), `"name":"node1"`) {
		t.Fatalf("server ping as sys: %v %v", msg, err)
	}
	if got := credentials("sys"); got != "process-sys-password-0123" {
		t.Errorf("nats-credentials sys = %q, want the given password", got)
	}
	derived := bus.DerivePassword(processSecret, bus.SystemUser)
	if nc, err := nats.Connect("nats://"+server, nats.UserInfo(bus.SystemUser, derived), nats.NoReconnect()); !errors.Is(err, nats.ErrAuthorization) {
		if nc != nil {
			nc.Close()
		}
		t.Errorf("sys with the derived password when one is given: %v, want an authorization error", err)
	}
}
