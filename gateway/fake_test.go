package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node"
)

// fakeNode is an in-memory Node: one replica, a counter for versions, and
// errors to inject. It checks quorum bounds against n like the real node.
type fakeNode struct {
	mu       sync.Mutex
	n        int
	counter  uint64
	data     map[string]lsm.Record
	err      error // returned by Put, Delete, Get, LocalGet, LocalApply when set
	notReady error
	// unwritable is StoreWritable's answer.
	unwritable error
	lastW      int
	lastR      int
	// topology commands
	epoch      uint64
	node2State string
	adminErr   error
	adminOps   []string
}

var _ Node = (*fakeNode)(nil)

func newFakeNode() *fakeNode {
	return &fakeNode{n: 3, data: map[string]lsm.Record{}, epoch: 1, node2State: "normal"}
}

func (f *fakeNode) checkQuorum(q int) error {
	if q < 0 || q > f.n {
		return fmt.Errorf("%w: %d not in 1..%d", node.ErrInvalidQuorum, q, f.n)
	}
	return nil
}

func (f *fakeNode) write(key, value []byte, tomb bool, w int) (lsm.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastW = w
	if f.err != nil {
		return lsm.Version{}, f.err
	}
	if err := f.checkQuorum(w); err != nil {
		return lsm.Version{}, err
	}
	f.counter++
	v := lsm.Version{Counter: f.counter, Node: 7}
	f.data[string(key)] = lsm.Record{Key: bytes.Clone(key), Value: bytes.Clone(value), Version: v, Tombstone: tomb}
	return v, nil
}

func (f *fakeNode) Put(_ context.Context, key, value []byte, o node.WriteOptions) (lsm.Version, error) {
	return f.write(key, value, false, o.W)
}

func (f *fakeNode) Delete(_ context.Context, key []byte, o node.WriteOptions) (lsm.Version, error) {
	return f.write(key, nil, true, o.W)
}

func (f *fakeNode) Get(_ context.Context, key []byte, o node.ReadOptions) (lsm.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastR = o.R
	if f.err != nil {
		return lsm.Record{}, f.err
	}
	if err := f.checkQuorum(o.R); err != nil {
		return lsm.Record{}, err
	}
	rec, ok := f.data[string(key)]
	if !ok || rec.Tombstone {
		return lsm.Record{}, node.ErrNotFound
	}
	return rec, nil
}

func (f *fakeNode) LocalGet(key []byte) (lsm.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return lsm.Record{}, f.err
	}
	rec, ok := f.data[string(key)]
	if !ok {
		return lsm.Record{}, node.ErrNotFound
	}
	return rec, nil
}

func (f *fakeNode) LocalApply(rec lsm.Record) (lsm.Version, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return lsm.Version{}, false, f.err
	}
	old, ok := f.data[string(rec.Key)]
	if ok && !old.Version.Less(rec.Version) {
		return old.Version, false, nil
	}
	f.data[string(rec.Key)] = rec
	return rec.Version, true, nil
}

func (f *fakeNode) Ready() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.notReady
}

func (f *fakeNode) StoreWritable() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unwritable
}

func (f *fakeNode) Status() node.ClusterStatus {
	return node.ClusterStatus{
		Self: "node1", Cluster: "kvs", N: 3, W: 2, R: 2, Ready: true,
		Members: []node.MemberStatus{
			{ID: "node1", HTTPAddr: "127.0.0.1:8081", Alive: true, Ownership: 0.34},
			{ID: "node2", HTTPAddr: "127.0.0.1:8082", Alive: false, Ownership: 0.33, HintsPending: 5},
		},
	}
}

func (f *fakeNode) Ring(context.Context) (node.RingStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.notReady != nil {
		return node.RingStatus{}, f.notReady
	}
	rs := node.RingStatus{Self: "node1", ClusterID: "c0ffee", Epoch: f.epoch, Revision: f.epoch, N: 3, VNodes: 100,
		Members: []node.RingMember{
			{ID: "node1", State: "normal", HTTP: "127.0.0.1:8081", Since: 1, Alive: true, Epoch: f.epoch, Ownership: 0.5, Replicated: 1},
			{ID: "node2", State: f.node2State, HTTP: "127.0.0.1:8082", Since: f.epoch, Alive: true, Epoch: f.epoch, Ownership: 0.5, Replicated: 1},
		}}
	if f.node2State == "leaving" {
		rs.Change = &node.RingChange{Kind: "leave", Node: "node2", Epoch: f.epoch, Gainers: []string{"node1"}}
	}
	return rs, nil
}

// adminOp records a topology command and fails with adminErr when set.
func (f *fakeNode) adminOp(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.adminErr != nil {
		return f.adminErr
	}
	f.adminOps = append(f.adminOps, op)
	f.epoch++
	return nil
}

func (f *fakeNode) Decommission(context.Context) error { return f.adminOp("decommission") }

func (f *fakeNode) RemoveNode(_ context.Context, id string, force bool) error {
	return f.adminOp(fmt.Sprintf("removenode %s %v", id, force))
}

func (f *fakeNode) AbortChange(context.Context) error { return f.adminOp("abort") }

func (f *fakeNode) Repair(_ context.Context, progress func(node.RoundStats, error)) (node.RoundStats, error) {
	if err := f.adminOp("repair"); err != nil {
		return node.RoundStats{}, err
	}
	a := node.RoundStats{Peer: "node2", Ranges: 200, Pushed: 3, BytesSent: 3200}
	b := node.RoundStats{Peer: "node3", Ranges: 200, RangesDiffering: 1, Pulled: 1, BytesSent: 3300}
	progress(a, nil)
	progress(b, errors.New("node3: timeout"))
	return node.RoundStats{Ranges: 400, RangesDiffering: 1, Pushed: 3, Pulled: 1, BytesSent: 6500}, errors.New("node3: timeout")
}
