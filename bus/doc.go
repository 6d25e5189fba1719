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
//   - Users, each with its own password (users.go has the table): "kvs",
//     the nodes' own, with every right in the application account KVS and
//     the cluster secret as password; "watch", also in KVS, which may only
//     subscribe to heartbeats and the change feed and publishes nothing
//     (no requests, no replies, no JetStream); "sys" in the system account
//     SYS, for `nats server list` and the node's own JetStream peer
//     removal. Routes authenticate as "route" with the secret. The watch
//     and sys passwords are derived from the secret ([DerivePassword])
//     unless given ([Config.WatchPassword], [Config.SystemPassword]), so
//     that handing an operator the watch login gives away neither the
//     secret nor the right to act as a node. With no secret, connections
//     without credentials are bound to "watch", and every user has an
//     empty password (the nodes still connect as "kvs").
//   - TLS ([Config.TLS]): the client port refuses plaintext and asks
//     clients for no certificate (they authenticate with the secret); routes
//     are mutual TLS, both sides presenting the node's certificate and
//     checking the peer's against the cluster's CA, so a server without a
//     certificate from that CA cannot route to the cluster even with the
//     secret. The dialling side also checks that the certificate names the
//     host it dialled (seed or advertised address: see [TLS]). The node's
//     own connections are in-process: nats-server lets them speak plaintext
//     while the port requires TLS, so they need no certificate, and
//     JetStream, which runs over the routes, gets TLS with them. This
//     package reads no files: the caller parses the certificate, the key
//     and the CA.
//   - Logging: nats-server logs go to a [log/slog] logger; connection and
//     route churn is logged at debug level (so is the first failed dial to
//     each peer not yet listening while a cluster starts), and errors that
//     repeat every second while a peer is down do not flood the error
//     level: a failing route dial is a warning once a minute.
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
//   - A lone server's buckets are unavailable: on a first start its
//     JetStream waits for a route to another server (below), and a meta
//     group expects at least two servers anyway; every KV operation waits
//     and fails with [ErrUnavailable] when its context ends. A second
//     server that routes to it makes the pair usable within about a second
//     (0.6 to 1.4 s measured in this package's tests). A bucket needs a
//     quorum of its replicas, and the meta group a quorum of its members,
//     for writes.
//   - A first start waits for the cluster. A server whose JetStreamDir
//     holds no meta group state bootstraps a new meta group when JetStream
//     starts: its peers are the servers it is routed to at that moment, it
//     expects max(2, peers, Seeds) servers, campaigns at once, and grants
//     its vote to any candidate. Started with the server, before any
//     route, two such servers started together next to a running cluster
//     elected a meta leader of their own, and the cluster's servers, still
//     in their first Raft term, followed it: the buckets vanished (this
//     package's tests, before the wait below: 23 of 25 runs with one seed
//     each, 23 of 25 for three new servers seeded with every running
//     server). So on a first start the server starts without JetStream,
//     and starts it once its routes cover the cluster: routed to at least
//     one server, and to every server its peers are routed to, for 0.2 s
//     (the peers' answers confirming it); with no peer naming a meta
//     leader (a new cluster), also to as many servers as it has Seeds (not
//     counting itself), all routed to each other. Servers that wait at the
//     same time start together: a new cluster's first meta leader needs
//     the vote of every server. Its meta group then counts every running
//     server, and a candidate with an empty log would need the votes of
//     all of them, which servers with a log refuse. It logs that it waits,
//     and why it starts.
//   - How long: about 0.3 s when the cluster is up (measured: median
//     0.32 s, at most 0.9 s, for servers joining a running cluster); a
//     seed that was not listening yet is redialled a second later. With
//     no route at all it waits as long as it takes, warning every 30 s
//     (alone it could elect no leader anyway); once routed, at most 10 s
//     for the rest, then it starts with the routes it has and warns,
//     naming the servers it lacks. Until JetStream runs, and the servers
//     it is routed to run theirs (at most 10 s more), KV operations wait
//     and [Bus.MetaGroup] fails with [ErrUnavailable]. A restarted server
//     starts JetStream with the server: its meta group's state names its
//     peers.
//   - What the wait cannot do: new servers that cannot reach the running
//     cluster (a partition while they start) cannot count it; and a
//     server starting JetStream answers the JetStream API requests that
//     reach it in the milliseconds before its meta group runs with "not
//     enabled for account" (503, retried), and nats-server reads its own
//     state there without a lock (the race detector reports it). A new
//     cluster's servers keep their own requests out of that window; the
//     requests of running servers while a server joins can meet it.
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
//     group placing streams on a restarted server. On a first start there
//     is nothing to recover, and the account gets JetStream once the meta
//     group runs: before, the server would serve the account's requests as
//     a server of its own (a bucket created outside the meta group).
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
//   - JetStream's own logs go through the same slog adapter: its notices,
//     its routine warnings (snapshots, catch-up, replicas moving) and the
//     warnings of a normal start are logged at debug.
package bus
