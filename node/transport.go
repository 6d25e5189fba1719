package node

import (
	"context"
	"errors"
)

// Operations a node serves on its own request subject.
const (
	// OpPut applies a versioned record to the replica (put request, ack reply).
	OpPut = "put"
	// OpGet reads the replica's record of a key (get request, get reply).
	OpGet = "get"
	// OpHint stores a record as a hint for another node (hint request, ok reply).
	OpHint = "hint"
	// OpBatch carries several put, get or hint requests to one node as one
	// message, and their replies as one (batch request, batch reply; see
	// wire.go and batcher.go).
	OpBatch = "batch"
)

// ErrUnreachable is wrapped by Transport.Request errors when the request did
// not get a reply: nobody serves the node (stopped, unknown), or the reply
// did not come before the context ended.
var ErrUnreachable = errors.New("node: replica unreachable")

// Handler serves one request and returns the reply. The request buffer is
// the handler's to keep; the reply must not be nil.
type Handler func(req []byte) []byte

// Transport carries a node's traffic: request-reply to one node, heartbeats
// to all, and the change feed. A Transport is bound to one node ID at
// creation. Implementations: NewNATSTransport (production), MemNetwork
// (tests).
type Transport interface {
	// Request sends req to node to's handler for op and returns its reply.
	// A failure to get a reply (no such node, timeout, context end) returns
	// an error wrapping ErrUnreachable.
	Request(ctx context.Context, to, op string, req []byte) ([]byte, error)
	// Handle serves requests for op addressed to this node with h, until
	// the returned function is called. Handlers may run concurrently.
	Handle(op string, h Handler) (unsubscribe func() error, err error)
	// Broadcast sends a heartbeat to every node (best effort).
	Broadcast(msg []byte) error
	// OnBroadcast calls fn with every heartbeat other nodes broadcast, until
	// the returned function is called.
	OnBroadcast(fn func(msg []byte)) (unsubscribe func() error, err error)
	// PublishEvent publishes an accepted write on the change feed under op
	// (best effort, never blocks on the network).
	PublishEvent(op string, msg []byte) error
	// EventInterest reports whether anyone may be listening to the change
	// feed under op. When it is false the node builds no event at all; a
	// listener that has just subscribed may miss the events of that moment,
	// as it may miss any best-effort message.
	EventInterest(op string) bool
}
