package bus

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func TestDerivePassword(t *testing.T) {
	// What an operator computes without kvs:
	//   printf 'kvs nats user watch' | openssl dgst -sha256 -hmac 'change-me-kvs-dev-secret' -binary | basenc --base64url | tr -d '=\n'
	for user, want := range map[string]string{
		WatchUser:  "R6663VVaEz4zJA16vIcUr00uFWqh-manTMnRruRcIuk",
		SystemUser: "UW3lC6CXdpAz5QWucIcEMJjx1ZxBD0U4RuXLORlU12Q",
	} {
		if got := DerivePassword("change-me-kvs-dev-secret", user); got != want {
			t.Errorf("DerivePassword(dev secret, %s) = %q, want %q", user, got, want)
		}
	}
	urlSafe := regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
	for _, secret := range []string{testSecret, "another secret, as long"} {
		w, s := DerivePassword(secret, WatchUser), DerivePassword(secret, SystemUser)
		if !urlSafe.MatchString(w) || !urlSafe.MatchString(s) {
			t.Errorf("derived passwords %q, %q: want 43 URL-safe base64 characters", w, s)
		}
		if w == s || w == secret || strings.Contains(w, secret) {
			t.Errorf("secret %q: watch %q, sys %q: want two passwords of their own", secret, w, s)
		}
	}
	if DerivePassword(testSecret, WatchUser) == DerivePassword("another secret, as long", WatchUser) {
		t.Error("two secrets derive the same watch password")
	}
	if got := DerivePassword("", WatchUser); got != "" {
		t.Errorf("DerivePassword with no secret = %q, want empty (no authentication)", got)
	}
}

func TestConfigUserPasswords(t *testing.T) {
	c := Config{NodeID: "n", Secret: testSecret}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.WatchPassword != DerivePassword(testSecret, WatchUser) || c.SystemPassword != DerivePassword(testSecret, SystemUser) {
		t.Errorf("derived passwords not filled in: watch %q sys %q", c.WatchPassword, c.SystemPassword)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate of a validated config: %v", err)
	}
	c = Config{NodeID: "n", Secret: testSecret, WatchPassword: "watch-password-0123", SystemPassword: "sys-password-01234"}
	if err := c.Validate(); err != nil || c.WatchPassword != "watch-password-0123" || c.SystemPassword != "sys-password-01234" {
		t.Errorf("given passwords: %v, watch %q sys %q", err, c.WatchPassword, c.SystemPassword)
	}
	c = Config{NodeID: "n"}
	if err := c.Validate(); err != nil || c.WatchPassword != "" || c.SystemPassword != "" {
		t.Errorf("no secret: %v, watch %q sys %q, want empty passwords", err, c.WatchPassword, c.SystemPassword)
	}

	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"watch without secret", Config{NodeID: "n", WatchPassword: "watch-password-0123"}, "watch password: set with no secret"},
		{"sys without secret", Config{NodeID: "n", SystemPassword: "sys-password-01234"}, "sys password: set with no secret"},
		{"watch is the secret", Config{NodeID: "n", Secret: testSecret, WatchPassword: testSecret}, "watch password: it is the secret"},
		{"sys is the secret", Config{NodeID: "n", Secret: testSecret, SystemPassword: testSecret}, "sys password: it is the secret"},
		{"watch bcrypt", Config{NodeID: "n", Secret: testSecret, WatchPassword: "$2a$10$abcdefghijklmnopqrstuv"}, "watch password: it begins with \"$2a$\""},
		{"sys bcrypt", Config{NodeID: "n", Secret: testSecret, SystemPassword: "$2y$10$abcdefghijklmnopqrstuv"}, "sys password: it begins with \"$2y$\""},
		{"same", Config{NodeID: "n", Secret: testSecret, WatchPassword: "one-password-01234", SystemPassword: "one-password-01234"}, "are the same"},
		{"sys is the derived watch", Config{NodeID: "n", Secret: testSecret, SystemPassword: DerivePassword(testSecret, WatchUser)}, "are the same"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// client is an external connection to a test server that collects the
// asynchronous errors the server sends it (permission violations).
type client struct {
	nc   *nats.Conn
	errs chan error
}

// connectAs connects to url as user with password, and closes the
// connection when the test ends.
func connectAs(t *testing.T, url, user, password string) *client {
	t.Helper()
	c := &client{errs: make(chan error, 100)}
	nc, err := nats.Connect(url, nats.UserInfo(user, password), nats.NoReconnect(),
		nats.PermissionErrOnSubscribe(true),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case c.errs <- err:
			default:
			}
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	return c
}

// waitViolation waits for the server's permission violation for what
// ("Publish to" or "Subscription to") on subject. Violations arrive in the
// order of the operations that caused them.
func (c *client) waitViolation(t *testing.T, what, subject string) {
	t.Helper()
	want := fmt.Sprintf("%s %q", what, subject)
	timeout := time.After(waitTimeout)
	for {
		select {
		case err := <-c.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), want) {
				return
			}
			t.Logf("other error while waiting for a violation on %s: %v", subject, err)
		case <-timeout:
			t.Fatalf("no permission violation for %s", want)
		}
	}
}

// internalSubjects are subjects only the nodes may publish on: every
// operation a node serves (put, get and hint of replication; roots,
// leaves and keys of anti-entropy; stream of topology changes; the
// permission is on the whole node.> prefix, so new operations are
// covered), heartbeats, the change feed, and JetStream's API and KV
// subjects (the topology bucket).
func internalSubjects(s Subjects, node string) []string {
	var subjects []string
	for _, op := range []string{"put", "get", "hint", "roots", "leaves", "keys", "stream", "echo"} {
		subjects = append(subjects, s.Node(node, op))
	}
	return append(subjects,
		s.Gossip(), s.Events("put"), s.Events("delete"),
		"$JS.API.INFO", "$JS.API.STREAM.LIST", "$JS.API.STREAM.INFO.KV_topology", "$JS.API.DIRECT.GET.KV_topology",
		"$KV.topology.ring", "_INBOX.anything")
}

// nextIsMarker checks that the next message sub receives is marker, the
// last thing published: nothing published before it reached sub.
func nextIsMarker(t *testing.T, sub *nats.Subscription, marker string) {
	t.Helper()
	msg, err := sub.NextMsg(waitTimeout)
	if err != nil {
		t.Fatalf("%s: waiting for the marker: %v", sub.Subject, err)
	}
	if string(msg.Data) != marker {
		t.Fatalf("%s received %q on %s before the marker", sub.Subject, msg.Data, msg.Subject)
	}
}

// warmUp publishes on subject through pub until sub receives it, so that
// sub's interest has reached pub's server. Warm-ups may still be on their
// way: see skipUntil.
func warmUp(t *testing.T, pub *nats.Conn, sub *nats.Subscription, subject string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		if err := pub.Publish(subject, []byte("warm-up")); err != nil {
			t.Fatal(err)
		}
		if _, err := sub.NextMsg(50 * time.Millisecond); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("%s never received a message on %s: %v", sub.Subject, subject, err)
		}
	}
}

// skipUntil reads sub until a message with data arrives: what its
// publisher published before it is then read.
func skipUntil(t *testing.T, sub *nats.Subscription, data string) {
	t.Helper()
	for {
		msg, err := sub.NextMsg(waitTimeout)
		if err != nil {
			t.Fatalf("%s: waiting for %q: %v", sub.Subject, data, err)
		}
		if string(msg.Data) == data {
			return
		}
	}
}

// securedPair starts two routed nodes with testSecret, n2 answering on
// its echo operation as a node answers replica requests.
func securedPair(t *testing.T) (n1, n2 *Bus) {
	t.Helper()
	buses := startCluster(t, 2, func(c *Config) { c.Secret = testSecret })
	n1, n2 = buses[0], buses[1]
	echo(t, n2)
	waitReachable(t, n1, n2)
	return n1, n2
}

func TestWatchReceivesGossipAndEvents(t *testing.T) {
	n1, n2 := securedPair(t)
	s := n1.Subjects()
	w := connectAs(t, n1.ClientURL(), WatchUser, DerivePassword(testSecret, WatchUser))
	gossip, err := w.nc.SubscribeSync(s.Gossip())
	if err != nil {
		t.Fatal(err)
	}
	events, err := w.nc.SubscribeSync(s.Events(">"))
	if err != nil {
		t.Fatal(err)
	}
	// What n2 publishes, as a node does, reaches watch on n1.
	for sub, subj := range map[*nats.Subscription]string{gossip: s.Gossip(), events: s.Events("put")} {
		warmUp(t, n2.Conn(), sub, subj)
		if err := n2.Publish(subj, []byte("warm-up done")); err != nil {
			t.Fatal(err)
		}
		skipUntil(t, sub, "warm-up done")
	}
	for sub, m := range map[*nats.Subscription]struct{ subject, data string }{
		gossip: {s.Gossip(), `{"id":"n2"}`},
		events: {s.Events("delete"), `{"op":"delete","key":"k"}`},
	} {
		if err := n2.Publish(m.subject, []byte(m.data)); err != nil {
			t.Fatal(err)
		}
		msg, err := sub.NextMsg(waitTimeout)
		if err != nil || msg.Subject != m.subject || string(msg.Data) != m.data {
			t.Fatalf("watch on %s: %v %v, want %q on %s", sub.Subject, msg, err, m.data, m.subject)
		}
	}
	select {
	case err := <-w.errs:
		t.Errorf("watch got an error: %v", err)
	default:
	}
}

func TestWatchRefusedPublishOnInternalSubjects(t *testing.T) {
	n1, n2 := securedPair(t)
	s := n1.Subjects()
	// Observers: the nodes' own connections subscribed to heartbeats, as
	// membership is, and everything published in the application account
	// (">" matches $JS and $KV subjects too), on n1, where watch is, and
	// on n2, past the route. A node's connection on n1 publishes the
	// warm-ups and the marker.
	pub := connectAs(t, n1.ClientURL(), AppUser, testSecret).nc
	var observers []*nats.Subscription
	for _, b := range []*Bus{n1, n2} {
		sub, err := b.Conn().SubscribeSync(s.Gossip())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sub.Unsubscribe() })
		warmUp(t, pub, sub, s.Gossip())
		observers = append(observers, sub)
	}
	for _, b := range []*Bus{n1, n2} {
		sub, err := connectAs(t, b.ClientURL(), AppUser, testSecret).nc.SubscribeSync(">")
		if err != nil {
			t.Fatal(err)
		}
		warmUp(t, pub, sub, "kvs.test.warm")
		observers = append(observers, sub)
	}
	if err := pub.Publish(s.Gossip(), []byte("warm-up done")); err != nil {
		t.Fatal(err)
	}
	for _, sub := range observers {
		skipUntil(t, sub, "warm-up done")
	}

	w := connectAs(t, n1.ClientURL(), WatchUser, DerivePassword(testSecret, WatchUser))
	forged := []byte(`{"id":"n9","cluster":"test","ready":true,"epoch":99}`)
	for _, subj := range internalSubjects(s, "n2") {
		if err := w.nc.Publish(subj, forged); err != nil {
			t.Fatal(err)
		}
		w.waitViolation(t, "Publish to", subj)
	}
	// A request publishes too: refused, and no reply comes.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if msg, err := w.nc.RequestWithContext(ctx, s.Node("n2", "echo"), forged); err == nil {
		t.Fatalf("watch's request to n2 answered: %q", msg.Data)
	}

	// The server refused each publish before it answered the violations;
	// had one been delivered, it would be before the marker.
	if err := pub.Publish(s.Gossip(), []byte("marker")); err != nil {
		t.Fatal(err)
	}
	for _, sub := range observers {
		nextIsMarker(t, sub, "marker")
	}
}

func TestWatchRefusedSubscribeBeyondGossipAndEvents(t *testing.T) {
	n1, _ := securedPair(t)
	s := n1.Subjects()
	w := connectAs(t, n1.ClientURL(), WatchUser, DerivePassword(testSecret, WatchUser))
	var subs []*nats.Subscription
	for _, subj := range []string{
		s.Node("n2", "get"), s.Node("n2", "put"), s.Node("n2", "*"), "kvs.test.node.>",
		"kvs.test.>", "kvs.>", ">", "kvs.test.*",
		"$JS.>", "$JS.API.>", "$JS.EVENT.>", "$KV.>", "$KV.topology.>",
		"_INBOX.>", "$SYS.>",
	} {
		sub, err := w.nc.SubscribeSync(subj)
		if err != nil {
			t.Fatal(err)
		}
		w.waitViolation(t, "Subscription to", subj)
		subs = append(subs, sub)
	}
	// A queue subscription on a node's own subject, which would take a
	// share of its requests, is refused too.
	if _, err := w.nc.QueueSubscribeSync(s.Node("n2", "get"), "replicas"); err != nil {
		t.Fatal(err)
	}
	w.waitViolation(t, "Subscription to", s.Node("n2", "get"))

	// A replica request with a value in it goes to n2 and to nothing of
	// watch's: its subscriptions do not exist on the server.
	kvs := connectAs(t, n1.ClientURL(), AppUser, testSecret)
	msg, err := kvs.nc.Request(s.Node("n2", "echo"), []byte("value"), waitTimeout)
	if err != nil || string(msg.Data) != "n2:value" {
		t.Fatalf("kvs request to n2: %v %v", msg, err)
	}
	for _, sub := range subs {
		if msg, err := sub.NextMsg(0); !errors.Is(err, nats.ErrPermissionViolation) {
			t.Errorf("watch's refused subscription to %s: %v %v, want a permission violation", sub.Subject, msg, err)
		}
	}
}
