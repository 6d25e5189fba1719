package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/kvs-db/kvs/gateway"
)

// Client tokens of `kvs serve`: --client-tokens-file names a file of bearer
// tokens for the client API, one a line:
//
//	# comment lines begin with #; blank lines are skipped
//	rw:TOKEN    may read and write /kv/*
//	ro:TOKEN    may only read (GET, HEAD)
//
// The file is read at start and again on each SIGHUP (reload.go): a token
// taken out of it is refused from then on, without a restart.
// --protect-cluster-info puts /cluster, /ring and /metrics behind any
// token (or the cluster secret). Both need a cluster secret; the gateway
// package doc says who may call what.

const (
	// minTokenBytes is the shortest client token: like the secret, a
	// short one is guessed.
	minTokenBytes = minSecretBytes
	// maxTokenBytes is the longest: longer is a mistake, not more safety.
	maxTokenBytes = maxSecretBytes
	// maxTokensFileBytes bounds what is read of a tokens file, so that a
	// wrong path fails at once.
	maxTokensFileBytes = 1 << 20
)

// clientAuthOptions are the validated client token flags of serve.
type clientAuthOptions struct {
	tokensFile  string
	readWrite   []string
	readOnly    []string
	protectInfo bool
}

// clientAuthFlags are --client-tokens-file and --protect-cluster-info.
func clientAuthFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "client-tokens-file", Usage: "require bearer tokens on /kv/*, read from `FILE` at start and on SIGHUP: lines rw:TOKEN (read and write) or ro:TOKEN (read only), # comments; needs a cluster secret, which works as a read-write token too", EnvVars: envVars("client-tokens-file")},
		&cli.BoolFlag{Name: "protect-cluster-info", Usage: "require a client token or the cluster secret on /cluster, /ring and /metrics (members, addresses, internals)", EnvVars: envVars("protect-cluster-info")},
	}
}

// parseClientAuth reads the client token flags of serve; secret is the
// node's cluster secret, which they need.
func parseClientAuth(c *cli.Context, secret string) (clientAuthOptions, error) {
	a := clientAuthOptions{tokensFile: c.String("client-tokens-file"), protectInfo: c.Bool("protect-cluster-info")}
	if secret == "" {
		// Without a secret /internal/kv, which writes any record, and the
		// NATS ports are open: a token would guard nothing.
		switch {
		case a.tokensFile != "":
			return a, errors.New("--client-tokens-file needs a cluster secret (--cluster-secret-file): without one, /internal/* and the NATS ports let anyone write around the tokens")
		case a.protectInfo:
			return a, errors.New("--protect-cluster-info needs a cluster secret (--cluster-secret-file): without one, the NATS ports show the cluster to anyone")
		}
	}
	if a.tokensFile == "" {
		return a, nil
	}
	var err error
	a.readWrite, a.readOnly, err = readTokensFile(a.tokensFile, secret)
	return a, err
}

// apply sets the client tokens in cfg and returns it.
func (a clientAuthOptions) apply(cfg gateway.Config) gateway.Config {
	cfg.ReadWriteTokens = a.readWrite
	cfg.ReadOnlyTokens = a.readOnly
	cfg.ProtectClusterInfo = a.protectInfo
	return cfg
}

// readTokensFile reads a tokens file. Errors name the file and line, never
// a token.
func readTokensFile(path, secret string) (readWrite, readOnly []string, err error) {
	b, err := readFlagFile("--client-tokens-file", path, maxTokensFileBytes)
	if err != nil {
		return nil, nil, err
	}
	lineOf := map[string]int{} // token -> line
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), maxTokensFileBytes)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kind, token, _ := strings.Cut(line, ":")
		fail := func(format string, args ...any) error {
			return fmt.Errorf("--client-tokens-file %s:%d: %s", path, n, fmt.Sprintf(format, args...))
		}
		if kind != "rw" && kind != "ro" {
			return nil, nil, fail("want rw:TOKEN or ro:TOKEN")
		}
		if err := checkToken(token); err != nil {
			return nil, nil, fail("%v", err)
		}
		switch prev, dup := lineOf[token]; {
		case dup:
			return nil, nil, fail("the same token as line %d", prev)
		case token == secret:
			return nil, nil, fail("this token is the cluster secret, which would open /admin/* to its holders; the secret works as a read-write token already")
		}
		lineOf[token] = n
		if kind == "rw" {
			readWrite = append(readWrite, token)
		} else {
			readOnly = append(readOnly, token)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("--client-tokens-file %s: %w", path, err)
	}
	if len(lineOf) == 0 {
		// An empty file would leave /kv/* open while the operator thinks it shut.
		return nil, nil, fmt.Errorf("--client-tokens-file %s: no tokens (lines rw:TOKEN or ro:TOKEN)", path)
	}
	return readWrite, readOnly, nil
}

// checkToken checks a client token: 16 to 1024 bytes of RFC 6750's
// token68 alphabet (letters, digits, -._~+/, then = padding), which base64
// and hex stay within and every HTTP client sends as it is.
func checkToken(t string) error {
	switch {
	case len(t) < minTokenBytes:
		return fmt.Errorf("the token is %d bytes; it must be at least %d (for example: head -c 32 /dev/urandom | base64)", len(t), minTokenBytes)
	case len(t) > maxTokenBytes:
		return fmt.Errorf("the token is %d bytes; it must be at most %d", len(t), maxTokenBytes)
	}
	body := strings.TrimRight(t, "=")
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/", c) >= 0) {
			return fmt.Errorf("the token has a character (byte %d) other than letters, digits, -._~+/ and trailing =", i+1)
		}
	}
	if body == "" {
		return errors.New("the token is only =")
	}
	return nil
}
