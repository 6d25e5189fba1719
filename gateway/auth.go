package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
)

// Who may call what. Every credential is a bearer token
// ("Authorization: Bearer TOKEN"), and the gateway keeps only its SHA-256
// hash:
//
//	route                       needs
//	GET, HEAD /kv/{key}         nothing; with client tokens, a read-only or read-write token, or the secret
//	PUT, DELETE /kv/{key}       nothing; with client tokens, a read-write token or the secret
//	/cluster, /ring, /metrics   nothing; with ProtectClusterInfo, any client token or the secret
//	/healthz, /readyz           nothing, ever (container health checks)
//	/internal/kv, /admin/*      the cluster secret (nothing when there is none); never a client token
//
// A missing or unknown token gets 401 with WWW-Authenticate; a read-only
// token on a write gets 403.
//
// A presented token is hashed and its hash compared with every configured
// hash by subtle.ConstantTimeCompare, with no early return on a match or a
// mismatch: the time taken depends on how many tokens are configured, not
// on the length of the guess, on how much of a real token it shares, or on
// which token matched.

// grant is what a token allows; a token may hold several.
type grant uint8

const (
	grantRead   grant = 1 << iota // GET and HEAD on /kv/*; /cluster, /ring, /metrics when protected
	grantWrite                    // PUT and DELETE on /kv/*
	grantSecret                   // /internal/* and /admin/*
)

// Grants of each kind of token. The cluster secret does all a read-write
// token does: operators hold it.
const (
	grantsReadOnly  = grantRead
	grantsReadWrite = grantRead | grantWrite
	grantsSecret    = grantRead | grantWrite | grantSecret
)

// credential is one known token, by its hash.
type credential struct {
	hash  [sha256.Size]byte
	grant grant
}

// credentials are the tokens a gateway knows.
type credentials struct {
	list []credential
	// compare is subtle.ConstantTimeCompare; a test counts its calls.
	compare func(x, y []byte) int
}

func (c *credentials) add(token string, g grant) {
	c.list = append(c.list, credential{hash: sha256.Sum256([]byte(token)), grant: g})
}

// grantOf returns the grants of token: the union of those of every
// configured token it equals, 0 when it equals none. It compares with
// every one of them, whatever the outcome.
func (c *credentials) grantOf(token string) grant {
	h := sha256.Sum256([]byte(token))
	var g grant
	for i := range c.list {
		if c.compare(h[:], c.list[i].hash[:]) == 1 {
			g |= c.list[i].grant
		}
	}
	return g
}

// newCredentials checks the tokens of cfg and returns them hashed. Client
// tokens and ProtectClusterInfo need a cluster secret: without one,
// /internal/kv, which writes any record, is open, and a token would guard
// nothing.
func newCredentials(cfg *Config) (*credentials, error) {
	c := &credentials{compare: subtle.ConstantTimeCompare}
	clientTokens := len(cfg.ReadWriteTokens)+len(cfg.ReadOnlyTokens) > 0
	if (clientTokens || cfg.ProtectClusterInfo) && cfg.Secret == "" {
		return nil, errors.New("gateway: client tokens and ProtectClusterInfo need a cluster secret (Config.Secret): without one /internal/kv is open to all")
	}
	seen := map[string]bool{}
	for _, list := range []struct {
		tokens []string
		grant  grant
	}{{cfg.ReadWriteTokens, grantsReadWrite}, {cfg.ReadOnlyTokens, grantsReadOnly}} {
		for _, t := range list.tokens {
			switch {
			case t == "":
				return nil, errors.New("gateway: a client token is empty")
			case t == cfg.Secret:
				return nil, errors.New("gateway: a client token is the cluster secret, which would open /internal/* and /admin/* to its holders")
			case seen[t]:
				return nil, errors.New("gateway: a client token is given twice (as read-only and read-write, or twice in one list)")
			}
			seen[t] = true
			c.add(t, list.grant)
		}
	}
	if cfg.Secret != "" {
		c.add(cfg.Secret, grantsSecret)
	}
	return c, nil
}

// ErrNoClientTokens is SetClientTokens's error on a gateway that was built
// without client tokens: /kv/* is open there, and replacing tokens cannot
// shut it (that takes a restart with tokens, which clients must then send).
var ErrNoClientTokens = errors.New("gateway: this gateway has no client tokens to replace (it started without any)")

// SetClientTokens replaces the client tokens of a gateway built with some,
// for every request that starts after it returns: a token dropped from
// the lists is refused from then on, a new one accepted. The lists obey
// Config's rules (not empty, none the secret, none twice, and at least one
// token in all); on an error nothing changes. The secret and
// ProtectClusterInfo stay as they were.
func (g *Gateway) SetClientTokens(readWrite, readOnly []string) error {
	if !g.clientTokens {
		return ErrNoClientTokens
	}
	if len(readWrite)+len(readOnly) == 0 {
		return errors.New("gateway: no client tokens given: a gateway that requires tokens keeps at least one")
	}
	creds, err := newCredentials(&Config{Secret: g.secret, ReadWriteTokens: readWrite, ReadOnlyTokens: readOnly})
	if err != nil {
		return err
	}
	g.creds.Store(creds)
	return nil
}

// Reasons of kvs_http_auth_failures_total.
const (
	authMissing  = "missing"   // no bearer token
	authWrong    = "wrong"     // a token the node does not know, or not the secret where it is needed
	authReadOnly = "read_only" // a read-only token on a write
)

// bearerToken returns the token of r's "Authorization: Bearer" header; ok
// is false when there is none (or another scheme).
func bearerToken(r *http.Request) (token string, ok bool) {
	auth := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(auth) < len(prefix) || !strings.EqualFold(auth[:len(prefix)], prefix) {
		return "", false
	}
	return auth[len(prefix):], true
}

// require answers 401 or 403, counts the failure and returns false unless
// r carries a token with grant want.
func (g *Gateway) require(w http.ResponseWriter, r *http.Request, route string, want grant) bool {
	token, ok := bearerToken(r)
	reason := authMissing
	var got grant
	if ok {
		got = g.creds.Load().grantOf(token)
		switch {
		case got&want != 0:
			return true
		case got == 0 || want == grantSecret:
			reason = authWrong
		default:
			reason = authReadOnly
		}
	}
	g.metrics.authFailures.WithLabelValues(route, reason).Inc()
	const realm = `Bearer realm="kvs"`
	switch {
	case want == grantSecret:
		// As before client tokens: a client token is no credential here.
		w.Header().Set("WWW-Authenticate", realm)
		writeError(w, http.StatusUnauthorized, "missing or wrong cluster secret")
	case reason == authMissing:
		w.Header().Set("WWW-Authenticate", realm)
		writeError(w, http.StatusUnauthorized, "this node needs a token: send Authorization: Bearer TOKEN")
	case reason == authWrong:
		w.Header().Set("WWW-Authenticate", realm+`, error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "unknown token")
	default:
		w.Header().Set("WWW-Authenticate", realm+`, error="insufficient_scope"`)
		writeError(w, http.StatusForbidden, "read-only token: "+r.Method+" needs a read-write token")
	}
	return false
}

// requireSecret is require for /internal/* and /admin/*: the cluster
// secret, when there is one.
func (g *Gateway) requireSecret(w http.ResponseWriter, r *http.Request, route string) bool {
	return g.secret == "" || g.require(w, r, route, grantSecret)
}

// requireClient is require for /kv/*: nothing without client tokens, else
// a read grant for GET and HEAD, a write grant for the rest.
func (g *Gateway) requireClient(w http.ResponseWriter, r *http.Request) bool {
	if !g.clientTokens {
		return true
	}
	want := grantWrite
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		want = grantRead
	}
	return g.require(w, r, routeKV, want)
}

// requireInfo is require for /cluster, /ring and /metrics: a read grant
// under ProtectClusterInfo, else nothing.
func (g *Gateway) requireInfo(w http.ResponseWriter, r *http.Request, route string) bool {
	return !g.protectInfo || g.require(w, r, route, grantRead)
}
