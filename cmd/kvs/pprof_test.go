package main

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func TestCheckPprofAddr(t *testing.T) {
	for _, ok := range []string{"", "127.0.0.1:6060", "[::1]:6060", "localhost:6060", "127.0.0.1:0"} {
		if err := checkPprofAddr(ok); err != nil {
			t.Errorf("checkPprofAddr(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{":6060", "0.0.0.0:6060", "[::]:6060", "10.0.0.1:6060", "node1:6060", "127.0.0.1", "127.0.0.1:"} {
		err := checkPprofAddr(bad)
		if err == nil || !strings.Contains(err.Error(), "--pprof") {
			t.Errorf("checkPprofAddr(%q) = %v, want an error naming --pprof", bad, err)
		}
	}
}

func TestServePprofFlag(t *testing.T) {
	clearKVSEnv(t)
	got := stubServe(t)
	if _, errOut, code := runCLI(t, "", "serve", "--pprof", "127.0.0.1:6060"); code != 0 || got.pprofAddr != "127.0.0.1:6060" {
		t.Fatalf("exit %d, stderr %q, pprof %q: want 127.0.0.1:6060 accepted", code, errOut, got.pprofAddr)
	}
	*got = serveOptions{}
	_, errOut, code := runCLI(t, "", "serve", "--pprof", "0.0.0.0:6060")
	if code == 0 || !strings.Contains(errOut, "loopback only") || got.id != "" {
		t.Fatalf("exit %d, stderr %q: want a usage error saying loopback only, and no node started", code, errOut)
	}
}

// TestPprofServesProfiles checks that the listener serves the profile index
// and a heap profile, and nothing else of the node.
func TestPprofServesProfiles(t *testing.T) {
	p, err := startPprof("127.0.0.1:0", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	base := "http://" + p.Addr()
	for path, want := range map[string]int{
		"/debug/pprof/":             http.StatusOK,
		"/debug/pprof/heap?debug=1": http.StatusOK,
		"/debug/pprof/cmdline":      http.StatusOK,
		"/kv/greeting":              http.StatusNotFound,
		"/metrics":                  http.StatusNotFound,
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
		if path == "/debug/pprof/heap?debug=1" && !strings.Contains(string(body), "heap profile") {
			t.Errorf("GET %s: body does not look like a heap profile: %.100q", path, body)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(base + "/debug/pprof/"); err == nil {
		t.Error("pprof still answers after Close")
	}
}

func TestDevPprofPorts(t *testing.T) {
	o := devOptions{nodes: 3, dataDir: "/d", baseHTTP: 8081, baseNATS: 4222, baseCluster: 6222, basePprof: 6061, cluster: "kvs", sync: "always", logLevel: "info"}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	if args := strings.Join(o.serveArgs(3), " "); !strings.Contains(args, "--pprof 127.0.0.1:6063") {
		t.Errorf("serve args %q lack --pprof 127.0.0.1:6063", args)
	}
	o.basePprof = 0
	if args := strings.Join(o.serveArgs(1), " "); strings.Contains(args, "--pprof") {
		t.Errorf("serve args %q have --pprof with --base-pprof 0", args)
	}
	for _, bad := range []int{-1, 8082, 65534} {
		o.basePprof = bad
		if err := o.validate(); err == nil {
			t.Errorf("validate accepted --base-pprof %d", bad)
		}
	}
}
