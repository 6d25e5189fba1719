package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// waitTimeout bounds every wait on a condition in these tests. It is far
// above what the conditions take (milliseconds to a couple of seconds), so
// it only matters when something is broken.
const waitTimeout = 15 * time.Second

// tWriter sends log lines to t.Log, shown on failure or with -v.
type tWriter struct {
	t  testing.TB
	mu sync.Mutex
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	if _, ok := t.(*testing.B); ok {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	}
	return slog.New(slog.NewTextHandler(&tWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// testConfig returns a config for a node on loopback with random ports.
func testConfig(t testing.TB, id string) Config {
	return Config{
		NodeID:      id,
		Cluster:     "test",
		Host:        "127.0.0.1",
		ClientPort:  -1,
		ClusterPort: -1,
		Logger:      testLogger(t),
	}
}

// start starts a bus and closes it when the test ends.
func start(t testing.TB, cfg Config) *Bus {
	t.Helper()
	b, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start(%s): %v", cfg.NodeID, err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close(%s): %v", cfg.NodeID, err)
		}
	})
	return b
}

// startCluster starts n nodes that all list every node (themselves
// included) as seeds, as a production config does, and waits for the full
// mesh. mod, if not nil, adjusts each config.
//
// Each route port is free when picked, but another test binary may bind it
// before the node's server does: the cluster then starts over on new
// ports, up to three times.
func startCluster(t testing.TB, n int, mod func(*Config)) []*Bus {
	t.Helper()
	for attempt := 1; ; attempt++ {
		buses, err := tryStartCluster(t, n, mod)
		if err == nil {
			for _, b := range buses {
				t.Cleanup(func() {
					if err := b.Close(); err != nil {
						t.Errorf("Close(%s): %v", b.NodeID(), err)
					}
				})
			}
			for _, b := range buses {
				waitRoutes(t, b, n-1)
			}
			return buses
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("starting over on new ports: %v", err)
	}
}

// tryStartCluster starts startCluster's nodes, or none of them.
func tryStartCluster(t testing.TB, n int, mod func(*Config)) ([]*Bus, error) {
	ports := make([]int, n)
	seeds := make([]string, n)
	for i := range ports {
		p, err := freePort("127.0.0.1")
		if err != nil {
			return nil, err
		}
		ports[i] = p
		seeds[i] = fmt.Sprintf("127.0.0.1:%d", p)
	}
	buses := make([]*Bus, 0, n)
	for i := range n {
		cfg := testConfig(t, fmt.Sprintf("n%d", i+1))
		cfg.ClusterPort = ports[i]
		cfg.Seeds = seeds
		if mod != nil {
			mod(&cfg)
		}
		b, err := Start(cfg)
		if err != nil {
			for _, b := range buses {
				b.Close()
			}
			return nil, fmt.Errorf("Start(%s): %w", cfg.NodeID, err)
		}
		buses = append(buses, b)
	}
	return buses, nil
}

// waitRoutes waits until b has exactly n routed peers.
func waitRoutes(t testing.TB, b *Bus, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s has %d routes", b.NodeID(), n), func() bool { return b.NumRoutes() == n })
}

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// echo subscribes b to its own "echo" subject, replying "<node>:<data>".
func echo(t testing.TB, b *Bus) {
	t.Helper()
	_, err := b.Subscribe(b.Subjects().Node(b.NodeID(), "echo"), func(data []byte) []byte {
		return append([]byte(b.NodeID()+":"), data...)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitReachable waits until a request from `from` to `to`'s echo succeeds:
// a route being registered does not mean the peer's subscriptions have
// reached us yet.
func waitReachable(t testing.TB, from, to *Bus) {
	t.Helper()
	subj := from.Subjects().Node(to.NodeID(), "echo")
	waitFor(t, from.NodeID()+" reaches "+to.NodeID(), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := from.Request(ctx, subj, nil)
		return err == nil
	})
}

func TestClusterMeshRequestReplyAndLeave(t *testing.T) {
	buses := startCluster(t, 3, nil)
	for _, b := range buses {
		echo(t, b)
	}
	for _, b := range buses {
		var want []string
		for _, o := range buses {
			if o != b {
				want = append(want, o.NodeID())
			}
		}
		if got := b.RoutedPeers(); !slices.Equal(got, want) {
			t.Errorf("%s: RoutedPeers() = %v, want %v", b.NodeID(), got, want)
		}
	}
	// Every node asks every node, itself included.
	for _, from := range buses {
		for _, to := range buses {
			waitReachable(t, from, to)
			got, err := from.Request(context.Background(), from.Subjects().Node(to.NodeID(), "echo"), []byte("hi"))
			if err != nil {
				t.Fatalf("%s -> %s: %v", from.NodeID(), to.NodeID(), err)
			}
			if want := to.NodeID() + ":hi"; string(got) != want {
				t.Errorf("%s -> %s: got %q, want %q", from.NodeID(), to.NodeID(), got, want)
			}
		}
	}

	// Closing a node drops its routes on the others at once, and requests
	// to it fail fast with no responders.
	if err := buses[2].Close(); err != nil {
		t.Fatal(err)
	}
	waitRoutes(t, buses[0], 1)
	waitRoutes(t, buses[1], 1)
	waitFor(t, "n1 sees n3's subscription gone", func() bool {
		_, err := buses[0].Request(context.Background(), buses[0].Subjects().Node("n3", "echo"), nil)
		return errors.Is(err, nats.ErrNoResponders)
	})
	// Routez may list a closing route of n3's for a moment after the
	// route count has dropped: wait for it to go.
	waitFor(t, "n1 routed to n2 alone", func() bool { return slices.Equal(buses[0].RoutedPeers(), []string{"n2"}) })
}

func TestRestartedNodeRejoins(t *testing.T) {
	buses := startCluster(t, 3, nil)
	n3 := buses[2]
	cfg := n3.cfg
	port := n3.srv.ClusterAddr().Port
	if err := n3.Close(); err != nil {
		t.Fatal(err)
	}
	waitRoutes(t, buses[0], 1)
	waitRoutes(t, buses[1], 1)

	cfg.ClusterPort = port
	cfg.ClientPort = -1
	n3 = start(t, cfg)
	echo(t, n3)
	for _, b := range append(buses[:2], n3) {
		waitRoutes(t, b, 2)
	}
	waitReachable(t, buses[0], n3)
}

func TestImplicitRoutesThroughOneSeed(t *testing.T) {
	// n2 and n3 know only n1; they learn of each other from it and dial
	// each other's advertised address.
	n1 := start(t, testConfig(t, "n1"))
	var buses = []*Bus{n1}
	for _, id := range []string{"n2", "n3"} {
		cfg := testConfig(t, id)
		cfg.Seeds = []string{n1.ClusterAddr()}
		buses = append(buses, start(t, cfg))
	}
	for _, b := range buses {
		waitRoutes(t, b, 2)
	}
}

func TestNoRespondersIsFast(t *testing.T) {
	cfg := testConfig(t, "n1")
	cfg.RequestTimeout = 10 * time.Second
	b := start(t, cfg)
	t0 := time.Now()
	_, err := b.Request(context.Background(), b.Subjects().Node("nobody", "get"), []byte("x"))
	took := time.Since(t0)
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("err = %v, want ErrUnreachable wrapping no responders", err)
	}
	if !strings.Contains(err.Error(), "kvs.test.node.nobody.get") {
		t.Errorf("error %q does not name the subject", err)
	}
	if took > time.Second {
		t.Errorf("no responders took %v", took)
	}
}

func TestSilentSubscriberTimesOut(t *testing.T) {
	cfg := testConfig(t, "n1")
	cfg.RequestTimeout = 200 * time.Millisecond
	b := start(t, cfg)
	subj := b.Subjects().Node("n1", "get")
	// Subscribed but never answering: a paused or overloaded replica.
	sub, err := b.Conn().Subscribe(subj, func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	t0 := time.Now()
	_, err = b.Request(context.Background(), subj, nil)
	took := time.Since(t0)
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrUnreachable wrapping the deadline", err)
	}
	if took < cfg.RequestTimeout || took > cfg.RequestTimeout+2*time.Second {
		t.Errorf("took %v with RequestTimeout %v", took, cfg.RequestTimeout)
	}

	// The caller's deadline wins over RequestTimeout.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	t0 = time.Now()
	_, err = b.Request(ctx, subj, nil)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	if took := time.Since(t0); took >= cfg.RequestTimeout {
		t.Errorf("ctx deadline 50ms, took %v", took)
	}

	// A canceled context is the caller giving up, not an unreachable peer.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	_, err = b.Request(ctx, subj, nil)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnreachable) {
		t.Errorf("canceled: err = %v, want context.Canceled and not ErrUnreachable", err)
	}
}

func TestRequestAfterCloseIsUnreachable(t *testing.T) {
	b := start(t, testConfig(t, "n1"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := b.Request(context.Background(), b.Subjects().Node("n1", "get"), nil)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	if err := b.Publish("x", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
	if _, err := b.Subscribe("x", func([]byte) []byte { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close: %v, want ErrClosed", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestPayloadTooLarge(t *testing.T) {
	cfg := testConfig(t, "n1")
	cfg.MaxPayload = 1024
	b := start(t, cfg)
	echo(t, b)
	subj := b.Subjects().Node("n1", "echo")
	if _, err := b.Request(context.Background(), subj, make([]byte, 1000)); err != nil {
		t.Fatalf("under the limit: %v", err)
	}
	if _, err := b.Request(context.Background(), subj, make([]byte, 1025)); !errors.Is(err, ErrPayloadTooLarge) {
		t.Errorf("Request: err = %v, want ErrPayloadTooLarge", err)
	}
	if err := b.Publish(subj, make([]byte, 1025)); !errors.Is(err, ErrPayloadTooLarge) {
		t.Errorf("Publish: err = %v, want ErrPayloadTooLarge", err)
	}
}

func TestHandlersRunConcurrently(t *testing.T) {
	b := start(t, testConfig(t, "n1"))
	const n = 8
	var arrived sync.WaitGroup
	arrived.Add(n)
	release := make(chan struct{})
	_, err := b.Subscribe(b.Subjects().Node("n1", "slow"), func([]byte) []byte {
		arrived.Done()
		<-release // every handler waits until all n are running at once
		return []byte("ok")
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() { arrived.Wait(); close(release) }()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			_, err := b.Request(ctx, b.Subjects().Node("n1", "slow"), nil)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestHandlerPanicAndEmptyReply(t *testing.T) {
	cfg := testConfig(t, "n1")
	cfg.RequestTimeout = 100 * time.Millisecond
	b := start(t, cfg)
	subj := b.Subjects().Node("n1", "op")
	_, err := b.Subscribe(subj, func(data []byte) []byte {
		if string(data) == "panic" {
			panic("boom")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Request(context.Background(), subj, []byte("panic")); !errors.Is(err, ErrUnreachable) {
		t.Errorf("panicking handler: err = %v, want ErrUnreachable", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	got, err := b.Request(ctx, subj, []byte("fine"))
	if err != nil || len(got) != 0 {
		t.Errorf("nil reply: got %q, %v; want an empty reply", got, err)
	}
}

func TestUnsubscribe(t *testing.T) {
	b := start(t, testConfig(t, "n1"))
	subj := b.Subjects().Node("n1", "op")
	unsub, err := b.Subscribe(subj, func([]byte) []byte { return []byte("x") })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Request(context.Background(), subj, nil); err != nil {
		t.Fatal(err)
	}
	if err := unsub(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Request(context.Background(), subj, nil); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("after unsubscribe: %v, want no responders", err)
	}
	if err := unsub(); err != nil {
		t.Errorf("second unsubscribe: %v", err)
	}
}

func TestPublishSubscribeAcrossNodes(t *testing.T) {
	buses := startCluster(t, 2, nil)
	got := make(chan string, 1)
	_, err := buses[1].Subscribe(buses[1].Subjects().Gossip(), func(data []byte) []byte {
		select {
		case got <- string(data):
		default:
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Publish until the subscription has propagated to n1.
	deadline := time.After(waitTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := buses[0].Publish(buses[0].Subjects().Gossip(), []byte("hb")); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-got:
			if s != "hb" {
				t.Fatalf("got %q", s)
			}
			return
		case <-tick.C:
		case <-deadline:
			t.Fatal("heartbeat never arrived")
		}
	}
}

func TestStartFailsFastWhenPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := testConfig(t, "n1")
	cfg.ClusterPort = ln.Addr().(*net.TCPAddr).Port
	t0 := time.Now()
	b, err := Start(cfg)
	if err == nil {
		b.Close()
		t.Fatal("Start succeeded on a taken port")
	}
	if !strings.Contains(err.Error(), "router port") {
		t.Errorf("err = %v, want the listen error", err)
	}
	if d := time.Since(t0); d > startTimeout/2 {
		t.Errorf("Start took %v to fail", d)
	}
}

func TestCloseWaitsForRunningHandlers(t *testing.T) {
	buses := startCluster(t, 2, nil)
	n1, n2 := buses[0], buses[1]
	subj := n2.Subjects().Node("n2", "slow")
	entered := make(chan struct{})
	release := make(chan struct{})
	if _, err := n2.Subscribe(subj, func([]byte) []byte {
		close(entered)
		<-release
		return []byte("done")
	}); err != nil {
		t.Fatal(err)
	}
	type result struct {
		data []byte
		err  error
	}
	res := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		var d []byte
		var err error
		// Retry until the subscription has reached n1.
		for {
			d, err = n1.Request(ctx, subj, nil)
			if !errors.Is(err, nats.ErrNoResponders) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		res <- result{d, err}
	}()
	<-entered
	closed := make(chan error, 1)
	go func() { closed <- n2.Close() }()
	waitFor(t, "Close has begun", func() bool {
		n2.mu.Lock()
		defer n2.mu.Unlock()
		return n2.closed
	})
	select {
	case err := <-closed:
		t.Fatalf("Close returned while a handler was running: %v", err)
	default:
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil || string(r.data) != "done" {
		t.Fatalf("in-flight request: %q, %v; want the handler's reply", r.data, r.err)
	}
}
