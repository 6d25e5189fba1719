package node

import "github.com/kvs-db/kvs/lsm"

// Record is one versioned write of one key, as the node stores and serves
// it: key, value, version, tombstone and expiry. It is the storage
// engine's record type, named here so that callers of the node (the
// gateway) reach storage only through the node.
type Record = lsm.Record

// Version orders the writes of one key: {Counter, Node}, counter first
// (see lsm.Version). Its String form, "counter.node", is what the HTTP API
// shows.
type Version = lsm.Version
