package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// waitCurrent waits until kv's bucket has exactly the given replicas, all
// current.
func waitCurrent(t testing.TB, kv *KV, peers ...string) {
	t.Helper()
	slices.Sort(peers)
	var last KVStatus
	deadline := time.Now().Add(waitTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := kv.Status(ctx)
		cancel()
		if err == nil && slices.Equal(st.Peers, peers) && slices.Equal(st.Current, peers) {
			return
		}
		last = st
		if time.Now().After(deadline) {
			t.Fatalf("bucket %s: replicas %v not all current: last status %+v, err %v", kv.Bucket(), peers, last, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustKV(t testing.TB, b *Bus, bucket string, replicas int) *KV {
	t.Helper()
	kv, err := b.KV(bucket, replicas)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// watchLog records what a Watch delivers.
type watchLog struct {
	mu      sync.Mutex
	entries []Entry
	done    chan error
}

// startWatch runs kv.Watch(pattern) until the test ends or stop is called.
func startWatch(t testing.TB, kv *KV, pattern string) (w *watchLog, stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	w = &watchLog{done: make(chan error, 1)}
	go func() {
		w.done <- kv.Watch(ctx, pattern, func(e Entry) {
			w.mu.Lock()
			w.entries = append(w.entries, e)
			w.mu.Unlock()
		})
	}()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-w.done:
			case <-time.After(waitTimeout):
				err = errors.New("Watch did not return after its context ended")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return w, stop
}

func (w *watchLog) snapshot() []Entry {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.entries)
}

// waitRevision waits until the watch has delivered revision rev.
func (w *watchLog) waitRevision(t testing.TB, rev uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("the watch delivers revision %d", rev), func() bool {
		es := w.snapshot()
		return len(es) > 0 && es[len(es)-1].Revision >= rev
	})
}

// checkOrder fails the test unless revisions strictly increase.
func checkOrder(t testing.TB, es []Entry) {
	t.Helper()
	for i := 1; i < len(es); i++ {
		if es[i].Revision <= es[i-1].Revision {
			t.Fatalf("watch delivered revision %d after %d: %+v", es[i].Revision, es[i-1].Revision, es)
		}
	}
}

func entryString(es []Entry) string {
	var b strings.Builder
	for _, e := range es {
		if e.Deleted {
			fmt.Fprintf(&b, "%d:%s=DEL ", e.Revision, e.Key)
		} else {
			fmt.Fprintf(&b, "%d:%s=%s ", e.Revision, e.Key, e.Value)
		}
	}
	return strings.TrimSpace(b.String())
}

func TestKVArguments(t *testing.T) {
	b := start(t, jsConfig(t, "n1"))
	for _, tc := range []struct {
		bucket   string
		replicas int
	}{{"a.b", 1}, {"", 1}, {"ring", 0}, {"ring", 6}} {
		if _, err := b.KV(tc.bucket, tc.replicas); err == nil {
			t.Errorf("KV(%q, %d) succeeded", tc.bucket, tc.replicas)
		}
	}
	kv := mustKV(t, b, "ring", 1)
	ctx := tctx(t, waitTimeout)
	for _, key := range []string{"", "a..b", ".a", "a.", "a*", "a.>", "a b"} {
		if _, err := kv.Put(ctx, key, nil); err == nil || errors.Is(err, ErrUnavailable) {
			t.Errorf("Put(%q): %v, want an invalid key error", key, err)
		}
	}
	for _, p := range []string{"a..b", "a.>.b", "a b"} {
		if err := kv.Watch(ctx, p, func(Entry) {}); err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Watch(%q): %v, want an invalid pattern error", p, err)
		}
	}
}

func TestClassify(t *testing.T) {
	api := func(status, code int) error {
		return fmt.Errorf("nats: %w", &jetstream.APIError{Code: status, ErrorCode: jetstream.ErrorCode(code), Description: "x"})
	}
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"key not found", jetstream.ErrKeyNotFound, ErrKeyNotFound},
		{"message not found", jetstream.ErrMsgNotFound, ErrKeyNotFound},
		{"wrong last sequence", api(400, 10071), ErrRevisionMismatch},
		{"wrong last sequence, replicated", api(400, 10164), ErrRevisionMismatch},
		{"key exists", fmt.Errorf("x: %w", jetstream.ErrKeyExists), ErrRevisionMismatch},
		{"temporarily unavailable", api(503, 10008), ErrUnavailable},
		{"insufficient resources", api(503, 10023), ErrUnavailable},
		{"no peers for placement", api(400, 10005), ErrUnavailable},
		{"not leader", api(500, 10009), ErrUnavailable},
		{"stream offline", api(500, 10118), ErrUnavailable},
		{"member change in flight", api(503, 10202), ErrUnavailable},
		{"duplicate in flight", api(409, 10158), ErrUnavailable},
		{"deadline", context.DeadlineExceeded, ErrUnavailable},
		{"timeout", nats.ErrTimeout, ErrUnavailable},
		{"no responders", nats.ErrNoResponders, ErrUnavailable},
		{"no stream response", jetstream.ErrNoStreamResponse, ErrUnavailable},
		{"closed", nats.ErrConnectionClosed, ErrClosed},
		{"canceled", context.Canceled, nil},
		{"bad request", api(400, 10003), nil},
		{"other", errors.New("x"), nil},
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("%s: classify(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// TestKVThreeServers checks compare-and-set, reads across nodes, Keys, and
// a Watch across a stream-leader change (the leader's server shut down).
func TestKVThreeServers(t *testing.T) {
	t0 := time.Now()
	buses := startCluster(t, 3, withJetStream(t))
	ctx := tctx(t, 2*waitTimeout)
	kvs := make([]*KV, len(buses))
	for i, b := range buses {
		kvs[i] = mustKV(t, b, "test", 3)
	}

	// The first write waits for the meta leader and creates the bucket.
	rev1, err := kvs[0].Create(ctx, "ring", []byte("v1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bucket created and first key written %v after start", time.Since(t0))

	if _, err := kvs[1].Create(ctx, "ring", []byte("x")); !errors.Is(err, ErrRevisionMismatch) {
		t.Errorf("Create of an existing key: %v, want ErrRevisionMismatch", err)
	}
	rev2, err := kvs[1].Update(ctx, "ring", []byte("v2"), rev1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kvs[2].Update(ctx, "ring", []byte("x"), rev1); !errors.Is(err, ErrRevisionMismatch) {
		t.Errorf("Update with a stale revision: %v, want ErrRevisionMismatch", err)
	}
	if _, err := kvs[2].Update(ctx, "nothing", []byte("x"), 1); !errors.Is(err, ErrRevisionMismatch) {
		t.Errorf("Update of a missing key: %v, want ErrRevisionMismatch", err)
	}
	// What write's retries rely on: a message sent again with the same ID
	// and the same expected revision, after the first was stored, is
	// acknowledged with the first one's revision, not refused as a
	// revision mismatch (the JetStream duplicate check comes first).
	msg := &nats.Msg{Subject: "$KV.test.dedup", Data: []byte("x")}
	var acks []*jetstream.PubAck
	for range 2 {
		ack, err := buses[0].js.PublishMsg(ctx, msg, jetstream.WithMsgID("dedup-1"), jetstream.WithExpectLastSequencePerSubject(0))
		if err != nil {
			t.Fatalf("publish with a message ID: %v", err)
		}
		acks = append(acks, ack)
	}
	if acks[0].Duplicate || !acks[1].Duplicate || acks[1].Sequence != acks[0].Sequence {
		t.Errorf("resent message: acks %+v, %+v; want the second a duplicate of the first", acks[0], acks[1])
	}
	if err := kvs[0].Delete(ctx, "dedup"); err != nil {
		t.Fatal(err)
	}

	// Every node reads the last acknowledged write.
	for _, kv := range kvs {
		v, rev, err := kv.Get(ctx, "ring")
		if err != nil || string(v) != "v2" || rev != rev2 {
			t.Errorf("%s: Get = %q, %d, %v; want v2, %d", kv.b.NodeID(), v, rev, err, rev2)
		}
	}
	if _, _, err := kvs[0].Get(ctx, "nothing"); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("Get of a missing key: %v, want ErrKeyNotFound", err)
	}

	// Delete, then Create again; the delete's revision is the key's.
	if _, err := kvs[0].Put(ctx, "gone", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := kvs[0].Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := kvs[1].Get(ctx, "gone"); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("Get of a deleted key: %v, want ErrKeyNotFound", err)
	}
	if err := kvs[1].Delete(ctx, "never"); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
	if _, err := kvs[1].Create(ctx, "gone", []byte("back")); err != nil {
		t.Errorf("Create of a deleted key: %v", err)
	}

	// Keys.
	var progressRevs []uint64
	for _, k := range []string{"progress.n1", "progress.n2", "progress.n3"} {
		rev, err := kvs[2].Put(ctx, k, []byte("0"))
		if err != nil {
			t.Fatal(err)
		}
		progressRevs = append(progressRevs, rev)
	}
	if err := kvs[2].Delete(ctx, "progress.n3"); err != nil {
		t.Fatal(err)
	}
	if got, err := kvs[0].Keys(ctx, "progress.>"); err != nil || !slices.Equal(got, []string{"progress.n1", "progress.n2"}) {
		t.Errorf("Keys(progress.>) = %v, %v", got, err)
	}
	if got, err := kvs[0].Keys(ctx, ""); err != nil || !slices.Equal(got, []string{"gone", "progress.n1", "progress.n2", "ring"}) {
		t.Errorf("Keys() = %v, %v", got, err)
	}
	if got, err := kvs[0].Keys(ctx, "none.>"); err != nil || len(got) != 0 {
		t.Errorf("Keys(none.>) = %v, %v; want none", got, err)
	}
	if other := mustKV(t, buses[0], "other", 1); true {
		if got, err := other.Keys(ctx, ""); err != nil || len(got) != 0 {
			t.Errorf("Keys of a bucket that does not exist = %v, %v", got, err)
		}
		if _, _, err := other.Get(ctx, "x"); !errors.Is(err, ErrKeyNotFound) {
			t.Errorf("Get in a bucket that does not exist: %v, want ErrKeyNotFound", err)
		}
		if st, err := other.Status(ctx); err != nil || st.Exists {
			t.Errorf("Status of a bucket that does not exist: %+v, %v", st, err)
		}
	}

	// Watch "progress.>" on n1. The watch's consumer lives on one server
	// (picked at random); move the stream's leader there and shut that
	// server down midway through the updates, so that the watch loses its
	// consumer and the stream its leader at once.
	// The watch reads from a replica: let all of them catch up first, so
	// that its first values are the ones written above.
	waitCurrent(t, kvs[0], "n1", "n2", "n3")
	watcher := 0
	w, stop, host := watchNotOn(t, kvs[watcher], "progress.>", progressRevs[1])
	// The current values; n3 is deleted and not reported.
	if got, want := entryString(w.snapshot()), fmt.Sprintf("%d:progress.n1=0 %d:progress.n2=0", progressRevs[0], progressRevs[1]); got != want {
		t.Fatalf("watch delivered %q, want %q", got, want)
	}
	victim, writer := -1, -1
	for i, b := range buses {
		switch {
		case b.NodeID() == host:
			victim = i
		case i != watcher:
			writer = i
		}
	}
	moveStreamLeader(t, buses[writer], kvs[writer], host)
	t.Logf("watching on %s, consumer and stream leader on %s, writing on %s", buses[watcher].NodeID(), host, buses[writer].NodeID())
	last, err := kvs[writer].Put(ctx, "progress.n1", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	w.waitRevision(t, last)
	es := w.snapshot()
	if len(es) != 3 || es[2].Revision != last || string(es[2].Value) != "1" {
		t.Fatalf("watch delivered %q, want the update at %d after the current values", entryString(es), last)
	}
	const n = 20
	var revs []uint64
	for i := 2; i <= n; i++ {
		if i == n/2 {
			if err := buses[victim].Close(); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s closed", host)
		}
		t1 := time.Now()
		rev, err := kvs[writer].Update(ctx, "progress.n1", fmt.Appendf(nil, "%d", i), last)
		if err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
		if d := time.Since(t1); d > 500*time.Millisecond {
			t.Logf("update %d took %v", i, d)
		}
		revs = append(revs, rev)
		last = rev
		if i == n/2+1 {
			// Delete a key and create it again while the watch recovers.
			if err := kvs[writer].Delete(ctx, "progress.n2"); err != nil {
				t.Fatal(err)
			}
		}
	}
	t1 := time.Now()
	w.waitRevision(t, last)
	t.Logf("watch caught up %v after the last update", time.Since(t1))
	if h := consumerHost(t, buses[writer]); h == "" || h == host {
		t.Errorf("watch consumer on %q after %s closed", h, host)
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Watch returned %v, want context.Canceled", err)
	}
	es = w.snapshot()
	checkOrder(t, es)
	t.Logf("watch delivered %s", entryString(es))
	// Every delivered value of progress.n1 is the one written at that
	// revision, and the last one is there.
	for _, e := range es[3:] {
		if e.Key == "progress.n2" {
			if !e.Deleted {
				t.Errorf("progress.n2 at %d: %+v, want the delete", e.Revision, e)
			}
			continue
		}
		i := slices.Index(revs, e.Revision)
		if i < 0 || string(e.Value) != fmt.Sprint(i+2) {
			t.Errorf("entry %+v was not written", e)
		}
	}
	if got := es[len(es)-1]; got.Revision != last || string(got.Value) != fmt.Sprint(n) {
		t.Errorf("last entry %+v, want revision %d value %d", got, last, n)
	}
}

// consumerHost returns the server that holds the one consumer of bucket
// "test" ("" if there is none or several).
func consumerHost(t testing.TB, b *Bus) string {
	t.Helper()
	ctx := tctx(t, waitTimeout)
	js, err := jetstream.New(b.Conn())
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, "KV_test")
	if err != nil {
		t.Fatal(err)
	}
	var hosts []string
	l := stream.ListConsumers(ctx)
	for ci := range l.Info() {
		if ci.Cluster != nil {
			hosts = append(hosts, ci.Cluster.Leader)
		}
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 1 {
		return ""
	}
	return hosts[0]
}

// watchNotOn starts a watch on kv and restarts it until its consumer is
// on another server than kv's own (placement is random) and it has
// delivered revision rev. It returns the consumer's server.
func watchNotOn(t testing.TB, kv *KV, pattern string, rev uint64) (*watchLog, func() error, string) {
	t.Helper()
	for range 30 {
		w, stop := startWatch(t, kv, pattern)
		w.waitRevision(t, rev)
		if host := consumerHost(t, kv.b); host != "" && host != kv.b.NodeID() {
			return w, stop, host
		}
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Watch returned %v", err)
		}
		// Its consumer is deleted on the way out.
		waitFor(t, "the watch's consumer is gone", func() bool { return consumerHost(t, kv.b) == "" })
	}
	t.Fatal("the watch's consumer was on its own server 30 times")
	return nil, nil, ""
}

// moveStreamLeader makes server the leader of kv's stream.
func moveStreamLeader(t testing.TB, b *Bus, kv *KV, server string) {
	t.Helper()
	waitFor(t, "the stream leader is "+server, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := kv.Status(ctx)
		if err != nil || st.Leader == server {
			return err == nil
		}
		req := fmt.Sprintf(`{"placement":{"preferred":%q}}`, server)
		_, _ = b.Conn().RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN.KV_test", []byte(req))
		time.Sleep(100 * time.Millisecond)
		return false
	})
}

// TestKVLoneServerThenJoin starts one server: its bucket is unavailable
// (on a first start JetStream waits for a second server) until a second
// server joins. A third joins, the bucket grows from 1 to 3 replicas, and
// a server restarted on its JetStream directory reads the bucket again.
func TestKVLoneServerThenJoin(t *testing.T) {
	t0 := time.Now()
	n1 := start(t, jsConfig(t, "n1"))
	kv1 := mustKV(t, n1, "test", 1)
	// A watch started before JetStream and the bucket exist.
	w, stop := startWatch(t, kv1, "ring")

	for _, op := range []struct {
		name string
		do   func(context.Context) error
	}{
		{"Put", func(ctx context.Context) error { _, err := kv1.Put(ctx, "ring", []byte("x")); return err }},
		{"Get", func(ctx context.Context) error { _, _, err := kv1.Get(ctx, "ring"); return err }},
		{"Keys", func(ctx context.Context) error { _, err := kv1.Keys(ctx, ""); return err }},
		{"Status", func(ctx context.Context) error { _, err := kv1.Status(ctx); return err }},
		{"RemovePeer", func(ctx context.Context) error { return n1.RemovePeer(ctx, "n9") }},
	} {
		const deadline = 500 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		t1 := time.Now()
		err := op.do(ctx)
		took := time.Since(t1)
		cancel()
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("lone server: %s = %v, want ErrUnavailable", op.name, err)
		}
		if took < deadline || took > deadline+time.Second {
			t.Errorf("lone server: %s failed after %v with a %v deadline", op.name, took, deadline)
		}
	}
	if g, err := n1.MetaGroup(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("lone server: meta group %+v, %v; want ErrUnavailable (JetStream waits for a route)", g, err)
	}

	cfg := testConfig(t, "n2")
	cfg.JetStreamDir = t.TempDir()
	cfg.Seeds = []string{n1.ClusterAddr()}
	t2 := time.Now()
	n2 := start(t, cfg)
	rev, err := kv1.Put(tctx(t, waitTimeout), "ring", []byte("v1"))
	if err != nil {
		t.Fatalf("after a second server joined: %v", err)
	}
	t.Logf("lone server started %v before the second; the first write succeeded %v after the second started",
		t2.Sub(t0).Round(time.Millisecond), time.Since(t2).Round(time.Millisecond))
	// The watch, started before there was a meta leader or a bucket,
	// delivers it.
	w.waitRevision(t, rev)
	t.Logf("the watch delivered it %v after the second server started", time.Since(t2).Round(time.Millisecond))
	waitMeta(t, []*Bus{n1, n2}, "n1", "n2")

	// A third server; the bucket grows to three replicas.
	cfg = testConfig(t, "n3")
	cfg.JetStreamDir = t.TempDir()
	cfg.Seeds = []string{n1.ClusterAddr()}
	n3 := start(t, cfg)
	buses := []*Bus{n1, n2, n3}
	waitMeta(t, buses, "n1", "n2", "n3")
	ctx := tctx(t, 2*waitTimeout)
	if n, err := kv1.Replicas(ctx); err != nil || n != 1 {
		t.Fatalf("Replicas() = %d, %v; want 1", n, err)
	}
	for _, n := range []int{2, 3} {
		t3 := time.Now()
		if err := kv1.SetReplicas(ctx, n); err != nil {
			t.Fatalf("SetReplicas(%d): %v", n, err)
		}
		if got, err := kv1.Replicas(ctx); err != nil || got != n {
			t.Fatalf("Replicas() = %d, %v after SetReplicas(%d)", got, err, n)
		}
		if n == 3 {
			waitCurrent(t, kv1, "n1", "n2", "n3")
			t.Logf("SetReplicas(3): all replicas current after %v", time.Since(t3).Round(time.Millisecond))
		}
	}
	if err := kv1.SetReplicas(ctx, 3); err != nil {
		t.Errorf("SetReplicas to the current count: %v", err)
	}
	kv3 := mustKV(t, n3, "test", 1)
	if v, _, err := kv3.Get(ctx, "ring"); err != nil || string(v) != "v1" {
		t.Errorf("n3: Get = %q, %v", v, err)
	}

	// n2 restarts on its JetStream directory: it reads the bucket, catches
	// up with a write made while it was down, and holds its replica again.
	cfg2 := n2.cfg
	port := n2.srv.ClusterAddr().Port
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	rev, err = kv3.Update(ctx, "ring", []byte("v2"), rev)
	if err != nil {
		t.Fatalf("update with n2 down: %v", err)
	}
	cfg2.ClusterPort, cfg2.ClientPort = port, -1
	t4 := time.Now()
	n2 = start(t, cfg2)
	// Its JetStream directory holds its meta group's state: JetStream
	// starts with the server, without waiting for routes, and the account
	// gets JetStream from the configuration, with the limits a first start
	// gives it later (appJetStreamLimits).
	if !n2.srv.JetStreamEnabled() {
		t.Error("restarted n2: JetStream does not run when Start returns")
	}
	if got, want := appLimits(t, n2), appJetStreamLimits()[""]; got != want {
		t.Errorf("restarted n2: account %s: JetStream limits %+v, want %+v", AppAccount, got, want)
	}
	kv2 := mustKV(t, n2, "test", 1)
	if v, got, err := kv2.Get(ctx, "ring"); err != nil || string(v) != "v2" || got != rev {
		t.Errorf("restarted n2: Get = %q, %d, %v; want v2, %d", v, got, err, rev)
	}
	t.Logf("restarted n2 read the bucket %v after it started", time.Since(t4).Round(time.Millisecond))
	waitCurrent(t, kv2, "n1", "n2", "n3")
	t.Logf("restarted n2 current %v after it started", time.Since(t4).Round(time.Millisecond))
	w.waitRevision(t, rev)
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Watch returned %v", err)
	}
	if got := entryString(w.snapshot()); got != fmt.Sprintf("1:ring=v1 %d:ring=v2", rev) {
		t.Errorf("watch delivered %q", got)
	}
}
