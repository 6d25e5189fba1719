package main

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/kvs-db/kvs/bus"
)

// The cluster secret is given on the command line or in the environment
// (--cluster-secret, KVS_CLUSTER_SECRET), or read from a file
// (--cluster-secret-file, KVS_CLUSTER_SECRET_FILE) so that it shows
// neither in ps nor in the environment.

const (
	// minSecretBytes is the shortest secret serve and dev accept. The
	// secret is the only credential of NATS clients, routes and
	// /internal/*; a short one is guessed.
	minSecretBytes = 16
	// maxSecretBytes is the longest: nats-server reads a client's or
	// route's CONNECT, which carries the secret, as one control line of at
	// most 4 KiB.
	maxSecretBytes = 1024
	// maxSecretFileBytes bounds what is read of a secret file, so that a
	// wrong path (a log, a disk image) fails at once.
	maxSecretFileBytes = 64 << 10
)

// secretFlags are --cluster-secret, with the given usage, and
// --cluster-secret-file.
func secretFlags(usage string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "cluster-secret", Usage: usage + " (visible in ps: prefer --cluster-secret-file or KVS_CLUSTER_SECRET)", EnvVars: envVars("cluster-secret")},
		&cli.StringFlag{Name: "cluster-secret-file", Usage: "read the cluster secret from `FILE` (one trailing newline dropped) instead of --cluster-secret", EnvVars: envVars("cluster-secret-file")},
	}
}

// readSecret returns the cluster secret of --cluster-secret or
// --cluster-secret-file, or "" when neither is set. Giving both is an
// error. It does not check the secret: see checkSecret.
func readSecret(c *cli.Context) (string, error) {
	secret, path := c.String("cluster-secret"), c.String("cluster-secret-file")
	switch {
	case path == "":
		return secret, nil
	case secret != "":
		return "", errors.New("both --cluster-secret and --cluster-secret-file are set (or KVS_CLUSTER_SECRET and KVS_CLUSTER_SECRET_FILE): give one")
	}
	return readCredentialFile("--cluster-secret-file", path)
}

// readCredentialFile reads a secret or password from the file at path,
// given with flag: at most maxSecretFileBytes, one trailing newline
// dropped, not empty. It does not check what it read.
func readCredentialFile(flag, path string) (string, error) {
	return readFlagFileLine(flag, path, maxSecretFileBytes)
}

// checkSecret checks a secret a node runs with (serve, dev); "" (no secret)
// passes. See checkCredential.
func checkSecret(s string) error {
	if s == "" {
		return nil
	}
	return checkCredential("the cluster secret", s)
}

// checkCredential checks a secret or password a node runs with; name
// says which, and where it came from, in the error. Each rule names what
// would break otherwise.
func checkCredential(name, s string) error {
	switch {
	case len(s) < minSecretBytes:
		return fmt.Errorf("%s is %d bytes; it must be at least %d (for example: head -c 32 /dev/urandom | base64)", name, len(s), minSecretBytes)
	case len(s) > maxSecretBytes:
		return fmt.Errorf("%s is %d bytes; it must be at most %d (NATS carries it in one control line)", name, len(s), maxSecretBytes)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s is not valid UTF-8 (NATS carries it in JSON)", name)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return fmt.Errorf("%s contains a control character (a newline?), which neither an HTTP header nor a nats:// URL can carry", name)
	case strings.TrimSpace(s) != s:
		return fmt.Errorf("%s begins or ends with whitespace, which HTTP drops from the Authorization header and shells from arguments", name)
	}
	if err := bus.ValidSecret(s); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// nodeSecret is readSecret and checkSecret, for serve and dev.
func nodeSecret(c *cli.Context) (string, error) {
	s, err := readSecret(c)
	if err != nil {
		return "", err
	}
	return s, checkSecret(s)
}
