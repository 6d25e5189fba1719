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
//
// # JetStream key-value buckets
//
// With [Config.JetStreamDir] set, the embedded servers also run JetStream,
// and [Bus.KV] gives a small replicated map with compare-and-set on
// revisions: what the cluster's metadata (the ring topology) is stored in.
// The package knows nothing of what is stored.
//
// Why JetStream KV: cluster metadata must change by agreement (one change
// wins, the others see that they lost and retry from the new state), and
// every node must see the changes in the same order. nats-server already
// runs Raft for JetStream, over the routes this package configures, with
// leader election, membership changes and catch-up tested far beyond what
// a protocol of our own would be; a bucket is one stream whose revisions
// are the stream's sequence numbers, and compare-and-set is a publish that
// expects a key's last sequence. What it costs is the constraints below.
//
// Decisions, and what they mean for callers:
//
//   - JetStream runs clustered whenever it is on, so that servers can join
//     later: every JetStream server is a member of one meta group (Raft)
//     whose leader places buckets. nats-server requires a configured route
//     for that, so a node with no Seeds routes to itself (the server drops
//     that route).
//   - A lone server's buckets are unavailable. A meta group that starts for
//     the first time expects at least two servers (or as many as the node
//     has Seeds) and elects no leader with fewer; every KV operation then
//     fails with [ErrUnavailable] when its context ends. A second server
//     that routes to it makes the pair usable within about a second (0.6 s
//     measured in this package's tests). A bucket needs a quorum of its
//     replicas, and the meta group a quorum of its members, for writes.
//   - A leader that stops hands its leadership over, usually within a
//     second; when the hand-over fails (the chosen replica is not ready),
//     or the leader dies, the others elect a new one after nats-server's
//     election timeout, 4 to 9 s. [DefaultKVTimeout] waits that out.
//   - SyncAlways: every write to JetStream storage is synced to disk before
//     it is acknowledged. The buckets hold cluster metadata, tiny and
//     rarely written, for which losing an acknowledged change to a power
//     cut (several replicas in one rack) costs far more than an fsync.
//   - Limits: JetStream may use [JetStreamMaxMemory] (64 MiB) of memory and
//     [JetStreamMaxStore] (1 GiB) under JetStreamDir, not nats-server's
//     defaults (most of the machine's memory and disk).
//   - The application account gets JetStream from the server's own
//     configuration language, before the server starts, because the
//     server then recovers the account's streams before its meta group
//     starts; enabling the account after Start would race with the meta
//     group placing streams on a restarted server.
//   - Buckets keep one revision per key. Get and Keys read at the stream
//     leader (direct gets off): on any node they see every write
//     acknowledged before they began. A watch reads from a consumer on a
//     replica JetStream picks, which may lag by milliseconds.
//   - Operations retry while JetStream is unavailable (a request sent while
//     there is no leader is dropped, not answered), each attempt bounded by
//     a fraction of the context. Writes carry a message ID, so JetStream
//     stores a retried write once: a lost acknowledgement does not turn into
//     a second write or a false [ErrRevisionMismatch].
//   - [KV.Watch] runs its own consumer and restarts it after any failure,
//     after the last revision it delivered: changes arrive in revision
//     order, never twice (a key changed several times during a restart
//     shows its latest revision only).
//   - [Bus.RemovePeer] takes a server that is gone for good out of the
//     meta group (through the system account), so that quorum no longer
//     counts it; JetStream moves the bucket replicas it held to other
//     servers. nats-server's Raft refuses to add a removed server back for
//     5 minutes: a new server with the same name that starts within that
//     time routes and serves requests but is not a member (it holds no
//     replica and does not count for quorum); after that it is added like
//     a new server. [Bus.MetaGroup] shows the group as one server sees it.
//   - New servers join one at a time. A server with an empty JetStreamDir
//     votes for any candidate and campaigns at once; two such servers
//     started together can elect a meta leader of their own that a
//     cluster still in its first Raft term follows (seen in this
//     package's tests, with a reused name).
//   - JetStream's own logs go through the same slog adapter: its notices,
//     its routine warnings (snapshots, catch-up, replicas moving) and the
//     warnings of a normal start are logged at debug.
package bus
