package bus

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
)

// The users of the embedded server, each with its own credential, so that
// what an operator hands to a tool is no more than the tool needs:
//
//	user     account  may                                        password
//	kvs      KVS      everything in the application account     the cluster secret
//	watch    KVS      subscribe to gossip and the change feed   Config.WatchPassword
//	sys      SYS      ask the servers for their monitoring data  Config.SystemPassword
//	kvs-sys  SYS      everything in the system account          the cluster secret
//	route    (routes) open a route                               the cluster secret
//
// kvs is the nodes' own user: their in-process connections use it, and so
// does anything that must act as a node (answer replication requests,
// publish heartbeats, use JetStream). watch publishes nothing, requests
// included, and may subscribe to nothing else: not to the node request
// subjects (whose requests carry every value written), not to JetStream's
// $JS and $KV subjects (the topology bucket), and not to _INBOX subjects
// (the replies to the nodes' requests). sys is for `nats server list`,
// `nats server report` and `nats server info`: it may ask every server for
// its monitoring data (statsz, varz, connz, jsz and the like) and read the
// replies, and nothing else; not the system account's JetStream API (which
// purges an account's streams, the topology bucket included, or removes
// peers), not kicking or lame-ducking connections, not reloading a server.
// kvs-sys is the nodes' own system-account user (JetStream peer removal,
// the servers' statistics at a first start): like kvs, it takes the
// cluster secret, whose holder may do everything anyway.
//
// With no secret nothing is authenticated: every user has an empty
// password, and a client that gives no user is watch, the least that
// `nats sub` on gossip and the feed needs; the nodes still connect as kvs.

// WatchUser is the user of the application account that may only
// subscribe to heartbeats (kvs.<cluster>.gossip) and the change feed
// (kvs.<cluster>.events.>): what `nats sub` needs to watch a cluster.
const WatchUser = "watch"

// derivedPasswordContext is what a user's default password is derived
// with; the user name follows it.
const derivedPasswordContext = "kvs nats user "

// DerivePassword returns the default password of user for a cluster
// secret: HMAC-SHA256 keyed with the secret over "kvs nats user <user>",
// in URL-safe base64 without padding (43 characters of letters, digits,
// '-' and '_'), so that it sits in a nats:// URL as it is. Knowing it does
// not reveal the secret, and every node derives the same one. It returns
// "" for the empty secret (no authentication).
func DerivePassword(secret, user string) string {
	if secret == "" {
		return ""
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(derivedPasswordContext + user))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// userPasswords checks WatchPassword and SystemPassword, filling in the
// derived ones where they are empty, and returns what is wrong with them.
func (c *Config) userPasswords() []error {
	var errs []error
	for _, u := range []struct {
		name string
		pw   *string
	}{
		{WatchUser, &c.WatchPassword},
		{SystemUser, &c.SystemPassword},
	} {
		var err error
		switch {
		case *u.pw == "":
			*u.pw = DerivePassword(c.Secret, u.name)
		case c.Secret == "":
			err = errors.New("set with no secret, where no connection is authenticated; set a secret too, or leave it out")
		case *u.pw == c.Secret:
			err = errors.New("it is the secret, which would give whoever holds it every right; choose another, or leave it out to derive one")
		default:
			err = ValidSecret(*u.pw)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s password: %w", u.name, err))
		}
	}
	if c.Secret != "" && c.WatchPassword == c.SystemPassword {
		errs = append(errs, errors.New("the watch and sys passwords are the same; each user needs its own"))
	}
	return errs
}

// users returns the users of the embedded server for a validated cfg, in
// the application account app and the system account sys.
func users(cfg Config, app, sys *server.Account) []*server.User {
	return []*server.User{
		{Username: AppUser, Password: cfg.Secret, Account: app},
		{Username: WatchUser, Password: cfg.WatchPassword, Account: app, Permissions: watchPermissions(Subjects{Cluster: cfg.Cluster})},
		{Username: SystemUser, Password: cfg.SystemPassword, Account: sys, Permissions: sysPermissions()},
		{Username: nodeSystemUser, Password: cfg.Secret, Account: sys},
	}
}

// monitoringEndpoints are what [SystemUser] may ask a server for: its
// monitoring data, read-only. PROFILEZ (pprof profiles) is left out.
var monitoringEndpoints = []string{
	"STATSZ", "VARZ", "SUBSZ", "CONNZ", "ROUTEZ", "GATEWAYZ", "LEAFZ",
	"ACCOUNTZ", "JSZ", "HEALTHZ", "EXPVARZ", "IPQUEUESZ", "RAFTZ", "IDZ",
}

// sysPermissions are the permissions of [SystemUser]: requests for the
// servers' and accounts' monitoring data, and their replies. An allow list
// refuses everything else.
func sysPermissions() *server.Permissions {
	pub := []string{"$SYS.REQ.SERVER.PING", "$SYS.REQ.USER.INFO", "$SYS.REQ.ACCOUNT.PING.STATZ", "$SYS.REQ.ACCOUNT.PING.CONNZ"}
	for _, e := range monitoringEndpoints {
		pub = append(pub, "$SYS.REQ.SERVER.PING."+e, "$SYS.REQ.SERVER.*."+e)
	}
	for _, e := range []string{"SUBSZ", "CONNZ", "LEAFZ", "JSZ", "INFO", "STATZ", "CONNS"} {
		pub = append(pub, "$SYS.REQ.ACCOUNT.*."+e)
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}
}

// watchPermissions are the permissions of [WatchUser]: subscribe to
// gossip and the change feed, publish nothing. An allow list for
// subscriptions refuses everything else, wildcards that reach beyond it
// (kvs.<cluster>.> or >) included. No response permission: watch answers
// no request, so it needs none, and it gives no way to publish.
func watchPermissions(s Subjects) *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{
			// An empty allow list allows nothing; the deny of everything
			// says so again should a later nats-server read an empty
			// list as "no list".
			Allow: []string{},
			Deny:  []string{">"},
		},
		Subscribe: &server.SubjectPermission{
			Allow: []string{s.Gossip(), s.Events(">")},
		},
	}
}
