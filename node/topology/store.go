package topology

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// Sentinel errors of Store implementations.
var (
	// ErrNotFound means the store holds no topology: no cluster yet.
	ErrNotFound = errors.New("topology: no cluster yet")
	// ErrConflict means a compare-and-set lost: the topology changed since
	// it was read (or, for Create, one already exists).
	ErrConflict = errors.New("topology: changed concurrently")
	// ErrUnavailable means the store cannot answer now (no quorum, no
	// leader yet); retry later.
	ErrUnavailable = errors.New("topology: store unavailable")
)

// Store keeps the topology document: a replicated register with
// compare-and-set on a revision, and a watch. NewKVStore keeps it in a
// JetStream KV bucket; MemStore is the in-memory fake.
type Store interface {
	// Load returns the topology and its revision, or ErrNotFound.
	Load(ctx context.Context) (Topology, uint64, error)
	// Create stores t when no topology exists, else fails with ErrConflict.
	Create(ctx context.Context, t Topology) (rev uint64, err error)
	// Update stores t when the stored revision is still rev, else fails
	// with ErrConflict.
	Update(ctx context.Context, t Topology, rev uint64) (uint64, error)
	// Watch calls fn with the current topology, if any, then with every
	// later one in revision order, until ctx ends. A watcher that falls
	// behind may skip revisions but never sees an older one after a newer
	// one.
	Watch(ctx context.Context, fn func(Topology, uint64)) error
	// PutProgress publishes a gainer's streaming progress (last writer
	// wins, no compare-and-set).
	PutProgress(ctx context.Context, p Progress) error
	// Progress returns every gainer's last published progress.
	Progress(ctx context.Context) ([]Progress, error)
}

// Progress is a gainer's streaming progress in one change, published for
// `kvs ring`.
type Progress struct {
	// Node is the gainer; Epoch the epoch its change began at.
	Node  string `json:"node"`
	Epoch uint64 `json:"epoch"`
	// Transfers and Done count the streams the gainer runs and has
	// finished (one per source).
	Transfers int `json:"transfers"`
	Done      int `json:"done"`
	// Keys and Bytes count the records received so far.
	Keys  uint64 `json:"keys"`
	Bytes uint64 `json:"bytes"`
	// UpdatedMs is when it was published, Unix milliseconds.
	UpdatedMs int64 `json:"updated_ms"`
}

// maxProposeAttempts bounds the compare-and-set retries of Propose: each
// lost race means another change landed, so this many in a row means a
// storm worth reporting rather than spinning on.
const maxProposeAttempts = 64

// Propose applies c to the stored topology with compare-and-set, re-reading
// and re-applying after every lost race, and returns the stored result. An
// error of Apply (ErrBusy, ErrTooFew, ...) is returned as it is: nothing
// changed.
func Propose(ctx context.Context, s Store, c Command) (Topology, uint64, error) {
	for range maxProposeAttempts {
		cur, rev, err := s.Load(ctx)
		switch {
		case errors.Is(err, ErrNotFound) && c.Op == OpBootstrap:
			cur, rev = Topology{}, 0
		case err != nil:
			return Topology{}, 0, err
		}
		next, err := Apply(cur, c)
		if err != nil {
			return cur, rev, err
		}
		var nrev uint64
		if rev == 0 {
			nrev, err = s.Create(ctx, next)
		} else {
			nrev, err = s.Update(ctx, next, rev)
		}
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return Topology{}, 0, err
		}
		return next, nrev, nil
	}
	return Topology{}, 0, fmt.Errorf("%w: %s of %q lost %d races in a row", ErrConflict, c.Op, c.Node, maxProposeAttempts)
}

// MemStore is an in-memory Store for tests. It stores encoded documents,
// as the real store does, and can be made unavailable.
type MemStore struct {
	mu          sync.Mutex
	doc         []byte
	rev         uint64
	changed     chan struct{} // closed and replaced on every update
	progress    map[string]Progress
	unavailable bool
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{changed: make(chan struct{}), progress: map[string]Progress{}}
}

// SetUnavailable makes every operation fail with ErrUnavailable (watchers
// stay, and see nothing new) until called with false.
func (s *MemStore) SetUnavailable(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unavailable = v
}

func (s *MemStore) check() error {
	if s.unavailable {
		return ErrUnavailable
	}
	return nil
}

// Load implements Store.
func (s *MemStore) Load(ctx context.Context) (Topology, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(); err != nil {
		return Topology{}, 0, err
	}
	if s.doc == nil {
		return Topology{}, 0, ErrNotFound
	}
	t, err := Decode(s.doc)
	return t, s.rev, err
}

// Create implements Store.
func (s *MemStore) Create(ctx context.Context, t Topology) (uint64, error) {
	return s.swap(t, 0)
}

// Update implements Store.
func (s *MemStore) Update(ctx context.Context, t Topology, rev uint64) (uint64, error) {
	if rev == 0 {
		return 0, fmt.Errorf("%w: update at revision 0", ErrConflict)
	}
	return s.swap(t, rev)
}

func (s *MemStore) swap(t Topology, rev uint64) (uint64, error) {
	b, err := t.Encode()
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(); err != nil {
		return 0, err
	}
	if s.rev != rev {
		return 0, fmt.Errorf("%w: at revision %d, not %d", ErrConflict, s.rev, rev)
	}
	s.doc, s.rev = b, s.rev+1
	close(s.changed)
	s.changed = make(chan struct{})
	return s.rev, nil
}

// Watch implements Store.
func (s *MemStore) Watch(ctx context.Context, fn func(Topology, uint64)) error {
	var seen uint64
	for {
		s.mu.Lock()
		doc, rev, changed, down := s.doc, s.rev, s.changed, s.unavailable
		s.mu.Unlock()
		if rev > seen && !down {
			t, err := Decode(doc)
			if err != nil {
				return err
			}
			seen = rev
			fn(t, rev)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// PutProgress implements Store.
func (s *MemStore) PutProgress(ctx context.Context, p Progress) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(); err != nil {
		return err
	}
	s.progress[p.Node] = p
	return nil
}

// Progress implements Store.
func (s *MemStore) Progress(ctx context.Context) ([]Progress, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(); err != nil {
		return nil, err
	}
	out := make([]Progress, 0, len(s.progress))
	for _, p := range s.progress {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Progress) int { return cmpString(a.Node, b.Node) })
	return out, nil
}

// Maintainer is a Store that needs upkeep as the topology changes: the KV
// bucket's replica count follows the members, and removed members leave
// its Raft group. One node calls Maintain after each new epoch.
type Maintainer interface {
	Maintain(ctx context.Context, t Topology) error
}

func encodeProgress(p Progress) ([]byte, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("topology: encode progress: %w", err)
	}
	return b, nil
}

func decodeProgress(b []byte) (Progress, error) {
	var p Progress
	if len(b) > 4096 {
		return p, fmt.Errorf("%w: progress of %d bytes", ErrMalformed, len(b))
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return Progress{}, fmt.Errorf("%w: progress: %w", ErrMalformed, err)
	}
	if err := ValidID(p.Node); err != nil {
		return Progress{}, fmt.Errorf("%w: progress node: %w", ErrMalformed, err)
	}
	return p, nil
}
