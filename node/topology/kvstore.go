package topology

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/kvs-db/kvs/bus"
)

// Keys of the topology bucket.
const (
	// docKey holds the topology document.
	docKey = "ring"
	// progressPrefix + gainer holds a gainer's streaming progress.
	progressPrefix = "progress."
)

// DefaultBucket is the name of the JetStream KV bucket the topology lives
// in.
const DefaultBucket = "kvs_topology"

// maxBucketReplicas is how many copies of the bucket the cluster keeps: a
// majority of three survives one lost server, and more would only slow
// every change down.
const maxBucketReplicas = 3

// KV is the part of a bus.KV the store uses; *bus.KV implements it.
type KV interface {
	Get(ctx context.Context, key string) ([]byte, uint64, error)
	Create(ctx context.Context, key string, value []byte) (uint64, error)
	Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error)
	Put(ctx context.Context, key string, value []byte) (uint64, error)
	Keys(ctx context.Context, pattern string) ([]string, error)
	Watch(ctx context.Context, pattern string, fn func(bus.Entry)) error
	SetReplicas(ctx context.Context, n int) error
}

var _ KV = (*bus.KV)(nil)

// KVStore keeps the topology in a JetStream KV bucket: the document under
// one key, updated with compare-and-set on its revision, and each gainer's
// progress under a key of its own.
type KVStore struct {
	kv         KV
	removePeer func(ctx context.Context, id string) error
	onBad      func(error)
}

var (
	_ Store      = (*KVStore)(nil)
	_ Maintainer = (*KVStore)(nil)
)

// NewKVStore returns the store on kv. removePeer takes a removed member's
// server out of the bucket's Raft group (bus.Bus.RemovePeer); onBad, if
// not nil, hears of documents in the bucket that do not decode (the watch
// skips them).
func NewKVStore(kv KV, removePeer func(ctx context.Context, id string) error, onBad func(error)) *KVStore {
	if onBad == nil {
		onBad = func(error) {}
	}
	return &KVStore{kv: kv, removePeer: removePeer, onBad: onBad}
}

// storeErr maps the bus's errors onto the store's sentinels.
func storeErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bus.ErrKeyNotFound):
		return fmt.Errorf("%w: %s: %w", ErrNotFound, op, err)
	case errors.Is(err, bus.ErrRevisionMismatch):
		return fmt.Errorf("%w: %s: %w", ErrConflict, op, err)
	case errors.Is(err, bus.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
	}
	return fmt.Errorf("topology: %s: %w", op, err)
}

// Load implements Store.
func (s *KVStore) Load(ctx context.Context) (Topology, uint64, error) {
	b, rev, err := s.kv.Get(ctx, docKey)
	if err != nil {
		return Topology{}, 0, storeErr("load", err)
	}
	t, err := Decode(b)
	if err != nil {
		return Topology{}, 0, fmt.Errorf("topology: load revision %d: %w", rev, err)
	}
	return t, rev, nil
}

// Create implements Store.
func (s *KVStore) Create(ctx context.Context, t Topology) (uint64, error) {
	b, err := t.Encode()
	if err != nil {
		return 0, err
	}
	rev, err := s.kv.Create(ctx, docKey, b)
	return rev, storeErr("create", err)
}

// Update implements Store.
func (s *KVStore) Update(ctx context.Context, t Topology, rev uint64) (uint64, error) {
	b, err := t.Encode()
	if err != nil {
		return 0, err
	}
	nrev, err := s.kv.Update(ctx, docKey, b, rev)
	return nrev, storeErr("update", err)
}

// Watch implements Store. A document that does not decode is reported to
// onBad and skipped.
func (s *KVStore) Watch(ctx context.Context, fn func(Topology, uint64)) error {
	err := s.kv.Watch(ctx, docKey, func(e bus.Entry) {
		if e.Deleted {
			return
		}
		t, err := Decode(e.Value)
		if err != nil {
			s.onBad(fmt.Errorf("topology revision %d: %w", e.Revision, err))
			return
		}
		fn(t, e.Revision)
	})
	return storeErr("watch", err)
}

// PutProgress implements Store.
func (s *KVStore) PutProgress(ctx context.Context, p Progress) error {
	b, err := encodeProgress(p)
	if err != nil {
		return err
	}
	_, err = s.kv.Put(ctx, progressPrefix+p.Node, b)
	return storeErr("put progress", err)
}

// Progress implements Store.
func (s *KVStore) Progress(ctx context.Context) ([]Progress, error) {
	keys, err := s.kv.Keys(ctx, progressPrefix+">")
	if err != nil {
		return nil, storeErr("list progress", err)
	}
	var out []Progress
	for _, k := range keys {
		b, _, err := s.kv.Get(ctx, k)
		if errors.Is(err, bus.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, storeErr("get progress", err)
		}
		p, err := decodeProgress(b)
		if err != nil || p.Node != strings.TrimPrefix(k, progressPrefix) {
			s.onBad(fmt.Errorf("progress %s: %w", k, err))
			continue
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Progress) int { return cmpString(a.Node, b.Node) })
	return out, nil
}

// Maintain implements Maintainer: the bucket keeps min(3, members) replicas,
// and the servers of removed members leave its Raft group.
func (s *KVStore) Maintain(ctx context.Context, t Topology) error {
	var errs []error
	n := min(maxBucketReplicas, t.Count(Joining, Normal, Leaving))
	if err := s.kv.SetReplicas(ctx, n); err != nil {
		errs = append(errs, fmt.Errorf("replicas %d: %w", n, err))
	}
	if s.removePeer != nil {
		for _, id := range t.IDs(Removed) {
			if err := s.removePeer(ctx, id); err != nil {
				errs = append(errs, fmt.Errorf("remove %s from the bucket's Raft group: %w", id, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("topology: maintain: %w", err)
	}
	return nil
}
