package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/kvs-db/kvs/lsm"
)

// Defaults of Config.
const (
	// DefaultFallbackAfter is how long a source may stay unreachable before
	// other sources take over: long enough to ride out a restart of the
	// source, short enough that a dead one does not hold the change up.
	DefaultFallbackAfter = 30 * time.Second
	// DefaultPageBytes is the MaxBytes of each request: MaxPageBytes.
	DefaultPageBytes = MaxPageBytes
	// DefaultRequestTimeout bounds one request: a source's time budget
	// must fit in it with room for the transfer of a full page.
	DefaultRequestTimeout = 5 * time.Second
	// DefaultRetry is the first wait after a failed attempt; the wait
	// doubles with each consecutive failure up to maxBackoff times it
	// (4s by default).
	DefaultRetry = 500 * time.Millisecond
)

const (
	// maxBackoff caps the growth of the wait between attempts at this
	// multiple of Config.Retry.
	maxBackoff = 8
	// maxParallel is how many transfers of a puller run at once: enough to
	// overlap one source's scan with another's network, few enough that a
	// gainer does not load every member at once.
	maxParallel = 4
	// logEvery is the period of progress log lines.
	logEvery = 5 * time.Second
)

// ErrUnreachable is wrapped by the errors of Config.Request that mean the
// source did not answer. A source that keeps failing so for FallbackAfter
// is replaced by Config.Alternatives.
var ErrUnreachable = errors.New("stream: source unreachable")

// ErrInvalidConfig is wrapped by the errors of Config.Validate.
var ErrInvalidConfig = errors.New("stream: invalid config")

// Clock is the puller's source of time: for the waits between attempts,
// the throttle and the fallback deadline. Tests inject one on which
// waiting takes no real time.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Config holds a Puller's parameters and seams. Validate fills defaults.
type Config struct {
	// Dir is where the state file (stream.json) lives. Required.
	Dir string
	// Request sends an encoded Request to source and returns the encoded
	// reply. Errors that mean the source is unreachable wrap
	// ErrUnreachable (the node maps its own transport error to it); so
	// does, added by the puller, an error after RequestTimeout. Any other
	// error (the source refused the epoch, a malformed page) is retried
	// too, but does not count toward FallbackAfter: the source answered.
	// Required.
	Request func(ctx context.Context, source string, req []byte) ([]byte, error)
	// Apply stores received records, each only if newer than the version
	// held (replays are harmless). It is called before the state records
	// the page as received; a failure is retried. The records alias the
	// reply buffer, which the puller does not reuse. Required.
	Apply func(recs []lsm.Record) error
	// Alternatives returns the sources to use instead of failed for
	// loser's keys when failed stays unreachable (the node returns the
	// other live current replicas of loser's ranges); nil or empty means
	// keep retrying failed. Optional.
	Alternatives func(loser, failed string) []string
	// FallbackAfter is how long a source may stay unreachable before
	// Alternatives is asked (default DefaultFallbackAfter).
	FallbackAfter time.Duration
	// Throughput bounds the page bytes per second received across all
	// transfers of the puller, so that streaming leaves room for client
	// traffic; 0 means unlimited (the default; the node passes a flag).
	Throughput int64
	// PageBytes is the MaxBytes of each request, at most MaxPageBytes
	// (default DefaultPageBytes).
	PageBytes int
	// RequestTimeout bounds each request (default DefaultRequestTimeout).
	RequestTimeout time.Duration
	// Retry is the wait after a failed attempt, doubling with each
	// consecutive failure up to 8 times Retry (default DefaultRetry).
	Retry time.Duration
	// Clock is the source of time for waits and deadlines (default: the
	// system clock).
	Clock Clock
	// Logger receives a progress line every few seconds (keys, bytes,
	// rate, transfers done) and the failures (default: discard).
	Logger *slog.Logger
	// OnProgress, if set, is called after every page applied. It runs on
	// the pulling goroutines, possibly several at once, so it must be
	// cheap and safe for concurrent use.
	OnProgress func(Progress)
}

// Validate fills defaults and reports invalid values with errors wrapping
// ErrInvalidConfig.
func (c *Config) Validate() error {
	switch {
	case c.Dir == "":
		return fmt.Errorf("%w: Dir is required", ErrInvalidConfig)
	case c.Request == nil:
		return fmt.Errorf("%w: Request is required", ErrInvalidConfig)
	case c.Apply == nil:
		return fmt.Errorf("%w: Apply is required", ErrInvalidConfig)
	case c.Throughput < 0:
		return fmt.Errorf("%w: negative Throughput %d", ErrInvalidConfig, c.Throughput)
	case c.PageBytes < 0 || c.PageBytes > MaxPageBytes:
		return fmt.Errorf("%w: PageBytes %d out of range [0 (default), MaxPageBytes %d]", ErrInvalidConfig, c.PageBytes, MaxPageBytes)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"FallbackAfter", &c.FallbackAfter, DefaultFallbackAfter},
		{"RequestTimeout", &c.RequestTimeout, DefaultRequestTimeout},
		{"Retry", &c.Retry, DefaultRetry},
	} {
		if *d.v < 0 {
			return fmt.Errorf("%w: negative %s %v", ErrInvalidConfig, d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.PageBytes == 0 {
		c.PageBytes = DefaultPageBytes
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// sleep waits d on clock, or until ctx ends (then it returns ctx's error).
func sleep(ctx context.Context, clock Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-clock.After(d):
		return nil
	}
}

// backoff is the wait after the n-th consecutive failure (n >= 1).
func backoff(retry time.Duration, n int) time.Duration {
	m := time.Duration(1)
	for i := 1; i < n && m < maxBackoff; i++ {
		m *= 2
	}
	return retry * m
}
