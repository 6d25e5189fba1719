package main

import (
	"net/http"
	"strings"
	"unicode"

	"github.com/urfave/cli/v2"
)

// The client commands (put, get, delete, status, ring, bench) send a
// bearer token when given one with --token (KVS_TOKEN) or --token-file
// (KVS_TOKEN_FILE): a node started with --client-tokens-file needs one on
// /kv/*, and with --protect-cluster-info on /cluster and /ring too. The
// cluster secret works as a read-write token. health sends none: /readyz
// is open to all.

// maxTokenFileBytes bounds what is read of a token file.
const maxTokenFileBytes = 64 << 10

// tokenFlags are --token and --token-file.
func tokenFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "token", Usage: "bearer token for a node with client tokens (visible in ps: prefer --token-file or KVS_TOKEN)", EnvVars: envVars("token")},
		&cli.StringFlag{Name: "token-file", Usage: "read the bearer token from `FILE` (one trailing newline dropped) instead of --token", EnvVars: envVars("token-file")},
	}
}

// clientToken returns the token of --token or --token-file, or "" when
// neither is set. The node judges the token; this only refuses what an
// HTTP header cannot carry.
func clientToken(c *cli.Context) (string, error) {
	token, path := c.String("token"), c.String("token-file")
	if path != "" {
		if token != "" {
			return "", usageError("both --token and --token-file are set (or KVS_TOKEN and KVS_TOKEN_FILE): give one")
		}
		var err error
		if token, err = readTokenFile(path); err != nil {
			return "", usageError("%v", err)
		}
	}
	if strings.IndexFunc(token, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return "", usageError("the token contains whitespace or a control character, which an Authorization header cannot carry")
	}
	return token, nil
}

// readTokenFile reads a token from path: the whole file, one trailing
// newline (LF or CRLF) dropped.
func readTokenFile(path string) (string, error) {
	return readFlagFileLine("--token-file", path, maxTokenFileBytes)
}

// setBearer sends token as "Authorization: Bearer" when it is not empty.
func setBearer(req *http.Request, token string) {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
}
