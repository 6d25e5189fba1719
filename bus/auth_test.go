package bus

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

const testSecret = "s3cret/with:odd@chars"

func TestSecretRequiredOnClients(t *testing.T) {
	buses := startCluster(t, 2, func(c *Config) { c.Secret = testSecret })
	n1, n2 := buses[0], buses[1]
	echo(t, n2)
	waitReachable(t, n1, n2) // the nodes' own connections authenticate
	watchPW, sysPW := DerivePassword(testSecret, WatchUser), DerivePassword(testSecret, SystemUser)

	// No credentials, a wrong password, another user's password, a user
	// that does not exist: refused. The secret opens kvs only.
	for _, opts := range [][]nats.Option{
		nil,
		{nats.UserInfo(AppUser, "wrong")},
		{nats.UserInfo(WatchUser, "wrong")},
		{nats.UserInfo(SystemUser, "wrong")},
		{nats.UserInfo(AppUser, "")},
		{nats.UserInfo(WatchUser, "")},
		{nats.UserInfo(SystemUser, "")},
		{nats.UserInfo(WatchUser, testSecret)},
		{nats.UserInfo(SystemUser, testSecret)},
		{nats.UserInfo(AppUser, watchPW)},
		{nats.UserInfo(AppUser, sysPW)},
		{nats.UserInfo(SystemUser, watchPW)},
		{nats.UserInfo(WatchUser, sysPW)},
		{nats.UserInfo(routeUser, testSecret)},
		{nats.Token(testSecret)},
	} {
		nc, err := nats.Connect(n1.ClientURL(), append(opts, nats.NoReconnect())...)
		if err == nil {
			nc.Close()
			t.Fatalf("client with options %v connected", opts)
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

	// watch and sys with their derived passwords: watch connects (what it
	// may do: users_test.go), sys in the system account, where `nats
	// server list` works.
	connectAs(t, n1.ClientURL(), WatchUser, watchPW)
	checkServerPing(t, n1.ClientURL(), nats.UserInfo(SystemUser, sysPW))
}

func TestUserPasswordsGiven(t *testing.T) {
	const watchPW, sysPW = "watch-password-given", "sys-password-given"
	buses := startCluster(t, 2, func(c *Config) {
		c.Secret, c.WatchPassword, c.SystemPassword = testSecret, watchPW, sysPW
	})
	n1, n2 := buses[0], buses[1]
	echo(t, n2)
	waitReachable(t, n1, n2) // kvs keeps the secret
	for _, opts := range []nats.Option{
		nats.UserInfo(WatchUser, DerivePassword(testSecret, WatchUser)),
		nats.UserInfo(SystemUser, DerivePassword(testSecret, SystemUser)),
	} {
		if nc, err := nats.Connect(n1.ClientURL(), opts, nats.NoReconnect()); !errors.Is(err, nats.ErrAuthorization) {
			if nc != nil {
				nc.Close()
			}
			t.Errorf("a derived password where one is given: %v, want an authorization error", err)
		}
	}
	connectAs(t, n1.ClientURL(), WatchUser, watchPW)
	checkServerPing(t, n1.ClientURL(), nats.UserInfo(SystemUser, sysPW))
	// The node's own system connection uses the given password.
	if _, err := n1.sysConn(); err != nil {
		t.Errorf("the node's system connection: %v", err)
	}
}

func TestSysSeesNothingOfTheApplicationAccount(t *testing.T) {
	buses := startCluster(t, 2, func(c *Config) { c.Secret = testSecret })
	n1 := buses[0]
	s := n1.Subjects()
	// kvs-sys, which has every right in the system account.
	sys := connectAs(t, n1.ClientURL(), nodeSystemUser, testSecret)
	sub, err := sys.nc.SubscribeSync("kvs.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// n1's own publish, processed before its flush returns, and n1's
	// echo request: neither reaches the system account.
	if err := n1.Publish(s.Gossip(), []byte("heartbeat")); err != nil {
		t.Fatal(err)
	}
	if err := n1.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	if err := sys.nc.Publish(s.Gossip(), []byte("marker")); err != nil {
		t.Fatal(err)
	}
	nextIsMarker(t, sub, "marker")
	// Nor does a request from sys reach the nodes' subjects: no answer.
	echo(t, n1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if msg, err := sys.nc.RequestWithContext(ctx, s.Node("n1", "echo"), nil); err == nil {
		t.Errorf("sys request to n1's echo answered: %q", msg.Data)
	}
}

func TestNoSecretAnonymousIsWatch(t *testing.T) {
	buses := startCluster(t, 2, nil)
	n1, n2 := buses[0], buses[1]
	echo(t, n2)
	// The nodes' own connections are kvs, with an empty password.
	waitReachable(t, n1, n2)
	s := n1.Subjects()

	anon := connectAs(t, n1.ClientURL(), "", "")
	gossip, err := anon.nc.SubscribeSync(s.Gossip())
	if err != nil {
		t.Fatal(err)
	}
	warmUp(t, n2.Conn(), gossip, s.Gossip())
	for _, subj := range []string{s.Node("n2", "echo"), s.Gossip()} {
		if err := anon.nc.Publish(subj, nil); err != nil {
			t.Fatal(err)
		}
		anon.waitViolation(t, "Publish to", subj)
	}
	if _, err := anon.nc.SubscribeSync(s.Node("n2", ">")); err != nil {
		t.Fatal(err)
	}
	anon.waitViolation(t, "Subscription to", s.Node("n2", ">"))

	// Every user takes the empty password: kvs may act as a node (no
	// secret means no authentication), sys pings the servers.
	kvs := connectAs(t, n1.ClientURL(), AppUser, "")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if msg, err := kvs.nc.RequestWithContext(ctx, s.Node("n2", "echo"), []byte("x")); err != nil || string(msg.Data) != "n2:x" {
		t.Fatalf("kvs with no password: %v %v", msg, err)
	}
	connectAs(t, n1.ClientURL(), WatchUser, "")
	checkServerPing(t, n1.ClientURL(), nats.UserInfo(SystemUser, ""))
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

func TestRoutePortRefusesClientCredentials(t *testing.T) {
	b := start(t, func() Config { c := testConfig(t, "secure"); c.Secret = testSecret; return c }())
	for _, cred := range []struct{ user, pass string }{
		{"", ""},
		{routeUser, ""},
		{routeUser, "wrong"},
		{AppUser, testSecret},
		{WatchUser, DerivePassword(testSecret, WatchUser)},
		{SystemUser, DerivePassword(testSecret, SystemUser)},
		{routeUser, DerivePassword(testSecret, WatchUser)},
	} {
		t.Run(cred.user+"/"+cred.pass, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", b.ClusterAddr(), waitTimeout)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(waitTimeout))
			r := bufio.NewReader(conn)
			if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "INFO ") {
				t.Fatalf("route port greeting: %q %v", line, err)
			}
			connect, _ := json.Marshal(map[string]any{
				"verbose": false, "pedantic": false, "tls_required": false,
				"user": cred.user, "pass": cred.pass, "name": "intruder", "cluster": "test",
			})
			if _, err := fmt.Fprintf(conn, "CONNECT %s\r\nPING\r\n", connect); err != nil {
				t.Fatal(err)
			}
			// The server answers with the violation and closes; a PONG or
			// an INFO would mean the route was taken.
			line, err := r.ReadString('\n')
			if err != nil || !strings.Contains(line, "-ERR 'Authorization Violation'") {
				t.Fatalf("route CONNECT as %q: %q %v, want -ERR 'Authorization Violation'", cred.user, line, err)
			}
			if rest, err := r.ReadString('\n'); err == nil {
				t.Fatalf("after the violation the server sent %q, want the connection closed", rest)
			}
			if n := b.NumRoutes(); n != 0 {
				t.Errorf("%d routes after the refusal", n)
			}
		})
	}
}

// TestSysMayOnlyMonitor: the sys user gets the servers' monitoring data
// (what `nats server list` and `nats server report` ask for), and nothing
// else of the system account: purging the application account's
// JetStream (the topology bucket), removing a JetStream peer, kicking a
// connection, reloading a server and subscribing beyond its replies are
// refused, and the bucket and the node's connection are unharmed.
func TestSysMayOnlyMonitor(t *testing.T) {
	buses := startCluster(t, 3, func(c *Config) {
		c.Secret = testSecret
		c.JetStreamDir = t.TempDir()
	})
	n1 := buses[0]
	kv := mustKV(t, n1, "topology", 3)
	ctx := tctx(t, 2*waitTimeout)
	if _, err := kv.Put(ctx, "ring", []byte("epoch 1")); err != nil {
		t.Fatal(err)
	}
	sys := connectAs(t, n1.ClientURL(), SystemUser, DerivePassword(testSecret, SystemUser))

	// A ping is answered by every server (the first reply is read); a
	// direct request by the one named.
	for subj, want := range map[string]string{
		"$SYS.REQ.SERVER.PING.STATSZ":                   `"server":{`,
		"$SYS.REQ.SERVER.PING.JSZ":                      `"server":{`,
		"$SYS.REQ.SERVER." + n1.Server().ID() + ".VARZ": n1.Server().ID(),
	} {
		msg, err := sys.nc.RequestWithContext(ctx, subj, nil)
		if err != nil || !strings.Contains(string(msg.Data), want) {
			t.Errorf("sys asking %s: %v, want a reply with %s", subj, err, want)
		}
	}

	cid, err := n1.Conn().GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{
		"$JS.API.ACCOUNT.PURGE." + AppAccount,
		"$JS.API.SERVER.REMOVE",
		"$SYS.REQ.SERVER." + n1.Server().ID() + ".KICK",
		"$SYS.REQ.SERVER." + n1.Server().ID() + ".LDM",
		"$SYS.REQ.SERVER." + n1.Server().ID() + ".RELOAD",
		"$SYS.REQ.SERVER." + n1.Server().ID() + ".PROFILEZ",
	} {
		body := []byte(fmt.Sprintf(`{"cid":%d,"peer":"n1"}`, cid))
		if err := sys.nc.Publish(subj, body); err != nil {
			t.Fatal(err)
		}
		sys.waitViolation(t, "Publish to", subj)
	}
	if _, err := sys.nc.SubscribeSync("$SYS.>"); err == nil || !errors.Is(err, nats.ErrPermissionViolation) {
		if err == nil {
			sys.waitViolation(t, "Subscription to", "$SYS.>")
		}
	}

	if v, _, err := kv.Get(ctx, "ring"); err != nil || string(v) != "epoch 1" {
		t.Errorf("the bucket after sys's attempts: %q %v, want epoch 1", v, err)
	}
	echo(t, n1)
	if _, err := n1.Request(ctx, n1.Subjects().Node("n1", "echo"), []byte("x")); err != nil {
		t.Errorf("the node's own connection after sys's attempts: %v", err)
	}
}
