// Package bus is the node-to-node transport of kvs: it owns the embedded
// nats-server, the node's own connection to it, every subject name, and the
// request/publish/subscribe helpers the rest of the project uses.
//
// Each kvs node embeds one nats-server. The servers form a single NATS
// cluster through routes to the configured seed nodes; every pair of nodes
// needs its own route (routes do not relay messages), which the server
// establishes by dialling the seeds and, for nodes learned from a seed, the
// address each node advertises ([Config.Advertise]).
//
// What this package decides, so that callers do not have to:
//
//   - Server options: cluster name, route ping interval short enough that a
//     paused (SIGSTOPped) peer is dropped within a few seconds, an explicit
//     advertise address, NoSigs (the node owns signal handling), a system
//     account so that `nats server list` works, and, when a cluster secret
//     is set, authentication on routes and on every client connection.
//   - Accounts: user "kvs" in the application account KVS and user "sys" in
//     the system account SYS, both with the cluster secret as password. With
//     no secret, connections without credentials are bound to "kvs".
//   - Logging: nats-server logs go to a [log/slog] logger; connection and
//     route churn is logged at debug level, and errors that repeat every
//     second while a peer is down do not flood the error level.
//   - The node's own connection is in-process (no TCP) and shared by every
//     request: request/reply uses the connection's single response
//     subscription, so no request creates a subscription of its own.
//   - Subjects: [Subjects] builds every subject of the wire protocol; no
//     other package spells one.
//
// A request that finds no responder, times out, or runs on a closed
// connection fails with an error wrapping [ErrUnreachable]: to a caller, all
// of these mean the same thing, a replica that did not answer.
//
// What the cluster does, as measured in this package's tests:
//
//   - A peer that stops cleanly or is killed: its routes close at once, and
//     requests to it fail at once with "no responders".
//   - A peer that is paused (or its network hangs): requests to it time out
//     until the route is declared stale, 2-3 s with the default
//     PingInterval; after that they fail at once.
//   - A route being up ([Bus.NumRoutes]) is not the same as the peer's
//     subscriptions being known here: they follow the route within
//     milliseconds, and until then requests to the peer get "no
//     responders". Readiness should check that each peer answers, not
//     only that it is routed.
//   - A restarted peer dials its seeds at once, and peers that had dialled
//     it retry every second: the mesh re-forms without operator action.
//   - A node with a wrong or missing secret never joins: the secured node
//     refuses its route, and the misconfigured node may count the route for
//     a moment until the refusal arrives.
package bus
