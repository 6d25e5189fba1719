// Package topology owns the cluster's ring metadata: who the members are,
// in which state (joining, normal, leaving, removed), and the one change in
// progress. It is the cluster's single source of truth for placement;
// gossip only says who is alive.
//
// A topology changes only by commands (bootstrap, join, leave, remove,
// streamed, abort), each applied by the pure function Apply, which checks
// the command against the current topology and refuses what does not fit
// with a sentinel error (ErrBusy, ErrTooFew, ErrNotMember, ...). Every
// command that moves placement advances the epoch by one. Propose applies a
// command to the stored topology with compare-and-set on the store's
// revision and retries on a lost race, so two concurrent commands are
// serialized: the second is applied to the first's result, or refused.
//
// Changes run one at a time. A join adds the node as joining; a leave
// (decommission) or remove (removenode) marks the member leaving. While a
// change is pending, Placement has two rings: Current (normal and leaving
// members) decides reads and the W of writes, Next (normal and joining
// members) is the ring after the change. Writes also go to a key's pending
// replicas (on Next, not on Current) and wait for one more ack each, as
// Cassandra does for pending ranges. The members that gain ranges (the
// gainers) stream them: from the member that loses each range (join,
// leave), or from every surviving replica (remove, or a loser that died).
// Each gainer marks itself streamed; the last one commits the change: the
// joining member turns normal, the leaving one removed, and the epoch moves
// on. Streaming is driven by the stored state alone, so a restarted node
// resumes where the state says it is.
//
// Where the document lives. The store is a seam (Store): NewKVStore keeps
// the document in a JetStream KV bucket on the nodes' embedded NATS
// servers, replicated min(3, members) ways by nats-server's Raft, with
// compare-and-set on the key's revision and a watch that every node runs;
// MemStore is the in-memory fake the tests use. We chose the bucket over a
// protocol of our own because it gives linearizable compare-and-set and an
// ordered watch from code that is already in the binary and tested by the
// NATS project, which is exactly what a metadata log needs. Its limits:
// JetStream's meta group needs at least two servers to elect a leader, so a
// lone node keeps its topology locally until a second node joins; and while
// the bucket has no quorum, topology changes wait, though reads and writes
// go on with the last topology each node knows.
package topology
