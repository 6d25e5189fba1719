package main

import (
	"strings"
	"testing"
	"time"

	"github.com/kvs-db/kvs/node"
)

// The limit flags reach node.Config: their defaults are the node's, and
// flags and environment variables override them.
func TestServeLimitFlags(t *testing.T) {
	got := stubServe(t)
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want limitOptions
	}{
		{name: "defaults", want: limitOptions{node.DefaultMaxHintBytesPerTarget, node.DefaultMaxHintBytes, node.DefaultHintWindow, node.DefaultMaxScanRequests}},
		{name: "flags", args: []string{"--max-hint-bytes-per-target", "1048576", "--max-hint-bytes", "-1", "--hint-window", "30m", "--max-scan-requests", "2"},
			want: limitOptions{1 << 20, -1, 30 * time.Minute, 2}},
		{name: "env", env: map[string]string{"KVS_MAX_HINT_BYTES": "4096", "KVS_HINT_WINDOW": "1h", "KVS_MAX_SCAN_REQUESTS": "-1"},
			want: limitOptions{node.DefaultMaxHintBytesPerTarget, 4096, time.Hour, -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearKVSEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			*got = serveOptions{}
			if _, stderr, code := runCLI(t, "", append([]string{"serve"}, tc.args...)...); code != 0 {
				t.Fatalf("exit code %d; stderr %q", code, stderr)
			}
			if got.limits != tc.want {
				t.Errorf("limits = %+v, want %+v", got.limits, tc.want)
			}
			cfg := got.limits.apply(node.Config{ID: "n1"})
			if cfg.ID != "n1" || cfg.MaxHintBytesPerTarget != tc.want.maxHintBytesPerTarget || cfg.MaxHintBytes != tc.want.maxHintBytes ||
				cfg.HintWindow != tc.want.hintWindow || cfg.MaxScanRequests != tc.want.maxScanRequests {
				t.Errorf("applied config = %+v", cfg)
			}
		})
	}
}

func TestServeReplicaBatchFlag(t *testing.T) {
	clearKVSEnv(t)
	got := stubServe(t)
	for arg, want := range map[string]int{"": node.DefaultBatchInFlight, "-1": -1, "4": 4} {
		*got = serveOptions{}
		args := []string{"serve"}
		if arg != "" {
			args = append(args, "--replica-batch-in-flight", arg)
		}
		if _, errOut, code := runCLI(t, "", args...); code != 0 || got.batchInFlight != want {
			t.Errorf("%q: exit %d, stderr %q, batch in flight %d; want %d", arg, code, errOut, got.batchInFlight, want)
		}
	}
	for _, bad := range []string{"0", "-2"} {
		_, errOut, code := runCLI(t, "", "serve", "--replica-batch-in-flight", bad)
		if code == 0 || !strings.Contains(errOut, "--replica-batch-in-flight") {
			t.Errorf("%s: exit %d, stderr %q; want a usage error naming the flag", bad, code, errOut)
		}
	}
}
