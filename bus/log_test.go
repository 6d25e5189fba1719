package bus

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a slog.Handler that keeps every record.
type recorder struct {
	mu      sync.Mutex
	level   slog.Level
	records []slog.Record
}

func (r *recorder) Enabled(_ context.Context, l slog.Level) bool { return l >= r.level }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.records = append(r.records, rec.Clone())
	r.mu.Unlock()
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// take returns and forgets the records so far.
func (r *recorder) take() []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.records
	r.records = nil
	return out
}

// has reports whether a record at level or above contains substr.
func (r *recorder) has(level slog.Level, substr string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.records {
		if rec.Level >= level && strings.Contains(rec.Message, substr) {
			return true
		}
	}
	return false
}

func TestSlogAdapterLevels(t *testing.T) {
	rec := &recorder{level: LevelTrace}
	a := newSlogAdapter(slog.New(rec))
	now := time.Unix(1000, 0)
	a.now = func() time.Time { return now }
	a.started = now.Add(-startupWindow) // the start window is tested below

	one := func(name string, log func(), wantLevel slog.Level) {
		t.Helper()
		log()
		got := rec.take()
		if len(got) != 1 {
			t.Fatalf("%s: %d records, want 1", name, len(got))
		}
		if got[0].Level != wantLevel {
			t.Errorf("%s: level %v, want %v (%q)", name, got[0].Level, wantLevel, got[0].Message)
		}
	}
	one("notice", func() { a.Noticef("Listening for route connections on %s", "0.0.0.0:6222") }, slog.LevelDebug)
	one("route closed notice", func() { a.Noticef("%s - rid:%d - Router connection closed: %s", "127.0.0.1:1", 5, "Client Closed") }, slog.LevelDebug)
	one("slow consumer notice", func() { a.Noticef("Slow Consumer Detected: MaxPending of %d Exceeded", 100) }, slog.LevelWarn)
	one("warning", func() { a.Warnf("Cluster name was dynamically generated") }, slog.LevelWarn)
	one("churn warning", func() { a.Warnf("Error reading from client: %s", "EOF") }, slog.LevelDebug)
	one("route dial error", func() {
		a.Errorf("Error trying to connect to route (attempt %v): %v", 1, "dial tcp 10.0.0.2:6222: connect: connection refused")
	}, slog.LevelWarn)
	one("debug", func() { a.Debugf("x %d", 1) }, slog.LevelDebug)
	one("trace", func() { a.Tracef("<<- [PING]") }, LevelTrace)
	one("plaintext passwords", func() { a.Warnf("Plaintext passwords detected, use nkeys or bcrypt") }, slog.LevelDebug)
	one("meta snapshot", func() { a.Warnf("Metalayer blocking snapshot took %.3fs (streams: %d)", 0.005, 1) }, slog.LevelDebug)
	one("stream remapping", func() {
		a.Warnf("JetStream cluster detected stream remapping for '%s > %s' from %q to %q", "KVS", "KV_ring", "S-R1F-a", "S-R3F-b")
	}, slog.LevelDebug)
	one("client auth", func() { a.Errorf("%s - cid:%d - authentication error", "127.0.0.1:5000", 7) }, slog.LevelWarn)
	one("route refused", func() { a.Errorf("%s - rid:%d - Route Error 'Authorization Violation'", "127.0.0.1:5000", 7) }, slog.LevelError)
	one("publish violation", func() { a.Errorf("%s - cid:%d - Publish Violation - Subject %q", "127.0.0.1:5000", 7, "kvs.x") }, slog.LevelWarn)
	one("subscription violation", func() {
		a.Errorf("%s - cid:%d - Subscription Violation - Subject %q, SID %s", "127.0.0.1:5000", 7, "kvs.x", "1")
	}, slog.LevelWarn)
	one("client TLS handshake", func() {
		a.Errorf("%s - cid:%d - TLS handshake error: %v", "127.0.0.1:5000", 7, "remote error: tls: bad certificate")
	}, slog.LevelWarn)
	one("route TLS handshake", func() {
		a.Errorf("%s - rid:%d - TLS route handshake error: %v", "127.0.0.1:5000", 7, "x509: certificate signed by unknown authority")
	}, slog.LevelError)

	// The same error about another connection within the window: debug.
	one("repeat", func() { a.Errorf("%s - rid:%d - Route Error 'Authorization Violation'", "127.0.0.1:5002", 8) }, slog.LevelDebug)
	// A different error is not a repeat.
	one("other error", func() { a.Errorf("Unknown account %q", "X") }, slog.LevelError)
	now = now.Add(repeatWindow)
	one("after window", func() { a.Errorf("%s - rid:%d - Route Error 'Authorization Violation'", "127.0.0.1:5000", 9) }, slog.LevelError)

	// Startup warnings: debug while the server starts, warn later.
	a.started = now
	one("no meta leader at start", func() { a.Warnf("%v", "JetStream has not established contact with a meta leader") }, slog.LevelDebug)
	one("no routes at start", func() { a.Warnf("Waiting for routing to be established...") }, slog.LevelDebug)
	// The first failed dial of each route while peers start: debug. A
	// dial still failing when nats-server reports it again: warn.
	one("first route dial at start", func() {
		a.Errorf("Error trying to connect to route (attempt %v): %v", 1, "dial tcp 127.0.0.1:6223: connect: connection refused")
	}, slog.LevelDebug)
	one("route dial reported again at start", func() {
		a.Errorf("Error trying to connect to route (attempt %v): %v", routeDialReports, "dial tcp: lookup node3: no such host")
	}, slog.LevelWarn)
	now = now.Add(startupWindow)
	one("no meta leader later", func() { a.Warnf("%v", "JetStream has not established contact with a meta leader") }, slog.LevelWarn)
	one("first route dial later", func() {
		a.Errorf("Error trying to connect to route (attempt %v): %v", 1, "dial tcp 127.0.0.1:6223: connect: connection refused")
	}, slog.LevelWarn)

	if a.fatalErr() != nil {
		t.Fatal("fatal error before Fatalf")
	}
	one("fatal", func() { a.Fatalf("Error listening on port: %s, %q", "0.0.0.0:1", "in use") }, slog.LevelError)
	if err := a.fatalErr(); err == nil || !strings.Contains(err.Error(), "Error listening on port") {
		t.Errorf("fatalErr() = %v", err)
	}
}

func TestSlogAdapterDisabledLevels(t *testing.T) {
	rec := &recorder{level: slog.LevelInfo}
	a := newSlogAdapter(slog.New(rec))
	a.Noticef("hello")
	a.Debugf("hello")
	a.Errorf("Error trying to connect to route (attempt %v): %v", 3, "refused")
	got := rec.take()
	if len(got) != 1 || got[0].Level != slog.LevelWarn {
		t.Fatalf("got %d records (%v), want the warning only", len(got), got)
	}
}

func TestRepeatKey(t *testing.T) {
	if got, want := repeatKey("a 12 b3 - rid:45"), "a # b# - rid:#"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// count returns how many records at level or above contain substr.
func (r *recorder) count(level slog.Level, substr string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.records {
		if rec.Level >= level && strings.Contains(rec.Message, substr) {
			n++
		}
	}
	return n
}

func TestDownPeerDoesNotFloodLogs(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for several reconnect attempts")
	}
	rec := &recorder{level: slog.LevelDebug}
	buses := startCluster(t, 2, func(c *Config) {
		if c.NodeID == "n1" {
			c.Logger = slog.New(rec)
		}
	})
	if err := buses[1].Close(); err != nil {
		t.Fatal(err)
	}
	// n1 redials n2 every second, on one connection per route kind (the
	// pooled one and the system account's); wait for the third attempt.
	waitFor(t, "three reconnect attempts", func() bool {
		return rec.count(slog.LevelDebug, "Error trying to connect to route (attempt 3)") > 0
	})
	attempts := rec.count(slog.LevelDebug, "Error trying to connect to route")
	loud := 0
	for _, r := range rec.take() {
		if r.Level >= slog.LevelWarn {
			loud++
			t.Logf("%v %s", r.Level, r.Message)
		}
		if r.Level >= slog.LevelError {
			t.Errorf("logged at error while a peer is down: %s", r.Message)
		}
	}
	// At most the first failed attempt of each connection is worth a
	// warning (within the start window, as here, not even that: see
	// firstRouteDial); the rest go to debug.
	if loud > 4 {
		t.Errorf("%d warnings for %d failed dials", loud, attempts)
	}
}

// TestFirstRouteDialQuietAtStart starts a node whose seed is not listening
// yet, as every node of a cluster started at once sees: its first failed
// dial is logged at debug, not as a warning.
func TestFirstRouteDialQuietAtStart(t *testing.T) {
	port, err := freePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{level: slog.LevelDebug}
	cfg := testConfig(t, "n1")
	cfg.Seeds = []string{fmt.Sprintf("127.0.0.1:%d", port)}
	cfg.Logger = slog.New(rec)
	start(t, cfg)
	waitFor(t, "a failed route dial", func() bool {
		return rec.count(slog.LevelDebug, "Error trying to connect to route (attempt 1)") > 0
	})
	for _, r := range rec.take() {
		if r.Level >= slog.LevelWarn && strings.Contains(r.Message, "Error trying to connect to route") {
			t.Errorf("first failed route dial at start logged at %v: %s", r.Level, r.Message)
		}
	}
}

func TestRouteDialReportsOncePerMinute(t *testing.T) {
	cfg := testConfig(t, "n1")
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	opts, err := serverOptions(cfg, 6222, "127.0.0.1:6222", false, &certificate{})
	if err != nil {
		t.Fatal(err)
	}
	// nats-server's default for a route never connected is once an hour.
	if opts.ConnectErrorReports != routeDialReports || opts.ReconnectErrorReports != routeDialReports {
		t.Errorf("ConnectErrorReports %d, ReconnectErrorReports %d, want %d for both",
			opts.ConnectErrorReports, opts.ReconnectErrorReports, routeDialReports)
	}
}
