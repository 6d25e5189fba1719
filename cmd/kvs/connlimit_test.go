package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// counterValue reads a counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// serveLimited serves h on a loopback listener limited to max connections.
func serveLimited(t *testing.T, max int, h http.Handler) (*connLimiter, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := newConnLimiter(ln, max)
	srv := &http.Server{Handler: h, ConnState: cl.ConnState, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(cl)
	t.Cleanup(func() { srv.Close() })
	return cl, ln.Addr().String()
}

// rawGet sends GET path on a new keep-alive connection and returns it with
// a reader of its answers.
func rawGet(t *testing.T, addr, path string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: kvs\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

// readStatus reads one answer within d; ok is false on a timeout.
func readStatus(t *testing.T, c net.Conn, br *bufio.Reader, d time.Duration) (int, bool) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(br, nil)
	if ne, isNet := err.(net.Error); isNet && ne.Timeout() {
		return 0, false
	}
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, true
}

// TestConnLimiterWaits holds both slots of a limit of 2 with requests in
// progress: a third connection is not served until one of them ends.
func TestConnLimiterWaits(t *testing.T) {
	release := make(chan struct{})
	cl, addr := serveLimited(t, 2, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			<-release
		}
	}))
	c1, br1 := rawGet(t, addr, "/block")
	_, _ = rawGet(t, addr, "/block")
	deadline := time.Now().Add(10 * time.Second)
	for len(cl.slots) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the two connections were not accepted")
		}
		time.Sleep(time.Millisecond)
	}
	c3, br3 := rawGet(t, addr, "/fast")
	if _, ok := readStatus(t, c3, br3, 200*time.Millisecond); ok {
		t.Fatal("a third connection was served while two requests held both slots")
	}
	if got := counterValue(t, cl.waits); got != 1 {
		t.Fatalf("waits = %v, want 1", got)
	}
	close(release)
	if code, ok := readStatus(t, c1, br1, 10*time.Second); !ok || code != 200 {
		t.Fatalf("first request: %d %v", code, ok)
	}
	c1.Close()
	if code, ok := readStatus(t, c3, br3, 10*time.Second); !ok || code != 200 {
		t.Fatalf("third connection after a slot freed: %d %v", code, ok)
	}
}

// TestConnLimiterClosesIdle fills the only slot with an idle keep-alive
// connection: a new connection closes it and is served at once.
func TestConnLimiterClosesIdle(t *testing.T) {
	cl, addr := serveLimited(t, 1, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	c1, br1 := rawGet(t, addr, "/")
	if code, ok := readStatus(t, c1, br1, 10*time.Second); !ok || code != 200 {
		t.Fatalf("first: %d %v", code, ok)
	}
	c2, br2 := rawGet(t, addr, "/")
	if code, ok := readStatus(t, c2, br2, 10*time.Second); !ok || code != 200 {
		t.Fatalf("second: %d %v", code, ok)
	}
	if got := counterValue(t, cl.idleClosed); got != 1 {
		t.Fatalf("idle connections closed = %v, want 1", got)
	}
	c1.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br1.ReadByte(); err == nil {
		t.Fatal("the idle connection is still open")
	}
}

func TestDefaultMaxConns(t *testing.T) {
	for _, tt := range []struct {
		soft  uint64
		known bool
		want  int
	}{
		{0, false, -1},
		{48, true, minDefaultMaxConns},
		{fdReserve + 2*minDefaultMaxConns, true, minDefaultMaxConns},
		{1024, true, 480},
		{1 << 20, true, (1<<20 - fdReserve) / 2},
	} {
		if got := defaultMaxConns(tt.soft, tt.known); got != tt.want {
			t.Errorf("defaultMaxConns(%d, %v) = %d, want %d", tt.soft, tt.known, got, tt.want)
		}
	}
}
