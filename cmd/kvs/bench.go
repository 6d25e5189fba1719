package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
)

// Bounds of `kvs bench`, so that a typo cannot turn it into a flood.
const (
	benchMaxDuration = 60 * time.Second
	// benchMaxPreload bounds the preload, which --keys bounds first: a
	// million keys take a few minutes on a laptop-sized cluster.
	benchMaxPreload     = 30 * time.Minute
	benchMaxConcurrency = 1024
	benchMaxValueSize   = 1 << 20
)

// benchOptions is the validated command line of `kvs bench`.
type benchOptions struct {
	targets     []string // base URLs without a trailing slash
	op          string   // put, get or mixed
	concurrency int
	duration    time.Duration
	keys        int
	valueSize   int
	preload     bool
	timeout     time.Duration
	allowRemote bool
	token       string      // bearer token, "" for none
	tls         *tls.Config // for https:// targets with --ca; nil: the system's CAs
}

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "closed-loop load generator: ops/s and latency percentiles",
		Description: "Each of --concurrency workers sends one request at a time, back to back,\n" +
			"for --duration (at most 60s), round-robin over --targets, with keys drawn\n" +
			"uniformly from --keys keys. Only loopback targets are allowed unless\n" +
			"--allow-remote is given. --preload writes every key once first, so that a\n" +
			"get run reads keys that exist.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "targets", Value: "http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083", Usage: "comma-separated base URLs", EnvVars: envVars("targets")},
			&cli.StringFlag{Name: "op", Value: "put", Usage: "put, get or mixed (50/50)", EnvVars: envVars("op")},
			&cli.IntFlag{Name: "concurrency", Value: 64, Usage: "concurrent workers (at most 1024)", EnvVars: envVars("concurrency")},
			&cli.DurationFlag{Name: "duration", Value: 15 * time.Second, Usage: "length of the run (at most 60s)", EnvVars: envVars("duration")},
			&cli.IntFlag{Name: "keys", Value: 10000, Usage: "size of the key space", EnvVars: envVars("keys")},
			&cli.IntFlag{Name: "value-size", Value: 128, Usage: "PUT body size in bytes", EnvVars: envVars("value-size")},
			&cli.BoolFlag{Name: "preload", Usage: "PUT every key once before the run", EnvVars: envVars("preload")},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "per-request timeout", EnvVars: envVars("timeout")},
			&cli.BoolFlag{Name: "allow-remote", Usage: "allow targets that are not loopback addresses", EnvVars: envVars("allow-remote")},
			caFlag(),
		}, tokenFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError("bench takes no arguments")
			}
			o := benchOptions{
				op:          c.String("op"),
				concurrency: c.Int("concurrency"),
				duration:    c.Duration("duration"),
				keys:        c.Int("keys"),
				valueSize:   c.Int("value-size"),
				preload:     c.Bool("preload"),
				timeout:     c.Duration("timeout"),
				allowRemote: c.Bool("allow-remote"),
			}
			var err error
			if o.token, err = clientToken(c); err != nil {
				return err
			}
			if ca := c.String("ca"); ca != "" {
				pool, err := loadCA("--ca", ca)
				if err != nil {
					return usageError("%v", err)
				}
				o.tls = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			}
			if o.targets, err = parseTargets(c.String("targets")); err != nil {
				return usageError("--targets: %v", err)
			}
			if err := o.validate(); err != nil {
				return usageError("%v", err)
			}
			if !o.allowRemote {
				if err := checkLoopback(c.Context, o.targets); err != nil {
					return usageError("%v (use --allow-remote to load a remote cluster)", err)
				}
			}
			return runBench(c.Context, o, c.App.Writer)
		},
	}
}

func (o *benchOptions) validate() error {
	switch {
	case o.op != "put" && o.op != "get" && o.op != "mixed":
		return fmt.Errorf("--op must be put, get or mixed, not %q", o.op)
	case o.concurrency < 1 || o.concurrency > benchMaxConcurrency:
		return fmt.Errorf("--concurrency must be 1 to %d, not %d", benchMaxConcurrency, o.concurrency)
	case o.duration <= 0 || o.duration > benchMaxDuration:
		return fmt.Errorf("--duration must be in (0, %v], not %v", benchMaxDuration, o.duration)
	case o.keys < 1:
		return fmt.Errorf("--keys must be at least 1, not %d", o.keys)
	case o.valueSize < 0 || o.valueSize > benchMaxValueSize:
		return fmt.Errorf("--value-size must be 0 to %d, not %d", benchMaxValueSize, o.valueSize)
	case o.timeout <= 0 || o.timeout > benchMaxDuration:
		return fmt.Errorf("--timeout must be in (0, %v], not %v", benchMaxDuration, o.timeout)
	}
	return nil
}

// parseTargets splits and checks a comma-separated list of base URLs.
func parseTargets(list string) ([]string, error) {
	var out []string
	for _, raw := range strings.Split(list, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", raw, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return nil, fmt.Errorf("%q: want http://host:port", raw)
		}
		out = append(out, strings.TrimRight(u.String(), "/"))
	}
	if len(out) == 0 {
		return nil, errors.New("no target")
	}
	return out, nil
}

// checkLoopback refuses targets whose host is not a loopback address; a
// name passes only if every address it resolves to is loopback.
func checkLoopback(ctx context.Context, targets []string) error {
	for _, t := range targets {
		u, err := url.Parse(t)
		if err != nil {
			return err
		}
		host := u.Hostname()
		if ip := net.ParseIP(host); ip != nil {
			if !ip.IsLoopback() {
				return fmt.Errorf("target %s: %s is not a loopback address", t, ip)
			}
			continue
		}
		addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
		if err != nil {
			return fmt.Errorf("target %s: %w", t, err)
		}
		if len(addrs) == 0 {
			return fmt.Errorf("target %s: %s resolves to no address", t, host)
		}
		for _, a := range addrs {
			if !a.IP.IsLoopback() {
				return fmt.Errorf("target %s: %s resolves to %s, not a loopback address", t, host, a.IP)
			}
		}
	}
	return nil
}

// newBenchClient is a keep-alive client with an idle connection per worker
// and target; it ignores proxies and, unless remote targets are allowed,
// refuses to dial anything but loopback addresses.
func newBenchClient(o *benchOptions) *http.Client {
	d := &net.Dialer{Timeout: o.timeout, KeepAlive: 30 * time.Second}
	if !o.allowRemote {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				return fmt.Errorf("refusing to dial non-loopback address %s", address)
			}
			return nil
		}
	}
	return &http.Client{
		Timeout: o.timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         d.DialContext,
			MaxIdleConns:        o.concurrency * len(o.targets),
			MaxIdleConnsPerHost: o.concurrency,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			TLSClientConfig:     o.tls,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// benchStats is what one worker recorded; merged at the end.
type benchStats struct {
	latency   map[string][]time.Duration // successful requests by op
	status    map[int]int                // non-2xx responses by status
	transport map[string]int             // transport errors by message
	notFound  int                        // GETs answered 404 (counted as successes)
}

func newBenchStats() *benchStats {
	return &benchStats{latency: map[string][]time.Duration{}, status: map[int]int{}, transport: map[string]int{}}
}

func (s *benchStats) merge(o *benchStats) {
	for op, l := range o.latency {
		s.latency[op] = append(s.latency[op], l...)
	}
	for k, v := range o.status {
		s.status[k] += v
	}
	s.notFound += o.notFound
	for k, v := range o.transport {
		if _, ok := s.transport[k]; ok || len(s.transport) < 16 {
			s.transport[k] += v
		} else {
			s.transport["other"] += v
		}
	}
}

// benchRequest sends one request, with token as bearer token when it is
// not empty, and records it in st; it returns false when stop ended the
// request (its outcome is then not recorded).
func benchRequest(stop context.Context, client *http.Client, st *benchStats, op, target, key string, value []byte, token string) bool {
	u := target + "/kv/" + escapeKey(key)
	method, body := http.MethodGet, io.Reader(nil)
	if op == "put" {
		method, body = http.MethodPut, bytes.NewReader(value)
	}
	req, err := http.NewRequestWithContext(stop, method, u, body)
	if err != nil {
		st.transport[err.Error()]++
		return true
	}
	setBearer(req, token)
	start := time.Now()
	resp, err := client.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	lat := time.Since(start)
	switch {
	case stop.Err() != nil:
		return false
	case err != nil:
		msg := err.Error()
		var ue *url.Error
		if errors.As(err, &ue) {
			msg = ue.Err.Error()
		}
		st.transport[msg]++
	case resp.StatusCode/100 == 2 || (op == "get" && resp.StatusCode == http.StatusNotFound):
		// A 404 on a GET is a correct answer for a key never written.
		st.latency[op] = append(st.latency[op], lat)
		if resp.StatusCode == http.StatusNotFound {
			st.notFound++
		}
	default:
		st.status[resp.StatusCode]++
	}
	return true
}

// runBench runs the preload (if asked) and the measured run, and prints
// the report to out.
func runBench(ctx context.Context, o benchOptions, out io.Writer) error {
	client := newBenchClient(&o)
	defer client.CloseIdleConnections()
	value := bytes.Repeat([]byte{'v'}, o.valueSize)

	if o.preload {
		pctx, cancel := context.WithTimeout(ctx, benchMaxPreload)
		var next, done atomic.Int64
		start := time.Now()
		st := runWorkers(o.concurrency, func(w int, local *benchStats) {
			for {
				k := next.Add(1) - 1
				if k >= int64(o.keys) || pctx.Err() != nil {
					return
				}
				benchRequest(pctx, client, local, "put", o.targets[(int(k)+w)%len(o.targets)], "key-"+strconv.FormatInt(k, 10), value, o.token)
				done.Add(1)
			}
		})
		cancel()
		failed := sumInts(st.status) + sumInts(st.transport)
		fmt.Fprintf(out, "preload: %d of %d keys in %v, %d errors\n", done.Load(), o.keys, time.Since(start).Round(time.Millisecond), failed)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if done.Load() < int64(o.keys) {
			return fmt.Errorf("preload stopped after %v with %d of %d keys written", benchMaxPreload, done.Load(), o.keys)
		}
	}

	rctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var cursor atomic.Uint64
	start := time.Now()
	total := runWorkers(o.concurrency, func(w int, local *benchStats) {
		rng := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
		for rctx.Err() == nil {
			op := o.op
			if op == "mixed" {
				op = "put"
				if rng.IntN(2) == 1 {
					op = "get"
				}
			}
			t := o.targets[cursor.Add(1)%uint64(len(o.targets))]
			benchRequest(rctx, client, local, op, t, "key-"+strconv.Itoa(rng.IntN(o.keys)), value, o.token)
		}
	})
	printBench(out, &o, total, time.Since(start))
	return ctx.Err()
}

// runWorkers runs work on n goroutines, each recording into its own stats,
// and returns their merged stats once all have returned.
func runWorkers(n int, work func(w int, local *benchStats)) *benchStats {
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := newBenchStats()
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := newBenchStats()
			work(w, local)
			mu.Lock()
			total.merge(local)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return total
}

func sumInts[K comparable](m map[K]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) string { return strconv.FormatFloat(d.Seconds()*1000, 'f', 3, 64) }

// printBench writes the report: per op and overall throughput and latency
// percentiles of successful requests, then errors; the last line is a
// one-line summary for grep and awk.
func printBench(out io.Writer, o *benchOptions, st *benchStats, elapsed time.Duration) {
	fmt.Fprintf(out, "bench: op=%s concurrency=%d duration=%v keys=%d value_size=%d targets=%s\n",
		o.op, o.concurrency, elapsed.Round(time.Millisecond), o.keys, o.valueSize, strings.Join(o.targets, ","))
	var all []time.Duration
	for _, op := range []string{"put", "get"} {
		l := st.latency[op]
		if len(l) == 0 {
			continue
		}
		slices.Sort(l)
		all = append(all, l...)
		fmt.Fprintf(out, "  %-4s %8d ok  %9.1f ops/s  p50 %s ms  p90 %s ms  p99 %s ms  max %s ms\n",
			op, len(l), float64(len(l))/elapsed.Seconds(), ms(percentile(l, 50)), ms(percentile(l, 90)), ms(percentile(l, 99)), ms(l[len(l)-1]))
	}
	if st.notFound > 0 {
		fmt.Fprintf(out, "  %d GETs found no value (404, counted as ok; --preload writes every key first)\n", st.notFound)
	}
	slices.Sort(all)
	non2xx, transport := sumInts(st.status), sumInts(st.transport)
	if non2xx+transport > 0 {
		fmt.Fprintf(out, "  errors: %d (non-2xx %d, transport %d)\n", non2xx+transport, non2xx, transport)
		codes := make([]int, 0, len(st.status))
		for c := range st.status {
			codes = append(codes, c)
		}
		slices.Sort(codes)
		for _, c := range codes {
			fmt.Fprintf(out, "    HTTP %d: %d\n", c, st.status[c])
		}
		for msg, n := range st.transport {
			fmt.Fprintf(out, "    %s: %d\n", msg, n)
		}
	}
	fmt.Fprintf(out, "op=%s ops_per_s=%.1f p50_ms=%s p99_ms=%s errors=%d p90_ms=%s\n",
		o.op, float64(len(all))/elapsed.Seconds(), ms(percentile(all, 50)), ms(percentile(all, 99)), non2xx+transport, ms(percentile(all, 90)))
}
