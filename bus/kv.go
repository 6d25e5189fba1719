package bus

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var (
	// ErrJetStreamDisabled is wrapped by the JetStream operations of a Bus
	// started without [Config.JetStreamDir].
	ErrJetStreamDisabled = errors.New("bus: JetStream is off (no JetStreamDir)")

	// ErrKeyNotFound is wrapped when a key does not exist or was deleted,
	// or its bucket does not exist yet.
	ErrKeyNotFound = errors.New("bus: key not found")

	// ErrRevisionMismatch is wrapped when a compare-and-set lost: Create
	// found the key present, Update found a revision other than the one
	// it was given. Read the key again and decide anew.
	ErrRevisionMismatch = errors.New("bus: revision mismatch")

	// ErrUnavailable is wrapped when JetStream could not serve an
	// operation now: JetStream still starting on this server (a first
	// start waits for routes), no meta leader yet (a lone server, an
	// election), the bucket's stream has no leader or no quorum, too few
	// servers to place the replicas asked for, no responders, or the
	// operation's deadline passed. Retry later. A write that fails with it may or may not have
	// been applied (its acknowledgement may be what was lost): a
	// compare-and-set retry is safe, it fails with [ErrRevisionMismatch]
	// if the first attempt landed.
	ErrUnavailable = errors.New("bus: JetStream unavailable")
)

// Limits and timings of the key-value buckets.
const (
	// MaxReplicas is the most replicas a bucket can have (a JetStream limit).
	MaxReplicas = 5
	// DefaultKVTimeout bounds a KV operation whose context has no
	// deadline. It is long enough to wait out one leader election: when a
	// leader stops and its hand-over fails, or dies, nats-server's Raft
	// elects another after its election timeout, 4 to 9 s (usually the
	// hand-over works and it takes well under a second).
	DefaultKVTimeout = 10 * time.Second

	// kvStreamPrefix and kvSubjectPrefix are JetStream's naming of a
	// bucket's stream and subjects; `nats kv` and nats.go expect them.
	kvStreamPrefix  = "KV_"
	kvSubjectPrefix = "$KV."
	// kvOpHeader marks deletes in a bucket's stream, and its values.
	kvOpHeader = "KV-Operation"
	kvOpDel    = "DEL"
	kvOpPurge  = "PURGE"

	// attemptTimeoutMin and attemptTimeoutMax bound one attempt of an
	// operation (a request to JetStream): a request sent while there is
	// no leader is dropped, not answered, so it is retried rather than
	// waited on until ctx ends. The first attempt gets the minimum, each
	// retry twice the last, up to the maximum.
	attemptTimeoutMin = 500 * time.Millisecond
	attemptTimeoutMax = 2 * time.Second
	// retryBackoffMin and retryBackoffMax bound the wait between
	// attempts.
	retryBackoffMin = 50 * time.Millisecond
	retryBackoffMax = 2 * time.Second
	// watchHeartbeat is the idle heartbeat of a watch's consumer: two
	// missed heartbeats (the consumer's server died or lost the stream)
	// restart the watch.
	watchHeartbeat = time.Second
	// watchExpiry is how long each pull request of a watch lasts.
	watchExpiry = 10 * time.Second
	// consumerInactive is how long the server keeps a consumer of Watch
	// that nobody pulls from (one this node could not delete).
	consumerInactive = 30 * time.Second
	// consumerDeleteTimeout bounds deleting such a consumer.
	consumerDeleteTimeout = time.Second
)

// JetStream error codes (nats-server's errors.json) that mean "not now".
const (
	jsCodeClusterNoPeers       = 10005 // no suitable peers for placement
	jsCodeClusterNotLeader     = 10009 // JetStream cluster can not handle request
	jsCodeStreamOffline        = 10118
	jsCodeConsumerOffline      = 10119
	jsCodeMemberChangeInflight = 10202 // cluster member change is in progress
	jsCodeDuplicateInFlight    = 10158 // duplicate message id is in process
)

var validBucketRe = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// KV is a JetStream key-value bucket on the embedded servers: a small
// replicated map with compare-and-set on revisions (nats-server's Raft).
//
// Revisions are the sequence numbers of the bucket's stream: they grow
// with every write to any key, so a key's revision is also its place in
// the bucket's history. Only the latest revision of each key is kept.
//
// The bucket is created by the first write (Create, Update, Put,
// SetReplicas) that finds it missing; reads (Get, Keys, Watch, Replicas,
// Status) and Delete never create it. Get is served by the bucket's stream
// leader (direct reads from followers are off), so a Get on any node sees
// every write acknowledged before it began.
//
// Keys are NATS subject tokens joined by '.': letters, digits and "-/_=",
// e.g. "ring" or "progress.n1".
//
// Operations take a context; one without a deadline gets
// [DefaultKVTimeout]. While JetStream is unavailable (no meta leader, no
// stream leader, no quorum) an operation retries, each attempt bounded by
// a couple of seconds, until it succeeds or ctx ends, and then fails with
// [ErrUnavailable]. All methods are safe for concurrent use.
type KV struct {
	b        *Bus
	bucket   string
	stream   string // the bucket's stream: KV_<bucket>
	prefix   string // subject prefix of its keys: $KV.<bucket>.
	replicas int    // replicas when this handle creates the bucket

	mu     sync.Mutex
	handle jetstream.Stream // the bucket's stream; nil until an operation binds it
}

// Entry is one change of a key seen by [KV.Watch].
type Entry struct {
	// Key is the key, without the bucket.
	Key string
	// Value is the value written; nil when Deleted. It belongs to the
	// callee.
	Value []byte
	// Revision is the revision of this change.
	Revision uint64
	// Deleted reports that the key was deleted.
	Deleted bool
}

// KV returns a handle on bucket (letters, digits, '-' and '_'). It does not
// block: the bucket is looked up, and created by the first write that finds
// it missing, lazily by each operation, so a handle can be had before
// JetStream has a meta leader.
//
// replicas (1 to [MaxReplicas]) is the number of servers that hold the
// bucket when this handle creates it; a bucket that exists keeps its own
// (see [KV.SetReplicas]). It is not lowered to what the cluster can place:
// while the JetStream meta group has fewer servers online than replicas,
// the creating write retries until its context ends and fails with
// [ErrUnavailable] ("no suitable peers for placement"); it succeeds once
// enough servers have joined.
func (b *Bus) KV(bucket string, replicas int) (*KV, error) {
	if b.js == nil {
		return nil, fmt.Errorf("bus: kv %s: %w", bucket, ErrJetStreamDisabled)
	}
	if !validBucketRe.MatchString(bucket) {
		return nil, fmt.Errorf("bus: kv %q: invalid bucket name (letters, digits, '-' and '_')", bucket)
	}
	if replicas < 1 || replicas > MaxReplicas {
		return nil, fmt.Errorf("bus: kv %s: replicas %d out of range (1 to %d)", bucket, replicas, MaxReplicas)
	}
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("bus: kv %s: %w", bucket, ErrClosed)
	}
	return &KV{
		b:        b,
		bucket:   bucket,
		stream:   kvStreamPrefix + bucket,
		prefix:   kvSubjectPrefix + bucket + ".",
		replicas: replicas,
	}, nil
}

// Bucket returns the bucket's name.
func (kv *KV) Bucket() string { return kv.bucket }

// Get returns the value and revision of key. A key that does not exist, was
// deleted, or whose bucket does not exist yet gives [ErrKeyNotFound].
func (kv *KV) Get(ctx context.Context, key string) (value []byte, rev uint64, err error) {
	if err := validKey(key); err != nil {
		return nil, 0, fmt.Errorf("bus: kv %s get: %w", kv.bucket, err)
	}
	ctx, cancel := kvContext(ctx)
	defer cancel()
	var deleted bool
	err = kv.retry(ctx, func(ctx context.Context) error {
		value, rev, deleted, err = kv.last(ctx, key)
		return err
	})
	switch {
	case errors.Is(err, errNoBucket):
		return nil, 0, fmt.Errorf("%w: kv %s get %q: no bucket", ErrKeyNotFound, kv.bucket, key)
	case err != nil:
		return nil, 0, kv.fail("get", key, err)
	case deleted:
		return nil, 0, fmt.Errorf("%w: kv %s get %q: deleted at revision %d", ErrKeyNotFound, kv.bucket, key, rev)
	}
	return value, rev, nil
}

// last returns the latest message of key: its value and revision, or the
// revision of its delete marker.
func (kv *KV) last(ctx context.Context, key string) (value []byte, rev uint64, deleted bool, err error) {
	stream, err := kv.bind(ctx, false)
	if err != nil {
		return nil, 0, false, err
	}
	m, err := stream.GetLastMsgForSubject(ctx, kv.prefix+key)
	if err != nil {
		return nil, 0, false, err
	}
	if isDelete(m.Header) {
		return nil, m.Sequence, true, nil
	}
	return m.Data, m.Sequence, false, nil
}

// Create sets key to value if the key does not exist (or was deleted) and
// returns the new revision; if it exists, it fails with
// [ErrRevisionMismatch].
func (kv *KV) Create(ctx context.Context, key string, value []byte) (rev uint64, err error) {
	if err := validKey(key); err != nil {
		return 0, fmt.Errorf("bus: kv %s create: %w", kv.bucket, err)
	}
	ctx, cancel := kvContext(ctx)
	defer cancel()
	rev, err = kv.write(ctx, key, value, false, expect(0))
	if classify(err) == ErrRevisionMismatch {
		// A deleted key can be created again: its latest revision is its
		// delete marker's.
		var (
			last    uint64
			deleted bool
		)
		gerr := kv.retry(ctx, func(ctx context.Context) error {
			var lerr error
			_, last, deleted, lerr = kv.last(ctx, key)
			return lerr
		})
		if gerr == nil && deleted {
			rev, err = kv.write(ctx, key, value, false, expect(last))
		}
	}
	if err != nil {
		return 0, kv.fail("create", key, err)
	}
	return rev, nil
}

// Update sets key to value if rev is the key's latest revision and returns
// the new revision; otherwise it fails with [ErrRevisionMismatch]. The
// latest revision of a deleted key is that of its delete (as [KV.Watch]
// reports it); rev 0 means the key was never written.
func (kv *KV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if err := validKey(key); err != nil {
		return 0, fmt.Errorf("bus: kv %s update: %w", kv.bucket, err)
	}
	ctx, cancel := kvContext(ctx)
	defer cancel()
	rev, err := kv.write(ctx, key, value, false, expect(rev))
	if err != nil {
		return 0, kv.fail("update", key, err)
	}
	return rev, nil
}

// Put sets key to value whatever its revision and returns the new revision.
func (kv *KV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	if err := validKey(key); err != nil {
		return 0, fmt.Errorf("bus: kv %s put: %w", kv.bucket, err)
	}
	ctx, cancel := kvContext(ctx)
	defer cancel()
	rev, err := kv.write(ctx, key, value, false, nil)
	if err != nil {
		return 0, kv.fail("put", key, err)
	}
	return rev, nil
}

// Delete deletes key: it writes a delete marker, which watchers see.
// Deleting a key that does not exist is not an error; the bucket is not
// created for it.
func (kv *KV) Delete(ctx context.Context, key string) error {
	if err := validKey(key); err != nil {
		return fmt.Errorf("bus: kv %s delete: %w", kv.bucket, err)
	}
	ctx, cancel := kvContext(ctx)
	defer cancel()
	_, err := kv.write(ctx, key, nil, true, nil)
	if errors.Is(err, errNoBucket) {
		return nil
	}
	if err != nil {
		return kv.fail("delete", key, err)
	}
	return nil
}

// expect returns a pointer to rev, the revision a write expects.
func expect(rev uint64) *uint64 { return &rev }

// write publishes value (or a delete marker) for key, expecting the key's
// latest revision to be *want when want is not nil, and returns the new
// revision. It retries while JetStream is unavailable, under one message
// ID: JetStream stores a retried message once and acknowledges the retry
// with the first one's revision, so a write whose acknowledgement was lost
// is neither applied twice nor reported as a revision mismatch. A delete
// does not create the bucket.
func (kv *KV) write(ctx context.Context, key string, value []byte, del bool, want *uint64) (uint64, error) {
	msg := &nats.Msg{Subject: kv.prefix + key, Data: value, Header: nats.Header{}}
	if del {
		msg.Header.Set(kvOpHeader, kvOpDel)
	}
	opts := []jetstream.PublishOpt{jetstream.WithMsgID(rand.Text())}
	if want != nil {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(*want))
	}
	var rev uint64
	err := kv.retry(ctx, func(ctx context.Context) error {
		if _, err := kv.bind(ctx, !del); err != nil {
			return err
		}
		ack, err := kv.b.js.PublishMsg(ctx, msg, opts...)
		if err != nil {
			return err
		}
		rev = ack.Sequence
		return nil
	})
	return rev, err
}

// Keys returns the sorted keys matching pattern, a NATS subject-style
// pattern over keys ("ring", "progress.*", "progress.>"; "" or ">" for all
// keys). Deleted keys are left out. No keys, or no bucket, is an empty
// result, not an error. Each key is checked at the stream leader (one
// request per key: meant for small buckets), so every write acknowledged
// before Keys began is seen; keys written or deleted while it runs may or
// may not be.
func (kv *KV) Keys(ctx context.Context, pattern string) ([]string, error) {
	if pattern == "" {
		pattern = ">"
	}
	if err := validPattern(pattern); err != nil {
		return nil, fmt.Errorf("bus: kv %s keys: %w", kv.bucket, err)
	}
	ctx, cancel := kvContext(ctx)
	defer cancel()
	var keys []string
	err := kv.retry(ctx, func(ctx context.Context) error {
		var err error
		keys, err = kv.keys(ctx, pattern)
		return err
	})
	if errors.Is(err, errNoBucket) {
		return nil, nil
	}
	if err != nil {
		return nil, kv.fail("keys", pattern, err)
	}
	return keys, nil
}

// keys lists the keys matching pattern at the stream leader: the subjects
// that have a message, less those whose last message is a delete marker.
// (A consumer would do it in one request, but it runs on a replica picked
// at random, which may not have applied the latest writes yet.)
func (kv *KV) keys(ctx context.Context, pattern string) ([]string, error) {
	stream, err := kv.bind(ctx, false)
	if err != nil {
		return nil, err
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(kv.prefix+pattern))
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		m, err := stream.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // purged meanwhile
		}
		if err != nil {
			return nil, err
		}
		if !isDelete(m.Header) {
			keys = append(keys, strings.TrimPrefix(subj, kv.prefix))
		}
	}
	slices.Sort(keys)
	return keys, nil
}

// Watch calls fn with the current value of every key matching pattern (a
// NATS subject-style pattern over keys, e.g. "ring" or "progress.>"), then
// with every later change in revision order, until ctx ends; it returns
// only when ctx ends (with ctx's error), when the Bus is closed
// ([ErrClosed]), when JetStream failed to start on this server, or at once
// for an invalid pattern.
//
// A delete is reported (an entry with Deleted set) only for a key fn was
// given a value for: keys deleted before the watch started are not
// reported. fn runs on Watch's goroutine, one call at a time.
//
// The watch reads from a consumer on one of the bucket's replicas, picked
// by JetStream, which may lag the stream leader by a few milliseconds: a
// write acknowledged just before Watch began may arrive as a change right
// after the first values rather than among them.
//
// Watch survives a meta-leader change, a stream-leader change, the bucket
// not existing yet (Watch does not create it) and JetStream not yet being
// available (on a first start it waits for JetStream to start on this
// server): it restarts with backoff (at most 2 s apart), resuming after
// the last revision it delivered, and never delivers a revision twice or
// out of order. A key changed several times while the watch was restarting
// shows only its latest revision (a bucket keeps one revision per key).
// A stream-leader change is noticed within about two seconds (two missed
// heartbeats) when it takes the watch's consumer with it.
func (kv *KV) Watch(ctx context.Context, pattern string, fn func(Entry)) error {
	if err := validPattern(pattern); err != nil {
		return fmt.Errorf("bus: kv %s watch: %w", kv.bucket, err)
	}
	w := &watch{kv: kv, filter: kv.prefix + pattern, fn: fn, live: make(map[string]struct{})}
	if err := kv.b.waitJetStream(ctx); err != nil {
		if errors.Is(err, ErrClosed) {
			return fmt.Errorf("%w: kv %s watch %q", ErrClosed, kv.bucket, pattern)
		}
		return fmt.Errorf("bus: kv %s watch %q: %w", kv.bucket, pattern, err)
	}
	backoff := retryBackoffMin
	for {
		progressed, err := w.run(ctx)
		if ctx.Err() != nil {
			return fmt.Errorf("bus: kv %s watch %q: %w", kv.bucket, pattern, ctx.Err())
		}
		if kv.b.nc.IsClosed() {
			return fmt.Errorf("%w: kv %s watch %q: %w", ErrClosed, kv.bucket, pattern, err)
		}
		if isGone(err) {
			kv.unbind()
		}
		if progressed {
			backoff = retryBackoffMin
		}
		kv.b.log.Debug("kv watch restarting", slog.String("bucket", kv.bucket), slog.String("pattern", pattern),
			slog.Uint64("after_revision", w.last), slog.Duration("backoff", backoff), slog.Any("err", err))
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("bus: kv %s watch %q: %w", kv.bucket, pattern, ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, retryBackoffMax)
	}
}

// watch is the state of one Watch across restarts.
type watch struct {
	kv     *KV
	filter string
	fn     func(Entry)
	// last is the revision last delivered (0: none yet).
	last uint64
	// live are the keys whose last delivered entry is a value: a delete of
	// any other key is no news to fn.
	live map[string]struct{}
}

// run creates a consumer that resumes after w.last and delivers from it
// until an error or the end of ctx. It reports whether it delivered
// anything.
func (w *watch) run(ctx context.Context) (progressed bool, err error) {
	kv := w.kv
	actx, cancel := context.WithTimeout(ctx, attemptTimeoutMax)
	stream, err := kv.bind(actx, false)
	cancel()
	if err != nil {
		return false, err
	}
	cfg := jetstream.ConsumerConfig{
		FilterSubject:     w.filter,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: consumerInactive,
	}
	if w.last == 0 {
		// Nothing delivered yet: start (again) from the current state.
		cfg.DeliverPolicy = jetstream.DeliverLastPerSubjectPolicy
	} else {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = w.last + 1
	}
	actx, cancel = context.WithTimeout(ctx, attemptTimeoutMax)
	cons, err := stream.CreateConsumer(actx, cfg)
	cancel()
	if err != nil {
		return false, err
	}
	defer kv.deleteConsumer(cons.CachedInfo().Name)
	iter, err := cons.Messages(
		jetstream.PullHeartbeat(watchHeartbeat),
		jetstream.PullExpiry(watchExpiry),
		jetstream.WithMessagesErrOnMissingHeartbeat(true))
	if err != nil {
		return false, err
	}
	defer iter.Stop()
	var delivered uint64 // consumer sequence of the last message
	for {
		msg, err := iter.Next(jetstream.NextContext(ctx))
		if err != nil {
			return progressed, err
		}
		md, err := msg.Metadata()
		if err != nil {
			return progressed, err
		}
		if md.Sequence.Consumer != delivered+1 {
			return progressed, fmt.Errorf("consumer skipped from %d to %d", delivered, md.Sequence.Consumer)
		}
		delivered = md.Sequence.Consumer
		rev := md.Sequence.Stream
		if rev <= w.last {
			continue
		}
		w.last = rev
		progressed = true
		e := Entry{Key: strings.TrimPrefix(msg.Subject(), kv.prefix), Revision: rev, Deleted: isDelete(msg.Headers())}
		if e.Deleted {
			if _, ok := w.live[e.Key]; !ok {
				continue
			}
			delete(w.live, e.Key)
		} else {
			e.Value = msg.Data()
			w.live[e.Key] = struct{}{}
		}
		w.fn(e)
	}
}

// deleteConsumer deletes a consumer of the bucket's stream, best effort:
// one left behind is deleted by the server when inactive.
func (kv *KV) deleteConsumer(name string) {
	if kv.b.nc.IsClosed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), consumerDeleteTimeout)
	defer cancel()
	if err := kv.b.js.DeleteConsumer(ctx, kv.stream, name); err != nil {
		kv.b.log.Debug("kv consumer not deleted", slog.String("bucket", kv.bucket), slog.String("consumer", name), slog.Any("err", err))
	}
}

// SetReplicas sets the number of servers holding the bucket (1 to
// [MaxReplicas]), creating the bucket with n replicas if it does not exist.
// It returns once the meta group has accepted the change; JetStream then
// places new replicas and catches them up in the background (growing is
// done when [KV.Status] lists n current peers). Asking for more replicas
// than the meta group has servers fails with [ErrUnavailable] ("no
// suitable peers for placement") when ctx ends.
func (kv *KV) SetReplicas(ctx context.Context, n int) error {
	if n < 1 || n > MaxReplicas {
		return fmt.Errorf("bus: kv %s set replicas: %d out of range (1 to %d)", kv.bucket, n, MaxReplicas)
	}
	kv.mu.Lock()
	kv.replicas = n
	kv.mu.Unlock()
	ctx, cancel := kvContext(ctx)
	defer cancel()
	err := kv.retry(ctx, func(ctx context.Context) error {
		if _, err := kv.bind(ctx, true); err != nil {
			return err
		}
		stream, err := kv.b.js.Stream(ctx, kv.stream)
		if err != nil {
			return err
		}
		cfg := stream.CachedInfo().Config
		if cfg.Replicas == n {
			return nil
		}
		cfg.Replicas = n
		_, err = kv.b.js.UpdateStream(ctx, cfg)
		return err
	})
	if err != nil {
		return kv.fail(fmt.Sprintf("set replicas %d", n), "", err)
	}
	return nil
}

// Replicas returns the bucket's configured number of replicas; 0 when the
// bucket does not exist yet.
func (kv *KV) Replicas(ctx context.Context) (int, error) {
	st, err := kv.Status(ctx)
	if err != nil {
		return 0, err
	}
	return st.Replicas, nil
}

// KVStatus describes a bucket as its stream leader reports it.
type KVStatus struct {
	// Exists is false when the bucket has not been created yet; the other
	// fields are then zero.
	Exists bool
	// Replicas is the configured number of replicas.
	Replicas int
	// Leader is the server name (node ID) of the stream leader, "" when
	// there is none.
	Leader string
	// Peers are the servers holding a replica, leader included, sorted.
	Peers []string
	// Current are the Peers that are online and caught up with the leader
	// (the leader included), sorted.
	Current []string
	// Revision is the bucket's latest revision.
	Revision uint64
}

// Status returns the bucket's replicas, their servers and its latest
// revision.
func (kv *KV) Status(ctx context.Context) (KVStatus, error) {
	ctx, cancel := kvContext(ctx)
	defer cancel()
	var info *jetstream.StreamInfo
	err := kv.retry(ctx, func(ctx context.Context) error {
		stream, err := kv.bind(ctx, false)
		if err != nil {
			return err
		}
		info, err = stream.Info(ctx)
		return err
	})
	if errors.Is(err, errNoBucket) {
		return KVStatus{}, nil
	}
	if err != nil {
		return KVStatus{}, kv.fail("status", "", err)
	}
	st := KVStatus{Exists: true, Replicas: info.Config.Replicas, Revision: info.State.LastSeq}
	if c := info.Cluster; c != nil {
		st.Leader = c.Leader
		if c.Leader != "" {
			st.Peers = append(st.Peers, c.Leader)
			st.Current = append(st.Current, c.Leader)
		}
		for _, p := range c.Replicas {
			st.Peers = append(st.Peers, p.Name)
			if p.Current && !p.Offline {
				st.Current = append(st.Current, p.Name)
			}
		}
	}
	slices.Sort(st.Peers)
	slices.Sort(st.Current)
	return st, nil
}

// errNoBucket is returned by bind when the bucket does not exist and is
// not to be created.
var errNoBucket = errors.New("bucket does not exist")

// bind returns the bucket's stream, looking it up and, when create is set,
// creating it if it does not exist (else it fails with errNoBucket).
func (kv *KV) bind(ctx context.Context, create bool) (jetstream.Stream, error) {
	kv.mu.Lock()
	stream, replicas := kv.handle, kv.replicas
	kv.mu.Unlock()
	if stream != nil {
		return stream, nil
	}
	stream, err := kv.b.js.Stream(ctx, kv.stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if !create {
			return nil, errNoBucket
		}
		// Two nodes creating it at once: the same config is accepted
		// twice; a different one fails for the second, which then binds
		// to the first's.
		stream, err = kv.b.js.CreateStream(ctx, kv.streamConfig(replicas))
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			stream, err = kv.b.js.Stream(ctx, kv.stream)
		} else if err == nil {
			kv.b.log.Info("kv bucket created", slog.String("bucket", kv.bucket), slog.Int("replicas", replicas))
		}
	}
	if err != nil {
		return nil, err
	}
	if cfg := stream.CachedInfo().Config; cfg.MaxMsgsPerSubject < 1 || len(cfg.Subjects) != 1 || cfg.Subjects[0] != kv.prefix+">" {
		return nil, fmt.Errorf("stream %s is not a key-value bucket", kv.stream)
	}
	kv.mu.Lock()
	kv.handle = stream
	kv.mu.Unlock()
	return stream, nil
}

// unbind forgets the bound stream, so that the next operation looks the
// bucket up again (and recreates it if it was deleted).
func (kv *KV) unbind() {
	kv.mu.Lock()
	kv.handle = nil
	kv.mu.Unlock()
}

// isGone reports whether err means that the bound stream may be gone.
func isGone(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

// retry runs attempt like the package-level retry, once JetStream runs on
// this server (see [Bus.waitJetStream]), and forgets the bound stream after
// an error that means it may be gone.
func (kv *KV) retry(ctx context.Context, attempt func(context.Context) error) error {
	if err := kv.b.waitJetStream(ctx); err != nil {
		return err
	}
	return retry(ctx, func(ctx context.Context) error {
		err := attempt(ctx)
		if isGone(err) {
			kv.unbind()
		}
		return err
	})
}

// retry runs attempt, each time with a part of ctx (attemptTimeoutMin,
// doubling up to attemptTimeoutMax), until it succeeds, fails with an error
// that does not mean [ErrUnavailable], or ctx ends; it returns the last
// attempt's error.
func retry(ctx context.Context, attempt func(context.Context) error) error {
	timeout, backoff := attemptTimeoutMin, retryBackoffMin
	for {
		actx, cancel := context.WithTimeout(ctx, timeout)
		err := attempt(actx)
		cancel()
		if err == nil || ctx.Err() != nil || classify(err) != ErrUnavailable {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		timeout = min(2*timeout, attemptTimeoutMax)
		backoff = min(2*backoff, retryBackoffMax)
	}
}

// streamConfig is the stream of a bucket as nats.go's CreateKeyValue makes
// it (so that `nats kv` and nats.go work on it), with one revision per key
// and direct gets off: reads go to the stream leader, which has applied
// every acknowledged write, instead of any replica, which may lag.
func (kv *KV) streamConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              kv.stream,
		Description:       "kvs bucket " + kv.bucket,
		Subjects:          []string{kv.prefix + ">"},
		MaxMsgsPerSubject: 1,
		MaxBytes:          -1,
		MaxMsgSize:        -1,
		MaxMsgs:           -1,
		MaxConsumers:      -1,
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		AllowRollup:       true,
		DenyDelete:        true,
		Duplicates:        2 * time.Minute,
		AllowDirect:       false,
		Discard:           jetstream.DiscardNew,
	}
}

// fail wraps err from operation op on key (or pattern) with context and,
// first, the sentinel that callers branch on.
func (kv *KV) fail(op, key string, err error) error {
	what := "kv " + kv.bucket + " " + op
	if key != "" {
		what += fmt.Sprintf(" %q", key)
	}
	if s := classify(err); s != nil {
		return fmt.Errorf("%w: %s: %w", s, what, err)
	}
	return fmt.Errorf("bus: %s: %w", what, err)
}

// classify returns the sentinel err means, or nil.
func classify(err error) error {
	var api *jetstream.APIError
	hasAPI := errors.As(err, &api)
	switch {
	case err == nil, errors.Is(err, context.Canceled), errors.Is(err, errNoBucket):
		return nil
	case errors.Is(err, jetstream.ErrKeyNotFound),
		errors.Is(err, jetstream.ErrKeyDeleted),
		errors.Is(err, jetstream.ErrMsgNotFound):
		return ErrKeyNotFound
	case errors.Is(err, jetstream.ErrKeyExists),
		errors.Is(err, jetstream.ErrKeyRevisionMismatch),
		hasAPI && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant):
		return ErrRevisionMismatch
	case errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, jetstream.ErrConnectionClosed),
		errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, ErrClosed):
		return ErrClosed
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, jetstream.ErrStreamNotFound), // deleted under a bound handle: recreated on retry
		errors.Is(err, jetstream.ErrJetStreamNotEnabled),
		errors.Is(err, jetstream.ErrNoHeartbeat),
		errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionReconnecting):
		return ErrUnavailable
	case hasAPI && isUnavailableCode(api):
		return ErrUnavailable
	}
	return nil
}

// isUnavailableCode reports whether a JetStream API error means "not now":
// every 503 (JetStream temporarily unavailable, insufficient resources,
// not ready), and the codes for no leader, an offline stream or consumer,
// a membership change in flight, a retried message still in flight and too
// few servers for the replicas.
func isUnavailableCode(e *jetstream.APIError) bool {
	if e.Code == 503 {
		return true
	}
	switch e.ErrorCode {
	case jsCodeClusterNoPeers, jsCodeClusterNotLeader, jsCodeStreamOffline, jsCodeConsumerOffline,
		jsCodeMemberChangeInflight, jsCodeDuplicateInFlight:
		return true
	}
	return false
}

// isDelete reports whether a message of a bucket's stream is a delete or
// purge marker.
func isDelete(h nats.Header) bool {
	switch h.Get(kvOpHeader) {
	case kvOpDel, kvOpPurge:
		return true
	}
	return false
}

// validKey checks a key: tokens of letters, digits and "-/_=" joined by
// '.' (no wildcards).
func validKey(k string) error {
	if err := validPattern(k); err != nil {
		return err
	}
	if strings.ContainsAny(k, "*>") {
		return fmt.Errorf("key %q contains a wildcard", k)
	}
	return nil
}

// validPattern checks a key pattern: tokens of letters, digits and "-/_=",
// or "*", joined by '.', with ">" only as the last token.
func validPattern(p string) error {
	if p == "" {
		return errors.New("empty key")
	}
	toks := strings.Split(p, ".")
	for i, t := range toks {
		switch {
		case t == "":
			return fmt.Errorf("key %q has an empty token", p)
		case t == ">":
			if i != len(toks)-1 {
				return fmt.Errorf("key pattern %q has '>' before its last token", p)
			}
		case t == "*":
		default:
			for _, r := range t {
				if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-/_=", r)) {
					return fmt.Errorf("key %q: invalid character %q", p, r)
				}
			}
		}
	}
	return nil
}

// kvContext gives ctx the default KV timeout when it has no deadline.
func kvContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, DefaultKVTimeout)
}
