package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/kvs-db/kvs/bus"
)

// The NATS users a node's embedded server has besides its own (kvs, whose
// password is the cluster secret): watch, which may only subscribe to
// heartbeats and the change feed, and sys, the system account's. Their
// passwords are derived from the cluster secret (bus.DerivePassword)
// unless given in a file (--watch-password-file, --sys-password-file);
// `kvs nats-credentials` prints them.

// natsUser is a NATS user whose password an operator may be given.
type natsUser struct {
	name string // bus.WatchUser or bus.SystemUser
	flag string // the flag of its password file
	may  string // what it may do, for the credentials table
}

// natsUsers returns the users of `kvs nats-credentials` and of the
// password file flags, least powerful first.
func natsUsers() []natsUser {
	return []natsUser{
		{bus.WatchUser, "watch-password-file", "subscribe to heartbeats (kvs.<cluster>.gossip) and the change feed (kvs.<cluster>.events.>); publish nothing"},
		{bus.SystemUser, "sys-password-file", "the system account: nats server list, nats server report"},
	}
}

// natsPasswords are the passwords of watch and sys given in files; ""
// means derived from the cluster secret.
type natsPasswords struct {
	watch, sys string
}

// natsPasswordFlags are --watch-password-file and --sys-password-file.
func natsPasswordFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "watch-password-file", EnvVars: envVars("watch-password-file"),
			Usage: "read the password of NATS user watch (subscribes to gossip and the change feed, publishes nothing) from `FILE`; default: derived from the cluster secret (kvs nats-credentials prints it)"},
		&cli.StringFlag{Name: "sys-password-file", EnvVars: envVars("sys-password-file"),
			Usage: "read the password of NATS user sys (the system account: nats server list) from `FILE`; default: derived from the cluster secret"},
	}
}

// readNATSPasswords reads the password files given, checks each as the
// cluster secret is checked, and refuses a password that is the secret
// or that another user has too (derived ones included). Passwords need a
// secret: without one no NATS connection is authenticated.
func readNATSPasswords(c *cli.Context, secret string) (natsPasswords, error) {
	var p natsPasswords
	for _, u := range natsUsers() {
		path := c.String(u.flag)
		if path == "" {
			continue
		}
		if secret == "" {
			return p, fmt.Errorf("--%s needs a cluster secret: without one no NATS connection is authenticated (a client that gives no user is watch, and every user has an empty password)", u.flag)
		}
		pw, err := readCredentialFile("--"+u.flag, path)
		if err != nil {
			return p, err
		}
		if err := checkCredential(fmt.Sprintf("the %s password (--%s %s)", u.name, u.flag, path), pw); err != nil {
			return p, err
		}
		if pw == secret {
			return p, fmt.Errorf("--%s %s holds the cluster secret: the %s password must be its own, or whoever has it may act as a node", u.flag, path, u.name)
		}
		p.set(u.name, pw)
	}
	if secret != "" && p.of(bus.WatchUser, secret) == p.of(bus.SystemUser, secret) {
		return p, errors.New("the watch and sys passwords are the same (--watch-password-file, --sys-password-file, or one of them and the other's derived password): each user needs its own")
	}
	return p, nil
}

// set records the given password of user.
func (p *natsPasswords) set(user, pw string) {
	switch user {
	case bus.WatchUser:
		p.watch = pw
	case bus.SystemUser:
		p.sys = pw
	}
}

// of returns the password user logs in with: the one given, or the one
// derived from secret.
func (p natsPasswords) of(user, secret string) string {
	given := p.sys
	if user == bus.WatchUser {
		given = p.watch
	}
	if given != "" {
		return given
	}
	return bus.DerivePassword(secret, user)
}

// defaultNATSServer is where nats-credentials says the server is.
const defaultNATSServer = "127.0.0.1:4222"

func natsCredentialsCommand() *cli.Command {
	return &cli.Command{
		Name:      "nats-credentials",
		Usage:     "print the passwords of the NATS users an operator may use (watch, sys), for the nats CLI",
		ArgsUsage: "[watch|sys]",
		Description: "With no argument, prints every user, its password and what it may do. With a user,\n" +
			"prints its password alone (--output password), or a nats:// URL with the user and\n" +
			"password in it for the nats CLI's --server (--output url):\n\n" +
			"  nats sub 'kvs.kvs.events.>' --server \"$(kvs nats-credentials watch --output url --cluster-secret-file secret)\"\n\n" +
			"The passwords are derived from the cluster secret unless the nodes were given\n" +
			"--watch-password-file or --sys-password-file: give this command the same. User kvs,\n" +
			"the nodes' own, takes the cluster secret itself: give it to nothing but nodes.",
		Flags: append(append(secretFlags("the cluster secret"), natsPasswordFlags()...),
			&cli.StringFlag{Name: "output", Value: "password", Usage: "with a user: password, or url (nats://USER:PASSWORD@SERVER)"},
			&cli.StringFlag{Name: "server", Value: defaultNATSServer, Usage: "`HOST:PORT` of a node's NATS client port, for --output url"},
		),
		Action: func(c *cli.Context) error {
			secret, err := readSecret(c)
			if err != nil {
				return usageError("%v", err)
			}
			if secret == "" {
				return usageError("no cluster secret (--cluster-secret, --cluster-secret-file): a cluster without one has no NATS passwords; " +
					"a client that gives no user is watch (nats://" + defaultNATSServer + "), and sys has an empty password (nats://sys:@" + defaultNATSServer + ")")
			}
			passwords, err := readNATSPasswords(c, secret)
			if err != nil {
				return usageError("%v", err)
			}
			server, err := natsServerAddr(c.String("server"))
			if err != nil {
				return usageError("--server: %v", err)
			}
			switch c.NArg() {
			case 0:
				if c.IsSet("output") {
					return usageError("--output needs a user: kvs nats-credentials watch --output %s", c.String("output"))
				}
				w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "USER\tPASSWORD\tMAY")
				for _, u := range natsUsers() {
					fmt.Fprintf(w, "%s\t%s\t%s\n", u.name, passwords.of(u.name, secret), u.may)
				}
				return w.Flush()
			case 1:
			default:
				return usageError("nats-credentials takes at most one user, got %q", c.Args().Slice())
			}
			user := c.Args().First()
			known := false
			for _, u := range natsUsers() {
				known = known || u.name == user
			}
			if !known {
				return usageError("no NATS user %q to print: watch or sys (user kvs takes the cluster secret)", user)
			}
			pw := passwords.of(user, secret)
			switch c.String("output") {
			case "password":
				fmt.Fprintln(c.App.Writer, pw)
			case "url":
				u := url.URL{Scheme: "nats", User: url.UserPassword(user, pw), Host: server}
				fmt.Fprintln(c.App.Writer, u.String())
			default:
				return usageError("--output %q: want password or url", c.String("output"))
			}
			return nil
		},
	}
}

// natsServerAddr returns the host:port of s, a host:port or a nats:// URL
// without credentials.
func natsServerAddr(s string) (string, error) {
	if rest, ok := strings.CutPrefix(s, "nats://"); ok {
		s = strings.TrimSuffix(rest, "/")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("%q: want host:port: %w", s, err)
	}
	if host == "" || port == "" || strings.ContainsAny(s, "@/") {
		return "", fmt.Errorf("%q: want host:port", s)
	}
	return s, nil
}
