package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/kvs-db/kvs/bus"
)

// natsTransport carries a node's traffic over its embedded NATS bus, on the
// subjects bus.Subjects builds:
//
//	kvs.<cluster>.node.<id>.<op>  requests to one node (put, get, hint)
//	kvs.<cluster>.gossip          heartbeats
//	kvs.<cluster>.events.<op>     change feed (put, delete)
type natsTransport struct {
	b    *bus.Bus
	self string
	subj bus.Subjects
}

var _ Transport = (*natsTransport)(nil)

// NewNATSTransport returns the Transport of the node b belongs to
// (b.NodeID()), in b's cluster. The caller owns b and closes it after the
// node.
func NewNATSTransport(b *bus.Bus) Transport {
	return &natsTransport{b: b, self: b.NodeID(), subj: b.Subjects()}
}

func (t *natsTransport) Request(ctx context.Context, to, op string, req []byte) ([]byte, error) {
	rep, err := t.b.Request(ctx, t.subj.Node(to, op), req)
	if err != nil {
		if errors.Is(err, bus.ErrUnreachable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		return nil, err
	}
	return rep, nil
}

func (t *natsTransport) Handle(op string, h Handler) (func() error, error) {
	return t.b.Subscribe(t.subj.Node(t.self, op), h)
}

func (t *natsTransport) Broadcast(msg []byte) error {
	return t.b.Publish(t.subj.Gossip(), msg)
}

func (t *natsTransport) OnBroadcast(fn func([]byte)) (func() error, error) {
	return t.b.Subscribe(t.subj.Gossip(), func(msg []byte) []byte {
		fn(msg)
		return nil
	})
}

func (t *natsTransport) PublishEvent(op string, msg []byte) error {
	return t.b.Publish(t.subj.Events(op), msg)
}

func (t *natsTransport) EventInterest(op string) bool {
	return t.b.HasInterest(t.subj.Events(op))
}
