package main

import (
	"errors"
	"fmt"
	"io"
	"os"
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
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("--cluster-secret-file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("--cluster-secret-file: %w", err)
	}
	if len(b) > maxSecretFileBytes {
		return "", fmt.Errorf("--cluster-secret-file %s: larger than %d KiB; is it the right file?", path, maxSecretFileBytes>>10)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", fmt.Errorf("--cluster-secret-file %s: empty", path)
	}
	return s, nil
}

// checkSecret checks a secret a node runs with (serve, dev); "" (no secret)
// passes. Each rule names what would break otherwise.
func checkSecret(s string) error {
	switch {
	case s == "":
		return nil
	case len(s) < minSecretBytes:
		return fmt.Errorf("the cluster secret is %d bytes; it must be at least %d (for example: head -c 32 /dev/urandom | base64)", len(s), minSecretBytes)
	case len(s) > maxSecretBytes:
		return fmt.Errorf("the cluster secret is %d bytes; it must be at most %d (NATS carries it in one control line)", len(s), maxSecretBytes)
	case !utf8.ValidString(s):
		return errors.New("the cluster secret is not valid UTF-8 (NATS carries it in JSON)")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return errors.New("the cluster secret contains a control character (a newline?); an HTTP header cannot carry it")
	case strings.TrimSpace(s) != s:
		return errors.New("the cluster secret begins or ends with whitespace, which HTTP drops from the Authorization header")
	}
	if err := bus.ValidSecret(s); err != nil {
		return fmt.Errorf("the cluster secret: %w", err)
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
