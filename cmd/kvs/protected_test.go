package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestListenSecurityLog(t *testing.T) {
	const secret = "0123456789abcdef"
	tests := []struct {
		name string
		o    serveOptions
		want []string // substrings of the log, in order; nil: nothing logged
	}{
		{name: "secret", o: serveOptions{secret: secret, httpAddr: ":8080", natsHost: "0.0.0.0"}},
		{name: "protected", o: serveOptions{httpAddr: "127.0.0.1:8080", natsHost: "127.0.0.1",
			rebound: []string{"--http :8080 -> 127.0.0.1:8080", "--nats-host 0.0.0.0 -> 127.0.0.1"}},
			want: []string{"level=INFO", "loopback only (protected mode)", "http=127.0.0.1:8080", "nats_host=127.0.0.1", `rebound="[--http :8080 -> 127.0.0.1:8080 --nats-host 0.0.0.0 -> 127.0.0.1]"`}},
		{name: "insecure, everything exposed", o: serveOptions{insecure: true, httpAddr: ":8080", natsHost: "0.0.0.0", natsPort: 4222, clusterPort: 6222},
			want: []string{"level=WARN", "--insecure and no cluster secret", "HTTP API (with /internal/* and /admin/*) on :8080", "NATS clients on 0.0.0.0:4222", "NATS routes on 0.0.0.0:6222"}},
		{name: "insecure, HTTP exposed", o: serveOptions{insecure: true, httpAddr: "10.0.0.5:8080", natsHost: "127.0.0.1", natsPort: 4222, clusterPort: 6222},
			want: []string{"level=WARN", "exposed=\"[HTTP API (with /internal/* and /admin/*) on 10.0.0.5:8080]\""}},
		{name: "insecure, nothing exposed", o: serveOptions{insecure: true, httpAddr: "127.0.0.1:8080", natsHost: "::1"},
			want: []string{"level=INFO", "--insecure given, but every listener is on loopback"}},
		{name: "insecure with a secret", o: serveOptions{insecure: true, secret: secret, httpAddr: ":8080", natsHost: "0.0.0.0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			logListenSecurity(slog.New(slog.NewTextHandler(&buf, nil)), tt.o)
			got := buf.String()
			if tt.want == nil {
				if got != "" {
					t.Errorf("logged %q, want nothing", got)
				}
				return
			}
			if strings.Count(got, "\n") != 1 {
				t.Errorf("logged %q, want one line", got)
			}
			rest := got
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("log %q lacks %q (in order)", got, w)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}
