package node

import (
	"sync"
	"time"
)

// logEvery is how often a warning that repeats under one key is logged: a
// condition retried every gossip round (a hint its target keeps refusing,
// hints dropped for a full store) says so once a minute, not every second.
const logEvery = time.Minute

// logLimiter remembers when each key was last logged, on the node's clock.
type logLimiter struct {
	mu   sync.Mutex
	last map[string]limited
}

type limited struct {
	at         time.Time // when it was last logged
	suppressed int       // warnings not logged since
}

// maxLimitedKeys bounds the keys remembered; keys are per target and
// reason, so the bound is reached only if the members churn a lot.
const maxLimitedKeys = 4096

// allow reports whether the warning under key is due, and how many were
// suppressed since it was last logged.
func (l *logLimiter) allow(key string, now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = map[string]limited{}
	}
	e, ok := l.last[key]
	if ok && now.Sub(e.at) < logEvery {
		e.suppressed++
		l.last[key] = e
		return false, 0
	}
	if !ok && len(l.last) >= maxLimitedKeys {
		for k, old := range l.last {
			if now.Sub(old.at) >= logEvery {
				delete(l.last, k)
			}
		}
		if len(l.last) >= maxLimitedKeys {
			return true, 0 // too many at once to remember: log it
		}
	}
	l.last[key] = limited{at: now}
	return true, e.suppressed
}

// warnEvery logs msg as a warning at most once per logEvery for key; the
// repeats in between go to the debug level, and the next warning says how
// many there were.
func (n *Node) warnEvery(key, msg string, args ...any) {
	ok, suppressed := n.logLimit.allow(key, n.cfg.Clock.Now())
	if !ok {
		n.log.Debug(msg, args...)
		return
	}
	if suppressed > 0 {
		args = append(args, "repeats_not_logged", suppressed)
	}
	n.log.Warn(msg, args...)
}
