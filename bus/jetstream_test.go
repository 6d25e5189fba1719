package bus

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// withJetStream gives each node its own JetStream directory.
func withJetStream(t testing.TB) func(*Config) {
	return func(c *Config) { c.JetStreamDir = t.TempDir() }
}

// jsConfig returns a test config with JetStream.
func jsConfig(t testing.TB, id string) Config {
	c := testConfig(t, id)
	c.JetStreamDir = t.TempDir()
	return c
}

// tctx returns a context that ends after d or with the test.
func tctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestJetStreamOffByDefault(t *testing.T) {
	b := start(t, testConfig(t, "n1"))
	if b.srv.JetStreamEnabled() {
		t.Error("JetStream runs without JetStreamDir")
	}
	if _, err := b.KV("ring", 1); !errors.Is(err, ErrJetStreamDisabled) {
		t.Errorf("KV: %v, want ErrJetStreamDisabled", err)
	}
}

func TestJetStreamStartsClustered(t *testing.T) {
	// Alone, with no seeds: JetStream runs clustered (the node routes to
	// itself), so that others can join it later.
	rec := &recorder{level: slog.LevelDebug}
	cfg := jsConfig(t, "n1")
	cfg.Logger = slog.New(rec)
	b := start(t, cfg)
	if !b.srv.JetStreamEnabled() || !b.srv.JetStreamIsClustered() {
		t.Fatalf("JetStream enabled %v, clustered %v", b.srv.JetStreamEnabled(), b.srv.JetStreamIsClustered())
	}
	acc, err := b.srv.LookupAccount(AppAccount)
	if err != nil || !acc.JetStreamEnabled() {
		t.Fatalf("account %s: JetStream not enabled (%v)", AppAccount, err)
	}
	waitFor(t, "the route to itself is detected", func() bool { return rec.has(slog.LevelDebug, "Detected route to self") })
	if n := b.NumRoutes(); n != 0 {
		t.Errorf("%d routes: the route to itself was not dropped", n)
	}
	if got := b.srv.JetStreamConfig(); got == nil || !got.SyncAlways || got.MaxMemory != JetStreamMaxMemory || got.MaxStore != JetStreamMaxStore ||
		!strings.HasPrefix(got.StoreDir, b.cfg.JetStreamDir) {
		t.Errorf("JetStream config %+v", got)
	}
}

func TestStartFailsWhenJetStreamCannot(t *testing.T) {
	// A file where the directory should be.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, "n1")
	cfg.JetStreamDir = file
	t0 := time.Now()
	b, err := Start(cfg)
	if err == nil {
		b.Close()
		t.Fatal("Start succeeded with JetStreamDir naming a file")
	}
	if !strings.Contains(err.Error(), "JetStream") {
		t.Errorf("err = %v, want it to name JetStream", err)
	}
	if d := time.Since(t0); d > startTimeout/2 {
		t.Errorf("Start took %v to fail", d)
	}
	t.Logf("Start: %v", err)
}
