package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// metaSize returns the leader and the size of the JetStream meta group as
// b's server sees it; ok is false while b runs no clustered JetStream.
func metaSize(b *Bus) (leader string, size int, ok bool) {
	jsz, err := b.srv.Jsz(&server.JSzOptions{})
	if err != nil || jsz.Meta == nil {
		return "", 0, false
	}
	return jsz.Meta.Leader, jsz.Meta.Size, true
}

// startTogether starts the configs at the same moment, each on its own
// goroutine, and closes the buses when the test ends.
func startTogether(t *testing.T, cfgs []Config) []*Bus {
	t.Helper()
	buses := make([]*Bus, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i, cfg := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			buses[i], errs[i] = Start(cfg)
		}()
	}
	close(gate)
	wg.Wait()
	for i, b := range buses {
		if b != nil {
			t.Cleanup(func() {
				if err := b.Close(); err != nil {
					t.Errorf("Close(%s): %v", b.NodeID(), err)
				}
			})
		}
		if errs[i] != nil {
			t.Fatalf("Start(%s): %v", cfgs[i].NodeID, errs[i])
		}
	}
	return buses
}

// TestJetStreamNewServersJoinTogether starts servers with empty JetStream
// directories at the same moment next to a running cluster, as when two
// nodes are added at once. A server with an empty directory grants its
// vote to any candidate, so new servers that bootstrapped their meta
// group before they knew the cluster could elect a meta leader among
// themselves, with none of the cluster's metadata, and the running
// servers, still in their first Raft term, would follow it: the bucket
// would vanish. The new servers must instead join the running meta group,
// and the bucket must survive.
//
// "Two with one seed" is a meta group that expects max(2, seeds) = 2
// servers at bootstrap; "three with every seed" one that expects 3: as
// many new servers as that could elect a leader on their own.
func TestJetStreamNewServersJoinTogether(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fresh    int
		allSeeds bool
	}{
		{"two with one seed", 2, false},
		{"three with every seed", 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := startCluster(t, 3, withJetStream(t))
			ctx := tctx(t, 3*waitTimeout)
			kv1 := mustKV(t, old[0], "test", 3)
			rev, err := kv1.Create(ctx, "ring", []byte("v1"))
			if err != nil {
				t.Fatal(err)
			}
			waitCurrent(t, kv1, "n1", "n2", "n3")
			waitMeta(t, old, "n1", "n2", "n3")
			oldLeader, _, _ := metaSize(old[0])

			var cfgs []Config
			var names []string
			for i := range tc.fresh {
				cfg := jsConfig(t, fmt.Sprintf("n%d", 4+i))
				cfg.Seeds = []string{old[0].ClusterAddr()}
				if tc.allSeeds {
					cfg.Seeds = []string{old[0].ClusterAddr(), old[1].ClusterAddr(), old[2].ClusterAddr()}
				}
				cfgs = append(cfgs, cfg)
				names = append(names, cfg.NodeID)
			}
			t0 := time.Now()
			fresh := startTogether(t, cfgs)
			all := append(slices.Clone(old), fresh...)
			allNames := append([]string{"n1", "n2", "n3"}, names...)

			// Until every server sees one leader and all the servers, no
			// new server may lead a group smaller than the running
			// cluster plus itself, and no running server may follow one.
			jsStarted := make(map[string]time.Duration)
			leaders := map[string]bool{oldLeader: true}
			waitFor(t, fmt.Sprintf("meta group %v with one leader", allNames), func() bool {
				for _, b := range fresh {
					leader, size, ok := metaSize(b)
					if !ok {
						continue
					}
					if _, seen := jsStarted[b.NodeID()]; !seen {
						jsStarted[b.NodeID()] = time.Since(t0)
					}
					if leader == b.NodeID() && size <= len(old) {
						t.Fatalf("new server %s leads a meta group of %d servers of its own", leader, size)
					}
				}
				for _, b := range old {
					if leader, size, _ := metaSize(b); slices.Contains(names, leader) && size <= len(old) {
						t.Fatalf("%s follows new server %s in a meta group of %d", b.NodeID(), leader, size)
					}
				}
				leader := ""
				for _, b := range all {
					g, err := b.MetaGroup()
					if err != nil || g.Leader == "" || !slices.Equal(g.Names(), allNames) {
						return false
					}
					if leader != "" && g.Leader != leader {
						return false
					}
					leader = g.Leader
					leaders[leader] = true
				}
				return true
			})
			t.Logf("all %d servers in one meta group %v after the new ones started; new servers started JetStream after %v; meta leaders seen %v",
				len(all), time.Since(t0).Round(time.Millisecond), jsStarted, leaders)

			// The bucket survived, on every server, and takes writes.
			for _, b := range all {
				kv := mustKV(t, b, "test", 3)
				if v, got, err := kv.Get(ctx, "ring"); err != nil || string(v) != "v1" || got != rev {
					t.Fatalf("%s: Get = %q, %d, %v; want v1, %d", b.NodeID(), v, got, err, rev)
				}
			}
			kvNew := mustKV(t, fresh[0], "test", 3)
			if rev, err = kvNew.Update(ctx, "ring", []byte("v2"), rev); err != nil {
				t.Fatalf("%s: Update: %v", fresh[0].NodeID(), err)
			}
			for _, b := range all {
				kv := mustKV(t, b, "test", 3)
				if v, got, err := kv.Get(ctx, "ring"); err != nil || string(v) != "v2" || got != rev {
					t.Errorf("%s: Get after the update = %q, %d, %v; want v2, %d", b.NodeID(), v, got, err, rev)
				}
			}
			waitCurrent(t, kv1, "n1", "n2", "n3")
		})
	}
}

func TestViewMesh(t *testing.T) {
	// stats is the reply of a server with JetStream on; leader, when set,
	// is the meta leader it names.
	stats := func(name, leader string, routes ...string) server.ServerStatsMsg {
		var m server.ServerStatsMsg
		m.Server.Name = name
		m.Server.SetJetStreamEnabled()
		for _, r := range routes {
			m.Stats.Routes = append(m.Stats.Routes, &server.RouteStat{Name: r})
		}
		if leader != "" {
			m.Stats.JetStream = &server.JetStreamVarz{Meta: &server.MetaClusterInfo{Leader: leader}}
		}
		return m
	}
	type S = []server.ServerStatsMsg
	// A peer that runs JetStream clustered, with no leader yet; one that
	// is setting JetStream up; one with JetStream off.
	noLeader, settingUp, off := stats("c", "", "me", "b", "d", "e"), stats("d", "", "me", "b", "c", "e"), stats("e", "", "me", "b", "c", "d")
	noLeader.Stats.JetStream = &server.JetStreamVarz{Meta: &server.MetaClusterInfo{}}
	settingUp.Stats.JetStream = &server.JetStreamVarz{}
	off.Server.Flags, off.Server.JetStream = 0, false

	for _, tc := range []struct {
		name    string
		routed  []string
		replies S
		seeds   int
		// want
		missing, leaders, starting, unmeshed []string
		ready                                bool
	}{
		{name: "no route", replies: S{stats("me", "")}},
		{name: "routed peer did not answer", routed: []string{"a"}, seeds: 1, missing: []string{"a"}},
		{name: "only our own reply", routed: []string{"a"}, replies: S{stats("me", "", "a")}, seeds: 1, missing: []string{"a"}},
		{name: "peer routed to one more", routed: []string{"a"}, replies: S{stats("a", "x", "me", "b", "b")}, seeds: 1,
			missing: []string{"b"}, leaders: []string{"x"}},
		{name: "peers routed to one more each", routed: []string{"a", "b"},
			replies: S{stats("a", "x", "me", "b", "c"), stats("b", "x", "a", "me", "c", "d")}, seeds: 1,
			missing: []string{"c", "d"}, leaders: []string{"x"}},
		{name: "one of two peers answered", routed: []string{"a", "b"}, replies: S{stats("a", "x", "me", "b")}, seeds: 1,
			missing: []string{"b"}, leaders: []string{"x"}},
		{name: "joining, fewer routes than seeds", routed: []string{"a", "b"},
			replies: S{stats("a", "b", "me", "b"), stats("b", "b", "a", "me")}, seeds: 3,
			leaders: []string{"b"}, ready: true},
		{name: "joining, leaders while they change", routed: []string{"a", "b"},
			replies: S{stats("a", "b", "me", "b"), stats("b", "a", "me", "a")}, seeds: 2,
			leaders: []string{"a", "b"}, ready: true},
		{name: "joining, peers not routed to each other yet", routed: []string{"a", "b"},
			replies: S{stats("a", "x", "me"), stats("b", "x", "me")}, seeds: 2,
			leaders: []string{"x"}, unmeshed: []string{"a", "b"}, ready: true},
		{name: "new cluster, all routed to each other", routed: []string{"a", "b"},
			replies: S{stats("me", "", "a", "b"), stats("b", "", "a", "me"), stats("a", "", "me", "b")}, seeds: 2,
			starting: []string{"a", "b"}, ready: true},
		{name: "new cluster, a seed not routed yet", routed: []string{"a"}, replies: S{stats("a", "", "me")}, seeds: 2,
			starting: []string{"a"}},
		{name: "new cluster, more routes than seeds", routed: []string{"a", "b"},
			replies: S{stats("a", "", "me", "b"), stats("b", "", "a", "me")}, seeds: 1,
			starting: []string{"a", "b"}, ready: true},
		{name: "new cluster, peers not routed to each other yet", routed: []string{"a", "b"},
			replies: S{stats("a", "", "me"), stats("b", "", "me")}, seeds: 2,
			starting: []string{"a", "b"}, unmeshed: []string{"a", "b"}},
		{name: "unnamed route", routed: []string{"a"}, replies: S{stats("a", "a", "me", "")}, seeds: 1,
			leaders: []string{"a"}, ready: true},
		{name: "new cluster, peers starting", routed: []string{"b", "c", "d", "e"},
			replies: S{stats("b", "", "me", "c", "d", "e"), noLeader, settingUp, off}, seeds: 4,
			starting: []string{"b", "d"}, ready: true},
	} {
		v := viewMesh("me", tc.routed, tc.replies)
		if !slices.Equal(v.peers, tc.routed) || !slices.Equal(v.missing, tc.missing) || !slices.Equal(v.leaders, tc.leaders) ||
			!slices.Equal(v.starting, tc.starting) || !slices.Equal(v.unmeshed, tc.unmeshed) {
			t.Errorf("%s: view %+v; want missing %v, leaders %v, starting %v, unmeshed %v",
				tc.name, v, tc.missing, tc.leaders, tc.starting, tc.unmeshed)
		}
		if got := v.ready(tc.seeds); got != tc.ready {
			t.Errorf("%s: ready(%d) = %v, want %v", tc.name, tc.seeds, got, tc.ready)
		}
	}
}

func TestOtherSeeds(t *testing.T) {
	b := &Bus{advert: "node1:6222", clusterA: "127.0.0.1:6222"}
	for _, tc := range []struct {
		seeds []string
		want  int
	}{
		{nil, 0},
		{[]string{"node2:6222", "node3:6222"}, 2},
		{[]string{"node1:6222", "node2:6222", "node3:6222"}, 2},
		{[]string{"127.0.0.1:6222", "127.0.0.1:6223"}, 1},
		{[]string{"node2:6222", "node2:6222"}, 1},
	} {
		b.cfg.Seeds = tc.seeds
		if got := b.otherSeeds(); got != tc.want {
			t.Errorf("otherSeeds(%v) = %d, want %d", tc.seeds, got, tc.want)
		}
	}
}

// appLimits returns the JetStream limits of b's application account.
func appLimits(t *testing.T, b *Bus) server.JetStreamAccountLimits {
	t.Helper()
	acc, err := b.srv.LookupAccount(AppAccount)
	if err != nil {
		t.Fatal(err)
	}
	return acc.JetStreamUsage().Limits
}

// shorten sets *v to d until the test ends.
func shorten(t *testing.T, v *time.Duration, d time.Duration) {
	old := *v
	*v = d
	t.Cleanup(func() { *v = old })
}

// TestJetStreamWaitsForRoutes starts a server with an empty JetStream
// directory whose seed does not answer: it runs without JetStream (a lone
// new server could elect no meta leader anyway), says so, and starts
// JetStream as soon as the seed comes up; the pair is then usable. Routes
// and connections are authenticated, as in production.
func TestJetStreamWaitsForRoutes(t *testing.T) {
	shorten(t, &joinWarnInterval, 200*time.Millisecond)
	seedPort, err := freePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{level: slog.LevelInfo}
	cfg := jsConfig(t, "n1")
	cfg.Secret = "s3cret"
	cfg.Logger = slog.New(rec)
	cfg.Seeds = []string{fmt.Sprintf("127.0.0.1:%d", seedPort)}
	n1 := start(t, cfg)
	if n1.srv.JetStreamEnabled() {
		t.Fatal("JetStream runs before the server has a route")
	}
	if _, err := n1.MetaGroup(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("MetaGroup while JetStream waits: %v, want ErrUnavailable", err)
	}
	kv1 := mustKV(t, n1, "test", 2)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, err = kv1.Put(ctx, "ring", []byte("x"))
	cancel()
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Put while JetStream waits: %v, want ErrUnavailable", err)
	}
	waitFor(t, "a warning that no seed answers", func() bool { return rec.has(slog.LevelWarn, "no route to any seed yet") })
	if n1.srv.JetStreamEnabled() {
		t.Fatal("JetStream started without a route")
	}

	// The seed comes up: a new server, seeded with the first.
	cfg2 := jsConfig(t, "n2")
	cfg2.Secret = cfg.Secret
	cfg2.ClusterPort = seedPort
	cfg2.Seeds = []string{n1.ClusterAddr()}
	t0 := time.Now()
	n2 := start(t, cfg2)
	rev, err := kv1.Put(tctx(t, waitTimeout), "ring", []byte("v1"))
	if err != nil {
		t.Fatalf("Put once the seed is up: %v", err)
	}
	t.Logf("the first write succeeded %v after the seed started", time.Since(t0).Round(time.Millisecond))
	waitMeta(t, []*Bus{n1, n2}, "n1", "n2")
	if !rec.has(slog.LevelInfo, "starting JetStream: routed to every server of the cluster") {
		t.Error("no log line saying why JetStream started")
	}
	// The account got JetStream after the server; its limits are those
	// the configuration gives when JetStream starts with the server.
	if got, want := appLimits(t, n1), appJetStreamLimits()[""]; got != want {
		t.Errorf("account %s: JetStream limits %+v, want %+v", AppAccount, got, want)
	}
	kv2 := mustKV(t, n2, "test", 2)
	if v, got, err := kv2.Get(tctx(t, waitTimeout), "ring"); err != nil || string(v) != "v1" || got != rev {
		t.Errorf("n2: Get = %q, %d, %v; want v1, %d", v, got, err, rev)
	}
}

func TestCloseWhileJetStreamWaits(t *testing.T) {
	port, err := freePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := jsConfig(t, "n1")
	cfg.Seeds = []string{fmt.Sprintf("127.0.0.1:%d", port)}
	b, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("Close took %v while JetStream waited for routes", d)
	}
	select {
	case <-b.jsWaited:
	default:
		t.Error("the wait for routes still runs after Close")
	}
}

// TestJetStreamNewClusterStartedTogether starts a brand-new cluster as
// `kvs dev` and docker compose do: every server at once, each with the
// others as seeds, and every node writes the bucket at once, as nodes do
// when they start. They form one meta group of all three, and exactly one
// write wins.
func TestJetStreamNewClusterStartedTogether(t *testing.T) {
	ports, err := freePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	var cfgs []Config
	for i, port := range ports {
		cfg := jsConfig(t, fmt.Sprintf("n%d", i+1))
		cfg.ClusterPort = port
		for j, p := range ports {
			if j != i {
				cfg.Seeds = append(cfg.Seeds, fmt.Sprintf("127.0.0.1:%d", p))
			}
		}
		cfgs = append(cfgs, cfg)
	}
	t0 := time.Now()
	buses := startTogether(t, cfgs)
	ctx := tctx(t, 2*waitTimeout)
	errs := make([]error, len(buses))
	took := make([]time.Duration, len(buses))
	var wg sync.WaitGroup
	for i, b := range buses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = mustKV(t, b, "test", 3).Create(ctx, "ring", []byte(b.NodeID()))
			took[i] = time.Since(t0).Round(time.Millisecond)
		}()
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrRevisionMismatch):
			t.Errorf("%s: Create: %v", buses[i].NodeID(), err)
		}
	}
	if won != 1 {
		t.Errorf("%d creates won, want 1: %v", won, errs)
	}
	t.Logf("every node's create answered %v after start", took)
	waitMeta(t, buses, "n1", "n2", "n3")
	waitCurrent(t, mustKV(t, buses[0], "test", 3), "n1", "n2", "n3")
}

// freePorts returns n distinct TCP ports that were free on 127.0.0.1 a
// moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
