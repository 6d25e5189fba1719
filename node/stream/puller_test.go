package stream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvs-db/kvs/lsm"
)

const testEpoch = 7

// fakeSource is one member's store, served by Serve.
type fakeSource struct {
	store *memStore
	// fail, if set, may fail the k-th request (k from 1) instead of
	// serving it.
	fail func(ctx context.Context, k int) error

	mu       sync.Mutex
	requests []Request
	sent     []lsm.Record // every record served
}

// fakeNet is the in-memory network between a gainer and its sources.
type fakeNet struct {
	sources map[string]*fakeSource
	// include says which keys of loser the gainer receives.
	include func(loser string, key []byte) bool
}

func newFakeNet(sources map[string]*fakeSource) *fakeNet {
	return &fakeNet{sources: sources, include: func(loser string, key []byte) bool {
		return key[len(key)-1]%2 == 0 // even keys, whoever the loser
	}}
}

// request is a Config.Request: it plays the source's node.
func (n *fakeNet) request(ctx context.Context, source string, b []byte) ([]byte, error) {
	s, ok := n.sources[source]
	if !ok {
		return nil, fmt.Errorf("%w: no node %s", ErrUnreachable, source)
	}
	req, err := DecodeRequest(b)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.requests = append(s.requests, req)
	k := len(s.requests)
	s.mu.Unlock()
	if s.fail != nil {
		if err := s.fail(ctx, k); err != nil {
			return nil, err
		}
	}
	if req.Epoch != testEpoch {
		return nil, fmt.Errorf("epoch %d refused, pending change began at %d", req.Epoch, testEpoch)
	}
	include := func(k []byte) bool { return n.include(req.Loser, k) }
	page, err := Serve(s.store.scan, req, include, time.Second, nil)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.sent = append(s.sent, page.Records...)
	s.mu.Unlock()
	return page.Encode(), nil
}

func (s *fakeSource) reqs() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

func (s *fakeSource) sentRecords() []lsm.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sent)
}

// want returns the records of source the gainer receives for loser.
func (n *fakeNet) want(source, loser string) []lsm.Record {
	return n.sources[source].store.filtered(func(k []byte) bool { return n.include(loser, k) })
}

// testConfig returns a config pulling through net into gainer, with small
// pages and a clock on which waits take no time.
func testConfig(t *testing.T, net *fakeNet, gainer *memStore) Config {
	return Config{
		Dir:     t.TempDir(),
		Request: net.request,
		Apply:   gainer.apply,
		Retry:   10 * time.Millisecond,
		// Small pages: many requests per transfer.
		PageBytes: 4096,
		Clock:     newSkipClock(),
	}
}

func run(t *testing.T, cfg Config, transfers ...Transfer) (*Puller, error) {
	t.Helper()
	p, err := NewPuller(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return p, p.Run(ctx, testEpoch, "g", transfers)
}

func checkStore(t *testing.T, got *memStore, want []lsm.Record) {
	t.Helper()
	g := got.sorted()
	if !slices.EqualFunc(g, want, sameRecord) {
		t.Fatalf("gainer holds %d records, want %d (first difference at %d)", len(g), len(want), firstDiff(g, want))
	}
}

func firstDiff(a, b []lsm.Record) int {
	for i := range min(len(a), len(b)) {
		if !sameRecord(a[i], b[i]) {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestPullerCompletes: six transfers (more than run at once) from four
// sources; the gainer ends with exactly the included records, newest
// version of each.
func TestPullerCompletes(t *testing.T) {
	net := newFakeNet(map[string]*fakeSource{
		"l1": {store: newMemStore(genRecords("a", 600, 100, 5)...)},
		"l2": {store: newMemStore(genRecords("b", 300, 100, 5)...)},
		"x":  {store: newMemStore(genRecords("c", 400, 50, 5)...)},
		"y":  {store: newMemStore(append(genRecords("c", 400, 50, 6), genRecords("d", 100, 3000, 1)...)...)},
	})
	net.include = func(loser string, k []byte) bool {
		return k[len(k)-1]%2 == 0 && (loser == "l3" || k[0]-'a' == loser[1]-'1')
	}
	gainer := newMemStore()
	cfg := testConfig(t, net, gainer)
	var mu sync.Mutex
	var calls int
	cfg.OnProgress = func(Progress) { mu.Lock(); calls++; mu.Unlock() }
	transfers := []Transfer{
		{Loser: "l1", Source: "l1"}, {Loser: "l2", Source: "l2"}, {Loser: "l3", Source: "x"},
		{Loser: "l3", Source: "y"}, {Loser: "l1", Source: "y"}, {Loser: "l2", Source: "x"},
	}
	p, err := run(t, cfg, transfers...)
	if err != nil {
		t.Fatal(err)
	}
	var want [][]lsm.Record
	requests := 0
	for _, tr := range transfers {
		want = append(want, net.want(tr.Source, tr.Loser))
	}
	for _, s := range net.sources {
		requests += len(s.reqs())
	}
	checkStore(t, gainer, merged(want...))
	pr := p.Progress()
	if pr.Epoch != testEpoch || pr.Transfers != 6 || pr.Done != 6 || calls != requests {
		t.Errorf("progress %+v after %d OnProgress calls and %d requests", pr, calls, requests)
	}
	received := 0
	for _, w := range want {
		received += len(w)
	}
	if pr.Keys != uint64(received) {
		t.Errorf("progress counts %d keys, %d were sent", pr.Keys, received)
	}
	st, err := LoadState(cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range st.Transfers {
		if !tr.Done || tr.Replaced {
			t.Errorf("saved transfer %+v: want done, not replaced", tr)
		}
	}
	if err := p.Clear(); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadState(cfg.Dir); !errors.Is(err, ErrNoState) {
		t.Errorf("after Clear: %v", err)
	}
}

// TestPullerResumes: a run canceled mid-stream leaves a state from which
// a new Puller continues where the first stopped, without starting over.
func TestPullerResumes(t *testing.T) {
	newNet := func() *fakeNet {
		return newFakeNet(map[string]*fakeSource{
			"l": {store: newMemStore(genRecords("k", 1000, 100, 3)...)},
			"m": {store: newMemStore(genRecords("k", 800, 120, 4)...)},
		})
	}
	transfers := []Transfer{{Loser: "l", Source: "l"}, {Loser: "m", Source: "m"}}

	// The requests of an uninterrupted run, for comparison.
	full := newNet()
	if _, err := run(t, testConfig(t, full, newMemStore()), transfers...); err != nil {
		t.Fatal(err)
	}
	fullRequests := len(full.sources["l"].reqs()) + len(full.sources["m"].reqs())

	net := newNet()
	gainer := newMemStore()
	cfg := testConfig(t, net, gainer)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg.OnProgress = func(pr Progress) {
		if pr.Keys > 200 {
			cancel()
		}
	}
	p, err := NewPuller(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(ctx, testEpoch, "g", transfers); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled run: err = %v", err)
	}
	saved, err := LoadState(cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}

	// A new puller on the same Dir, against sources restarted meanwhile.
	net2 := newNet()
	cfg.Request, cfg.OnProgress = net2.request, nil
	p2, err := NewPuller(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.Run(context.Background(), testEpoch, "g", transfers); err != nil {
		t.Fatal(err)
	}
	resumed, requests := 0, 0
	for _, tr := range saved.Transfers {
		reqs := net2.sources[tr.Source].reqs()
		requests += len(reqs)
		switch {
		case tr.Done && len(reqs) > 0:
			t.Errorf("%s: done before the restart, asked again %d times", tr.Source, len(reqs))
		case !tr.Done && len(reqs) == 0:
			t.Errorf("%s: not done, but not asked after the restart", tr.Source)
		case !tr.Done && string(reqs[0].After) != string(tr.After):
			t.Errorf("%s: saved at %q, first request after the restart at %q", tr.Source, tr.After, reqs[0].After)
		case tr.After != nil:
			resumed++
		}
	}
	if resumed == 0 || requests >= fullRequests {
		t.Errorf("%d transfers resumed; %d requests after the restart, %d for a whole run", resumed, requests, fullRequests)
	}
	checkStore(t, gainer, merged(net.want("l", "l"), net.want("m", "m")))
	if pr := p2.Progress(); pr.Done != 2 {
		t.Errorf("progress after the resumed run: %+v", pr)
	}
}

// TestPullerFallback: a source that stays unreachable for FallbackAfter
// is replaced by the alternatives, which start from the first key; the
// gainer ends with what the failed source sent and all the alternatives
// hold; and a restart does not ask the failed source again.
func TestPullerFallback(t *testing.T) {
	clock := newSkipClock()
	var failedAt time.Time
	var mu sync.Mutex
	a := &fakeSource{store: newMemStore(genRecords("k", 1000, 100, 3)...)}
	a.fail = func(_ context.Context, k int) error {
		if k <= 3 {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		if failedAt.IsZero() {
			failedAt = clock.Now()
		}
		return fmt.Errorf("no responders: %w", ErrUnreachable)
	}
	net := newFakeNet(map[string]*fakeSource{
		"a": a,
		"b": {store: newMemStore(genRecords("k", 700, 100, 4)...)},                                       // newer, fewer keys
		"c": {store: newMemStore(append(genRecords("k", 1000, 100, 2), genRecords("z", 5, 5, 1)...)...)}, // older, more
	})
	gainer := newMemStore()
	cfg := testConfig(t, net, gainer)
	cfg.Clock, cfg.FallbackAfter = clock, time.Second
	var alts [][2]string
	var askedAt time.Time
	cfg.Alternatives = func(loser, failed string) []string {
		alts = append(alts, [2]string{loser, failed})
		askedAt = clock.Now()
		return []string{"a", "b", "c"}
	}
	if _, err := run(t, cfg, Transfer{Loser: "l", Source: "a"}); err != nil {
		t.Fatal(err)
	}
	if len(alts) != 1 || alts[0] != [2]string{"l", "a"} {
		t.Errorf("Alternatives called with %v, want once with (l, a)", alts)
	}
	if d := askedAt.Sub(failedAt); d < cfg.FallbackAfter {
		t.Errorf("alternatives asked %v after the source failed, before FallbackAfter %v", d, cfg.FallbackAfter)
	}
	for _, s := range []string{"b", "c"} {
		if r := net.sources[s].reqs(); len(r) == 0 || r[0].After != nil {
			t.Errorf("replacement %s did not start from the first key", s)
		}
	}
	if len(a.sentRecords()) == 0 {
		t.Fatal("the failed source sent nothing: the test does not test a partial transfer")
	}
	checkStore(t, gainer, merged(a.sentRecords(), net.want("b", "l"), net.want("c", "l")))

	st, err := LoadState(cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	wantState := []string{"a done replaced", "b done", "c done"}
	var gotState []string
	for _, tr := range st.Transfers {
		s := tr.Source
		if tr.Done {
			s += " done"
		}
		if tr.Replaced {
			s += " replaced"
		}
		gotState = append(gotState, s)
	}
	if !slices.Equal(gotState, wantState) {
		t.Errorf("saved transfers %q, want %q", gotState, wantState)
	}

	// A restart with the same arguments finds everything done.
	before := len(a.reqs())
	if _, err := run(t, cfg, Transfer{Loser: "l", Source: "a"}); err != nil {
		t.Fatal(err)
	}
	if n := len(a.reqs()) - before; n != 0 {
		t.Errorf("the replaced source was asked %d times after a restart", n)
	}
}

// TestPullerRetries: failures that are brief, or that are not
// unreachability, are retried on the same source, which is not replaced.
func TestPullerRetries(t *testing.T) {
	unreachable := fmt.Errorf("no responders: %w", ErrUnreachable)
	for _, tc := range []struct {
		name          string
		fail          func(ctx context.Context, k int) error
		fallbackAfter time.Duration
		alternatives  []string
		wantReplaced  bool
	}{
		{"unreachable briefly", func(_ context.Context, k int) error {
			if k <= 3 {
				return unreachable
			}
			return nil
		}, time.Hour, []string{"b"}, false},
		{"refusals do not count", func(_ context.Context, k int) error {
			if k <= 5 {
				return errors.New("remote: epoch 6 refused")
			}
			return nil
		}, time.Millisecond, []string{"b"}, false},
		{"no alternatives", func(_ context.Context, k int) error {
			if k <= 20 {
				return unreachable
			}
			return nil
		}, time.Millisecond, nil, false},
		{"a timeout is unreachable", func(ctx context.Context, k int) error {
			<-ctx.Done() // never answers
			return ctx.Err()
		}, time.Nanosecond, []string{"b"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			net := newFakeNet(map[string]*fakeSource{
				"a": {store: newMemStore(genRecords("k", 200, 100, 3)...), fail: tc.fail},
				"b": {store: newMemStore(genRecords("k", 100, 100, 4)...)},
			})
			gainer := newMemStore()
			cfg := testConfig(t, net, gainer)
			cfg.FallbackAfter, cfg.RequestTimeout = tc.fallbackAfter, 20*time.Millisecond
			cfg.Alternatives = func(loser, failed string) []string { return tc.alternatives }
			if _, err := run(t, cfg, Transfer{Loser: "l", Source: "a"}); err != nil {
				t.Fatal(err)
			}
			replaced := len(net.sources["b"].reqs()) > 0
			if replaced != tc.wantReplaced {
				t.Fatalf("replaced = %v, want %v", replaced, tc.wantReplaced)
			}
			want := net.want("a", "l")
			if replaced {
				want = net.want("b", "l")
			}
			checkStore(t, gainer, want)
		})
	}
}

func TestPullerRetriesApply(t *testing.T) {
	net := newFakeNet(map[string]*fakeSource{"a": {store: newMemStore(genRecords("k", 100, 100, 3)...)}})
	gainer := newMemStore()
	cfg := testConfig(t, net, gainer)
	fails := 3
	cfg.Apply = func(recs []lsm.Record) error {
		if fails > 0 { // one transfer: Apply is never called concurrently
			fails--
			return errors.New("disk full")
		}
		return gainer.apply(recs)
	}
	if _, err := run(t, cfg, Transfer{Loser: "l", Source: "a"}); err != nil {
		t.Fatal(err)
	}
	checkStore(t, gainer, net.want("a", "l"))
}

// TestPullerThroughput: with Throughput set, pulling B bytes takes at
// least B/Throughput on the puller's clock; unthrottled, it waits not at
// all. The clock is virtual, so the bound is exact and cannot flake.
func TestPullerThroughput(t *testing.T) {
	for _, rate := range []int64{0, 64 << 10} {
		t.Run(fmt.Sprint(rate), func(t *testing.T) {
			net := newFakeNet(map[string]*fakeSource{
				"a": {store: newMemStore(genRecords("k", 1000, 200, 3)...)},
				"b": {store: newMemStore(genRecords("j", 1000, 200, 3)...)},
			})
			cfg := testConfig(t, net, newMemStore())
			cfg.Throughput = rate
			clock := cfg.Clock.(*skipClock)
			start := clock.Now()
			p, err := run(t, cfg, Transfer{Loser: "a", Source: "a"}, Transfer{Loser: "b", Source: "b"})
			if err != nil {
				t.Fatal(err)
			}
			elapsed, bytes := clock.Now().Sub(start), p.Progress().Bytes
			if rate == 0 {
				if elapsed != 0 {
					t.Errorf("unthrottled pull waited %v", elapsed)
				}
				return
			}
			min := time.Duration(float64(bytes) / float64(rate) * float64(time.Second))
			if bytes < 100<<10 || elapsed < min {
				t.Errorf("%d bytes at %d B/s took %v, under %v", bytes, rate, elapsed, min)
			}
		})
	}
}

// TestPullerThroughputRealClock: the same lower bound on the system clock
// (a lower bound only: a slow machine makes it longer, never shorter).
func TestPullerThroughputRealClock(t *testing.T) {
	net := newFakeNet(map[string]*fakeSource{"a": {store: newMemStore(genRecords("k", 1000, 200, 3)...)}})
	cfg := testConfig(t, net, newMemStore())
	cfg.Clock, cfg.Throughput = nil, 1<<20
	start := time.Now()
	p, err := run(t, cfg, Transfer{Loser: "a", Source: "a"})
	if err != nil {
		t.Fatal(err)
	}
	elapsed, bytes := time.Since(start), p.Progress().Bytes
	if min := time.Duration(float64(bytes) / float64(cfg.Throughput) * float64(time.Second)); elapsed < min {
		t.Errorf("%d bytes at %d B/s took %v, under %v", bytes, cfg.Throughput, elapsed, min)
	}
}

func TestPullerState(t *testing.T) {
	net := newFakeNet(map[string]*fakeSource{"a": {store: newMemStore(genRecords("k", 100, 10, 3)...)}})
	tr := Transfer{Loser: "l", Source: "a"}

	// A damaged state file stops Run with an error naming it.
	gainer := newMemStore()
	cfg := testConfig(t, net, gainer)
	path := filepath.Join(cfg.Dir, stateFile)
	if err := os.WriteFile(path, []byte(`{"epoch": 7, "gainer": "g", "transfers": [{"loser": "l", "source": "a", "after": "%%%"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := run(t, cfg, tr)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), path) {
		t.Fatalf("damaged state: err = %v, want ErrMalformed naming %s", err, path)
	}
	if len(net.sources["a"].reqs()) != 0 {
		t.Fatal("Run pulled despite a damaged state")
	}
	// Clear, and it starts over.
	if err := p.Clear(); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, cfg, tr); err != nil {
		t.Fatal(err)
	}
	checkStore(t, gainer, net.want("a", "l"))

	// A state of another change is discarded: the new one starts from
	// the first key, though the old one was done.
	old := State{Epoch: testEpoch - 1, Gainer: "g", Transfers: []Transfer{{Loser: "l", Source: "a", After: []byte("k00050"), Done: true}}}
	if err := saveState(cfg.Dir, &old); err != nil {
		t.Fatal(err)
	}
	before := len(net.sources["a"].reqs())
	if _, err := run(t, cfg, tr); err != nil {
		t.Fatal(err)
	}
	if r := net.sources["a"].reqs(); len(r) == before || r[before].After != nil {
		t.Errorf("after a state of another epoch, the run did not start from the first key")
	}
	st, err := LoadState(cfg.Dir)
	if err != nil || st.Epoch != testEpoch {
		t.Errorf("saved state: %+v, %v", st, err)
	}
}

func TestPullerRunRefuses(t *testing.T) {
	net := newFakeNet(map[string]*fakeSource{"a": {store: newMemStore()}})
	p, err := NewPuller(testConfig(t, net, newMemStore()))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		epoch  uint64
		gainer string
		tr     []Transfer
	}{
		{"zero epoch", 0, "g", nil},
		{"no gainer", 1, "", nil},
		{"no source", 1, "g", []Transfer{{Loser: "l"}}},
		{"no loser", 1, "g", []Transfer{{Source: "a"}}},
		{"replaced, not done", 1, "g", []Transfer{{Loser: "l", Source: "a", Replaced: true}}},
	} {
		if err := p.Run(context.Background(), tc.epoch, tc.gainer, tc.tr); err == nil {
			t.Errorf("%s: Run accepted it", tc.name)
		}
	}
}

func TestPullerRunsOnce(t *testing.T) {
	inFlight := make(chan struct{}, 1)
	net := newFakeNet(map[string]*fakeSource{"a": {store: newMemStore(), fail: func(ctx context.Context, _ int) error {
		inFlight <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}}})
	cfg := testConfig(t, net, newMemStore())
	cfg.RequestTimeout = time.Minute
	p, err := NewPuller(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx, testEpoch, "g", []Transfer{{Loser: "l", Source: "a"}}) }()
	<-inFlight
	if err := p.Run(ctx, testEpoch, "g", nil); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Run: err = %v", err)
	}
	if err := p.Clear(); err == nil {
		t.Errorf("Clear during Run succeeded")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("first Run: err = %v", err)
	}
}

func TestCheckPage(t *testing.T) {
	rec := func(k string) lsm.Record { return lsm.Record{Key: []byte(k), Version: v(1), Tombstone: true} }
	for _, tc := range []struct {
		name  string
		page  Page
		after string
		ok    bool
	}{
		{"first page", Page{Records: []lsm.Record{rec("a")}, Next: []byte("a")}, "", true},
		{"continues", Page{Records: []lsm.Record{rec("c")}, Next: []byte("d")}, "b", true},
		{"no records, moves on", Page{Next: []byte("c")}, "b", true},
		{"done, nothing examined", Page{Done: true}, "b", true},
		{"repeats the resume key", Page{Records: []lsm.Record{rec("b")}, Next: []byte("c")}, "b", false},
		{"goes back", Page{Records: []lsm.Record{rec("a")}, Next: []byte("a")}, "b", false},
		{"does not move", Page{Next: []byte("b")}, "b", false},
	} {
		var after []byte
		if tc.after != "" {
			after = []byte(tc.after)
		}
		if err := checkPage(&tc.page, after); (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok = %v", tc.name, err, tc.ok)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	base := func() Config {
		return Config{
			Dir:     "d",
			Request: func(context.Context, string, []byte) ([]byte, error) { return nil, nil },
			Apply:   func([]lsm.Record) error { return nil },
		}
	}
	c := base()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.FallbackAfter != DefaultFallbackAfter || c.PageBytes != DefaultPageBytes || c.RequestTimeout != DefaultRequestTimeout ||
		c.Retry != DefaultRetry || c.Throughput != 0 || c.Clock == nil || c.Logger == nil {
		t.Errorf("defaults not filled: %+v", c)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"no dir", func(c *Config) { c.Dir = "" }},
		{"no request", func(c *Config) { c.Request = nil }},
		{"no apply", func(c *Config) { c.Apply = nil }},
		{"negative throughput", func(c *Config) { c.Throughput = -1 }},
		{"page over the cap", func(c *Config) { c.PageBytes = MaxPageBytes + 1 }},
		{"negative retry", func(c *Config) { c.Retry = -time.Second }},
		{"negative fallback", func(c *Config) { c.FallbackAfter = -time.Second }},
	} {
		c := base()
		tc.edit(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", tc.name, err)
		}
	}
}

func TestBackoff(t *testing.T) {
	var got []time.Duration
	for n := 1; n <= 6; n++ {
		got = append(got, backoff(time.Second, n))
	}
	want := []time.Duration{1, 2, 4, 8, 8, 8}
	for i := range want {
		want[i] *= time.Second
	}
	if !slices.Equal(got, want) {
		t.Errorf("backoff = %v, want %v", got, want)
	}
}
