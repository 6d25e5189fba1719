package bus

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// freezer is a TCP proxy that can stop forwarding without closing
// anything: to the other side the peer looks paused (SIGSTOP, a hung VM),
// not dead.
type freezer struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	frozen bool
	conns  []net.Conn
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target}
	t.Cleanup(f.close)
	go f.serve()
	return f
}

func (f *freezer) addr() string { return f.ln.Addr().String() }

func (f *freezer) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		d, err := net.Dial("tcp", f.target)
		if err != nil {
			c.Close()
			continue
		}
		f.mu.Lock()
		f.conns = append(f.conns, c, d)
		f.mu.Unlock()
		go f.pipe(c, d)
		go f.pipe(d, c)
	}
}

// pipe copies src to dst, dropping everything read while frozen (the
// bytes a paused process would never have read).
func (f *freezer) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !f.isFrozen() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				dst.Close()
			}
			return
		}
	}
}

func (f *freezer) isFrozen() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.frozen
}

func (f *freezer) freeze() {
	f.mu.Lock()
	f.frozen = true
	f.mu.Unlock()
}

func (f *freezer) close() {
	f.ln.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
}

func TestPausedPeerIsDropped(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for route pings to go unanswered")
	}
	// n1 reaches n2 only through the proxy: n2 has no seeds and advertises
	// the proxy's address.
	n2cfg := testConfig(t, "n2")
	port, err := freePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	n2cfg.ClusterPort = port
	proxy := newFreezer(t, net.JoinHostPort(n2cfg.Host, strconv.Itoa(port)))
	n2cfg.Advertise = proxy.addr()
	n2 := start(t, n2cfg)
	echo(t, n2)

	n1cfg := testConfig(t, "n1")
	n1cfg.Seeds = []string{proxy.addr()}
	n1cfg.RequestTimeout = 300 * time.Millisecond
	n1 := start(t, n1cfg)
	waitRoutes(t, n1, 1)
	waitReachable(t, n1, n2)

	proxy.freeze()
	t0 := time.Now()
	// While the route is up, requests to the paused peer time out.
	_, err = n1.Request(context.Background(), n1.Subjects().Node("n2", "echo"), nil)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("request to paused peer: %v", err)
	}
	waitRoutes(t, n1, 0)
	took := time.Since(t0)
	t.Logf("paused peer dropped after %v (ping interval %v, %d pings out)", took, DefaultPingInterval, routeMaxPingsOut)
	if took > 6*DefaultPingInterval {
		t.Errorf("paused peer noticed after %v", took)
	}
	// Now requests fail at once.
	t1 := time.Now()
	_, err = n1.Request(context.Background(), n1.Subjects().Node("n2", "echo"), nil)
	if !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("after the route dropped: %v, want no responders", err)
	}
	if d := time.Since(t1); d >= n1cfg.RequestTimeout {
		t.Errorf("after the route dropped, a request took %v", d)
	}
}
