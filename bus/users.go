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
//	user   account  may                                        password
//	kvs    KVS      everything in the application account     the cluster secret
//	watch  KVS      subscribe to gossip and the change feed   Config.WatchPassword
//	sys    SYS      everything in the system account          Config.SystemPassword
//	route  (routes) open a route                               the cluster secret
//
// kvs is the nodes' own user: their in-process connections use it, and so
// does anything that must act as a node (answer replication requests,
// publish heartbeats, use JetStream). watch publishes nothing, requests
// included, and may subscribe to nothing else: not to the node request
// subjects (whose requests carry every value written), not to JetStream's
// $JS and $KV subjects (the topology bucket), and not to _INBOX subjects
// (the replies to the nodes' requests). sys is for `nats server list` and
// `nats server report`, and for the node's own JetStream peer removal.
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
		{Username: SystemUser, Password: cfg.SystemPassword, Account: sys},
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
