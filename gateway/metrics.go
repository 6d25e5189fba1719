package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics holds the gateway's own instruments.
type metrics struct {
	requests     *prometheus.CounterVec   // route, method, code
	latency      *prometheus.HistogramVec // route, method
	authFailures *prometheus.CounterVec   // route, reason
}

// newMetrics builds the gateway's instruments and registers them with reg
// when reg is not nil.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kvs",
			Subsystem: "http",
			Name:      "requests_total",
			Help:      "HTTP requests served, by route, method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "kvs",
			Subsystem: "http",
			Name:      "request_duration_seconds",
			Help:      "Time from request to the end of the response, by route and method.",
			Buckets:   []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kvs",
			Subsystem: "http",
			Name:      "auth_failures_total",
			Help: "Requests refused for their credentials, by route and reason: missing (no bearer token), " +
				"wrong (a token the node does not know, or not the cluster secret where that is needed), read_only (a read-only token on a write).",
		}, []string{"route", "reason"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.latency, m.authFailures} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("gateway: registering metrics: %w", err)
			}
		}
	}
	return m, nil
}

// newMetricsHandler serves g's metrics; promhttp's own error counter goes
// to reg when it is not nil.
func newMetricsHandler(g prometheus.Gatherer, reg prometheus.Registerer) http.Handler {
	opts := promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}
	if reg != nil {
		return promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(g, opts))
	}
	return promhttp.HandlerFor(g, opts)
}

// serveMetrics serves /metrics, or 404 when no gatherer was configured.
func (g *Gateway) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) || !g.requireInfo(w, r, routeMetrics) {
		return
	}
	if g.promHTTP == nil {
		writeError(w, http.StatusNotFound, "metrics are not enabled")
		return
	}
	g.promHTTP.ServeHTTP(w, r)
}

// methodLabel bounds the method label to the methods the API knows.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete:
		return m
	}
	return "other"
}

// recorder remembers the status and size of a response.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// instrument runs h, turns a panic into a 500, counts the request and logs
// it at debug level.
func (g *Gateway) instrument(route string, h func(http.ResponseWriter, *http.Request), w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := g.requestID(r)
	w.Header().Set(headerRequestID, id)
	rec := &recorder{ResponseWriter: w}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			g.log.Error("handler panic", "request_id", id, "method", r.Method, "path", r.URL.EscapedPath(), "panic", p)
			if rec.status == 0 {
				writeError(rec, http.StatusInternalServerError, "internal error")
			}
		}
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		if errors.Is(r.Context().Err(), context.Canceled) && status >= 500 {
			status = statusClientClosed
		}
		elapsed := time.Since(start)
		method := methodLabel(r.Method)
		g.metrics.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
		g.metrics.latency.WithLabelValues(route, method).Observe(elapsed.Seconds())
		if g.log.Enabled(r.Context(), slog.LevelDebug) {
			g.log.LogAttrs(r.Context(), slog.LevelDebug, "http request",
				slog.String("request_id", id),
				slog.String("method", r.Method),
				slog.String("path", r.URL.EscapedPath()),
				slog.Int("status", status),
				slog.Int64("bytes", rec.bytes),
				slog.Duration("duration", elapsed),
				slog.String("remote", r.RemoteAddr),
			)
		}
	}()
	h(rec, r)
}
