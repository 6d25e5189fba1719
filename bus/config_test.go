package bus

import (
	"strings"
	"testing"
)

func TestConfigDefaults(t *testing.T) {
	c := Config{NodeID: "n1"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Cluster != DefaultCluster || c.Host != DefaultHost || c.ClientPort != DefaultClientPort ||
		c.ClusterPort != DefaultClusterPort || c.PingInterval != DefaultPingInterval ||
		c.RequestTimeout != DefaultRequestTimeout || c.MaxPayload != DefaultMaxPayload ||
		c.HandlerConcurrency != DefaultHandlerConcurrency {
		t.Errorf("defaults not applied: %+v", c)
	}
}

func TestConfigInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no node ID", Config{}, "node ID"},
		{"dotted node ID", Config{NodeID: "a.b"}, "node ID"},
		{"bad cluster", Config{NodeID: "n", Cluster: "x y"}, "cluster"},
		{"client port", Config{NodeID: "n", ClientPort: 70000}, "client port"},
		{"cluster port", Config{NodeID: "n", ClusterPort: -2}, "cluster port"},
		{"same ports", Config{NodeID: "n", ClientPort: 5000, ClusterPort: 5000}, "both 5000"},
		{"seed without port", Config{NodeID: "n", Seeds: []string{"host"}}, "seed"},
		{"seed bad port", Config{NodeID: "n", Seeds: []string{"host:0"}}, "seed"},
		{"advertise", Config{NodeID: "n", Advertise: ":6222"}, "advertise"},
		{"payload", Config{NodeID: "n", MaxPayload: 128 << 20}, "max payload"},
		{"negative timeout", Config{NodeID: "n", RequestTimeout: -1}, "request timeout"},
		{"bcrypt secret", Config{NodeID: "n", Secret: "$2a$11$abcdefghijklmnopqrstuv"}, "bcrypt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestDefaultAdvertiseHost(t *testing.T) {
	if got := defaultAdvertiseHost("10.1.2.3"); got != "10.1.2.3" {
		t.Errorf("specific host: got %q", got)
	}
	for _, h := range []string{"", "0.0.0.0", "::"} {
		got := defaultAdvertiseHost(h)
		if got == "" || isUnspecifiedHost(got) {
			t.Errorf("defaultAdvertiseHost(%q) = %q, want a dialable address", h, got)
		}
	}
}

func TestValidSecret(t *testing.T) {
	for _, s := range []string{"$2a$10$N9qo8uLOickgx2ZMRZoMye", "$2b$04$x", "$2x$", "$2y$anything-else"} {
		if err := ValidSecret(s); err == nil || !strings.Contains(err.Error(), "bcrypt") {
			t.Errorf("ValidSecret(%q) = %v, want a bcrypt error", s, err)
		}
	}
	for _, s := range []string{"", "s3cret", "$2c$10$x", "$2a", "x$2a$10$x", "$1$md5-crypt-looking"} {
		if err := ValidSecret(s); err != nil {
			t.Errorf("ValidSecret(%q) = %v", s, err)
		}
	}
}
