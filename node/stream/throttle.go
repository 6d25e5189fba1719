package stream

import (
	"context"
	"math"
	"sync"
	"time"
)

// limiter spreads the pages of all transfers so that their bytes average
// at most rate per second. After a page of n bytes, a transfer waits until
// the budget has paid for every page received so far, its own included:
// pulling B bytes from start thus ends no earlier than B/rate later, and
// there is no burst allowance to overshoot with.
type limiter struct {
	rate  float64 // bytes per second; 0 means unlimited
	clock Clock

	mu   sync.Mutex
	next time.Time // when the bytes received so far are paid for
}

func newLimiter(rate int64, clock Clock) *limiter {
	return &limiter{rate: float64(rate), clock: clock}
}

// wait charges n bytes and waits until they are paid for, or ctx ends.
func (l *limiter) wait(ctx context.Context, n int) error {
	if l.rate <= 0 || n <= 0 {
		return ctx.Err()
	}
	now := l.clock.Now()
	l.mu.Lock()
	if l.next.Before(now) {
		l.next = now // idle time earns no credit
	}
	l.next = l.next.Add(time.Duration(math.Ceil(float64(n) * float64(time.Second) / l.rate)))
	d := l.next.Sub(now)
	l.mu.Unlock()
	return sleep(ctx, l.clock, d)
}
