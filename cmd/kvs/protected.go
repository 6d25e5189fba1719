package main

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
)

// Protected mode, after Redis's: a node with no cluster secret accepts
// anyone on every listener (HTTP API with /internal/* and /admin/*, NATS
// clients, NATS routes), so without a secret it listens on loopback only.
// A listen host left unspecified (the default 0.0.0.0, ::, or empty)
// becomes 127.0.0.1, and a host that is set and not loopback is refused.
// --insecure lifts the rule; a secret makes it moot.

// protectedHost is the host an unspecified listen host becomes.
const protectedHost = "127.0.0.1"

// protect applies protected mode to o. It rewrites unspecified listen hosts
// to 127.0.0.1, noting each change in o.rebound, and refuses a
// non-loopback --http, --nats-host or --advertise: peers dial the
// advertised address, which a loopback route listener would not answer.
func (o *serveOptions) protect() error {
	if o.secret != "" || o.insecure {
		return nil
	}
	host, port, err := net.SplitHostPort(o.httpAddr)
	if err != nil {
		return fmt.Errorf("--http %q: %w", o.httpAddr, err)
	}
	switch {
	case isUnspecified(host):
		addr := net.JoinHostPort(protectedHost, port)
		o.rebound = append(o.rebound, fmt.Sprintf("--http %s -> %s", o.httpAddr, addr))
		o.httpAddr = addr
	case !isLoopback(host):
		return errNotLoopback("--http", o.httpAddr, "the HTTP API, /internal/* and /admin/* included")
	}
	switch {
	case isUnspecified(o.natsHost):
		o.rebound = append(o.rebound, fmt.Sprintf("--nats-host %s -> %s", o.natsHost, protectedHost))
		o.natsHost = protectedHost
	case !isLoopback(o.natsHost):
		return errNotLoopback("--nats-host", o.natsHost, "the NATS client and route ports (every subject; any server may join the cluster)")
	}
	if o.advertise != "" {
		host, _, err := net.SplitHostPort(o.advertise)
		if err != nil {
			return fmt.Errorf("--advertise %q: %w", o.advertise, err)
		}
		if !isLoopback(host) {
			return fmt.Errorf("--advertise %s is not a loopback address, but with no cluster secret the route port listens on loopback only, so peers could not reach it: "+
				"set --cluster-secret (or --cluster-secret-file) to cluster beyond this machine, or pass --insecure to do so unauthenticated", o.advertise)
		}
	}
	return nil
}

// errNotLoopback is the error for a listen address beyond loopback in
// protected mode; what says what it would open.
func errNotLoopback(flag, addr, what string) error {
	return fmt.Errorf("%s %s is not a loopback address, and with no cluster secret it would open %s to anyone who reaches it: "+
		"set --cluster-secret (or --cluster-secret-file), or pass --insecure (KVS_INSECURE=true) to listen unauthenticated anyway, "+
		"or listen on 127.0.0.1", flag, addr, what)
}

// isUnspecified reports whether a listen host means every interface.
func isUnspecified(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// isLoopback reports whether host is a loopback address or "localhost".
// Other names are not resolved: an operator who means loopback writes
// 127.0.0.1.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// logListenSecurity logs, at every start, who may reach the node: at info
// the loopback-only listeners of protected mode and what it rebound; at warn,
// under --insecure, every listener reachable beyond loopback with no secret.
func logListenSecurity(log *slog.Logger, o serveOptions) {
	switch {
	case o.secret != "":
		return
	case !o.insecure:
		log.Info("no cluster secret: listening on loopback only (protected mode); set --cluster-secret or --cluster-secret-file to listen beyond it",
			"http", o.httpAddr, "nats_host", o.natsHost, "rebound", o.rebound)
		return
	}
	var exposed []string
	if host, _, err := net.SplitHostPort(o.httpAddr); err == nil && !isLoopback(host) {
		exposed = append(exposed, "HTTP API (with /internal/* and /admin/*) on "+o.httpAddr)
	}
	if !isLoopback(o.natsHost) {
		exposed = append(exposed,
			"NATS clients on "+net.JoinHostPort(o.natsHost, strconv.Itoa(o.natsPort)),
			"NATS routes on "+net.JoinHostPort(o.natsHost, strconv.Itoa(o.clusterPort)))
	}
	if len(exposed) == 0 {
		log.Info("--insecure given, but every listener is on loopback", "http", o.httpAddr, "nats_host", o.natsHost)
		return
	}
	log.Warn("--insecure and no cluster secret: anyone who reaches these listeners can read and write every key, change the ring, and join the cluster",
		"exposed", exposed)
}
