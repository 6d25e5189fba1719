package bus

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go"
)

const testSecret = "s3cret/with:odd@chars"

func TestSecretRequiredOnClients(t *testing.T) {
	buses := startCluster(t, 2, func(c *Config) { c.Secret = testSecret })
	n1, n2 := buses[0], buses[1]
	echo(t, n2)
	waitReachable(t, n1, n2) // the nodes' own connections authenticate

	// No credentials, wrong password: refused.
	for _, opts := range [][]nats.Option{
		nil,
		{nats.UserInfo(AppUser, "wrong")},
		{nats.UserInfo(SystemUser, "wrong")},
	} {
		nc, err := nats.Connect(n1.ClientURL(), append(opts, nats.NoReconnect())...)
		if err == nil {
			nc.Close()
			t.Fatalf("client with options %v connected without the secret", opts)
		}
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("err = %v, want an authorization error", err)
		}
	}

	// kvs/secret: in the application account, reaches the nodes.
	nc, err := nats.Connect(n1.ClientURL(), nats.UserInfo(AppUser, testSecret))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	msg, err := nc.RequestWithContext(ctx, n1.Subjects().Node("n2", "echo"), []byte("x"))
	if err != nil || string(msg.Data) != "n2:x" {
		t.Fatalf("external kvs client: %v %v", msg, err)
	}

	// sys/secret: in the system account, where `nats server list` works.
	checkServerPing(t, n1.ClientURL(), nats.UserInfo(SystemUser, testSecret))
}

func TestNoSecretNeedsNoCredentials(t *testing.T) {
	buses := startCluster(t, 2, nil)
	echo(t, buses[1])
	waitReachable(t, buses[0], buses[1])
	nc, err := nats.Connect(buses[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := nc.RequestWithContext(ctx, buses[0].Subjects().Node("n2", "echo"), nil); err != nil {
		t.Fatalf("anonymous client is not in the application account: %v", err)
	}
	checkServerPing(t, buses[0].ClientURL(), nats.UserInfo(SystemUser, ""))
}

// checkServerPing connects with opts and asks the system account for the
// servers, as `nats server list` does.
func checkServerPing(t *testing.T, url string, opts ...nats.Option) {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("system user: %v", err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	msg, err := nc.RequestWithContext(ctx, "$SYS.REQ.SERVER.PING", nil)
	if err != nil {
		t.Fatalf("server ping in the system account: %v", err)
	}
	if len(msg.Data) == 0 {
		t.Fatal("empty server ping reply")
	}
}

func TestRouteWithoutSecretRefused(t *testing.T) {
	for _, tc := range []struct{ name, secret string }{
		{"no secret", ""},
		{"wrong secret", "other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{level: slog.LevelDebug}
			cfg := testConfig(t, "secure")
			cfg.Secret = testSecret
			cfg.Logger = slog.New(rec)
			secure := start(t, cfg)

			cfg = testConfig(t, "intruder")
			cfg.Secret = tc.secret
			cfg.Seeds = []string{secure.ClusterAddr()}
			intruder := start(t, cfg)

			// Wait until the secured server has refused the route, then
			// check that neither side counts it.
			waitFor(t, "the route is refused", func() bool {
				return rec.has(slog.LevelDebug, "uthentication")
			})
			if n := secure.NumRoutes(); n != 0 {
				t.Errorf("secured node has %d routes", n)
			}
			// The dialling side registers the route when it gets the
			// server's INFO, before the authorization error arrives, so
			// the intruder may count it for a moment.
			waitRoutes(t, intruder, 0)
			echo(t, secure)
			_, err := intruder.Request(context.Background(), secure.Subjects().Node("secure", "echo"), nil)
			if !errors.Is(err, nats.ErrNoResponders) {
				t.Errorf("intruder's request to the secured node: %v, want no responders", err)
			}

			// A node with the secret does join.
			cfg = testConfig(t, "friend")
			cfg.Secret = testSecret
			cfg.Seeds = []string{secure.ClusterAddr()}
			friend := start(t, cfg)
			waitRoutes(t, friend, 1)
			waitRoutes(t, secure, 1)
			if got := secure.RoutedPeers(); len(got) != 1 || got[0] != "friend" {
				t.Errorf("secured node routes to %v", got)
			}
		})
	}
}
