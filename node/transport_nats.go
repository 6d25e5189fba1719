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
	// events holds the change feed's subject of each write operation,
	// built once: every write asks whether anyone listens on one.
	events map[string]string
}

var _ Transport = (*natsTransport)(nil)

// NewNATSTransport returns the Transport of the node b belongs to
// (b.NodeID()), in b's cluster. The caller owns b and closes it after the
// node.
func NewNATSTransport(b *bus.Bus) Transport {
	subj := b.Subjects()
	events := map[string]string{}
	for _, op := range []string{OpPut, "delete"} {
		events[op] = subj.Events(op)
	}
	return &natsTransport{b: b, self: b.NodeID(), subj: subj, events: events}
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
	return t.b.Publish(t.eventSubject(op), msg)
}

// eventSubject returns op's change feed subject.
func (t *natsTransport) eventSubject(op string) string {
	if s, ok := t.events[op]; ok {
		return s
	}
	return t.subj.Events(op)
}

func (t *natsTransport) EventInterest(op string) bool {
	return t.b.HasInterest(t.eventSubject(op))
}
