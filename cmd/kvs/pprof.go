package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// pprofListener is the profiling listener of `kvs serve --pprof`: Go's
// net/http/pprof handlers on their own mux and port, never on the API port.
// It is off unless asked for, and binds loopback only: a heap or goroutine
// profile holds keys and values, and a CPU profile costs the node CPU, so it
// is not something to offer the network, secret or not.
type pprofListener struct {
	srv *http.Server
	ln  net.Listener
}

// checkPprofAddr checks the --pprof address: empty (off) or host:port with a
// loopback host (an IP address such as 127.0.0.1 or ::1, or localhost).
func checkPprofAddr(addr string) error {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--pprof %q: %w", addr, err)
	}
	if port == "" {
		return fmt.Errorf("--pprof %q: want host:port, for instance 127.0.0.1:6060", addr)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--pprof %q: profiles hold keys and values, so the listener binds loopback only (127.0.0.1, ::1 or localhost)", addr)
	}
	return nil
}

// pprofMux returns a mux with the net/http/pprof handlers under
// /debug/pprof/, as net/http/pprof registers them on the default mux (which
// kvs never serves).
func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// startPprof listens on addr (checked by checkPprofAddr) and serves the
// profiles until Close.
func startPprof(addr string, log *slog.Logger) (*pprofListener, error) {
	if err := checkPprofAddr(addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof: %w", err)
	}
	p := &pprofListener{
		ln: ln,
		srv: &http.Server{
			Handler:           pprofMux(),
			ReadHeaderTimeout: 5 * time.Second,
			// No WriteTimeout: /debug/pprof/profile?seconds=30 writes
			// after 30 s.
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
	}
	go func() {
		if err := p.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("pprof listener stopped", "err", err)
		}
	}()
	log.Info("pprof listening", "addr", "http://"+ln.Addr().String()+"/debug/pprof/")
	return p, nil
}

// Addr is the address the listener is bound to.
func (p *pprofListener) Addr() string { return p.ln.Addr().String() }

// Close stops the listener and any profile being taken.
func (p *pprofListener) Close() error {
	return p.srv.Close()
}
