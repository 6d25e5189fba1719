package main

import "log/slog"

// fdReserve is how many file descriptors the default --max-conns leaves to
// everything but client connections: the store's and the hint store's WAL,
// tables, manifests and lock files, the NATS listeners, routes and
// JetStream files, and the runtime's own.
const fdReserve = 64

// minDefaultMaxConns is the smallest default --max-conns, however low the
// descriptor limit.
const minDefaultMaxConns = 8

// lowFDLimit is the soft limit under which start warns: a node with a
// handful of tables, peers and clients needs a few hundred descriptors.
const lowFDLimit = 1024

// defaultMaxConns is the --max-conns default for a soft descriptor limit:
// half of what the reserve leaves, so that clients can never take the
// descriptors the store needs to rotate its WAL and flush (at least
// minDefaultMaxConns). Without a known limit, no bound (-1).
func defaultMaxConns(soft uint64, known bool) int {
	if !known {
		return -1
	}
	if soft <= fdReserve+2*minDefaultMaxConns {
		return minDefaultMaxConns
	}
	return int(min((soft-fdReserve)/2, 1<<30))
}

// logFDLimit logs the descriptor limits the process runs with and the
// connection limit they led to, and warns when the soft limit is low. Go
// has already raised the soft limit to the hard one at start (package
// syscall does it on every Unix since Go 1.19), so the soft limit shown is
// what the hard limit allowed.
func logFDLimit(log *slog.Logger, maxConns int) {
	soft, hard, ok := fdLimit()
	if !ok {
		log.Info("file descriptor limit unknown", "max_conns", maxConns)
		return
	}
	if soft < lowFDLimit {
		log.Warn("file descriptor limit is low: raise the hard limit (ulimit -Hn, LimitNOFILE=, docker --ulimit nofile=)",
			"soft", soft, "hard", hard, "max_conns", maxConns)
		return
	}
	log.Info("file descriptor limit", "soft", soft, "hard", hard, "max_conns", maxConns)
}
