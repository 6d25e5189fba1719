package bus

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// LevelTrace is the slog level nats-server protocol traces are logged at.
// Tracing is switched on in the server only when the logger is enabled at
// this level; it logs every message and costs a lot.
const LevelTrace = slog.LevelDebug - 4

// repeatWindow is how long a repeated warning or error is logged only once
// at its own level; repeats within the window go to debug.
const repeatWindow = 30 * time.Second

// churnMarkers are substrings of nats-server warnings and errors that are
// about connections coming and going: expected whenever a peer restarts,
// pauses or is unreachable, so they are logged at debug (closures) or warn
// (failed dials and I/O errors), never at error.
var churnMarkers = []string{
	"connection closed",
	"Error trying to connect to route",
	"Error reading from",
	"Error flushing",
	"Readloop processing time",
	"Stale Client Connection",
	"connection reset by peer",
	"broken pipe",
	"i/o timeout",
	"use of closed network connection",
	"Detected route to self",
	"duplicate route",
}

// clientFaults are nats-server errors caused by the other side (a client
// or a peer with a wrong or missing secret), logged at warn.
var clientFaults = []string{
	"authentication error",
	// A login that tries what its permissions forbid (the watch user
	// publishing, say).
	"Publish Violation",
	"Subscription Violation",
	// A client's handshake on the client port; a route's ("TLS route
	// handshake error") is the cluster's own trouble and stays an error.
	"TLS handshake error",
}

// quietWarnings are nats-server warnings that our own configuration causes
// on purpose and that would otherwise be printed on every start.
var quietWarnings = []string{
	// The cluster secret is a shared password by design.
	"Plaintext passwords detected",
}

// jetStreamRoutine are substrings of nats-server warnings that JetStream
// logs in its normal course: meta-layer snapshots (compaction, shutdown), a
// replica catching up, a stream's replicas being moved (replicas changed,
// a peer removed). They are logged at debug.
var jetStreamRoutine = []string{
	"Metalayer blocking snapshot",
	"resetting first sequence",
	"detected stream remapping",
}

// startupWarnings are nats-server warnings expected while a server starts
// and finds its peers. Within startupWindow of the server's start they are
// logged at debug; later they mean trouble (no routes, no JetStream meta
// leader: a health check repeats the latter every hour) and stay warnings.
var startupWarnings = []string{
	"Waiting for routing to be established",
	"JetStream has not established contact with a meta leader",
	"JetStream is not current with the meta leader",
}

// startupWindow is how long after the server starts startupWarnings and
// first failed route dials are expected.
const startupWindow = time.Minute

// firstRouteDial begins nats-server's error for the first failed dial of a
// route connection. While a cluster starts, every node fails its first dial
// to each peer that is not listening yet: within startupWindow that failure
// is logged at debug. nats-server uses the same message for a first
// connection and for a reconnection after a route was lost, so a route lost
// within the window is also at debug on its first failed redial; the node
// layer warns "peer down" for it anyway. Later failures of the same dial are
// reported every [routeDialReports] attempts and are warnings, so a seed
// that never answers is still reported about a minute after the start.
const firstRouteDial = "Error trying to connect to route (attempt 1):"

// warnNotices are substrings of nats-server notices that are worth a
// warning: the server logs them as notices, but they mean lost messages or
// a peer that cannot keep up.
var warnNotices = []string{
	"Slow Consumer",
}

// slogAdapter implements server.Logger on top of slog. Notices (startup
// banner, routes forming, connections closing) go to debug; connection
// churn never reaches error; a warning or error that repeats is logged at
// its level once per repeatWindow and at debug otherwise.
type slogAdapter struct {
	log     *slog.Logger
	now     func() time.Time // clock, for tests
	started time.Time        // when the adapter (and its server) started

	mu    sync.Mutex
	last  map[string]time.Time // repeat key -> last time logged at its level
	fatal error                // first Fatalf, reported by Start
}

var _ server.Logger = (*slogAdapter)(nil)

func newSlogAdapter(l *slog.Logger) *slogAdapter {
	return &slogAdapter{log: l, now: time.Now, started: time.Now(), last: make(map[string]time.Time)}
}

// Noticef logs server notices at debug, except the few that mean trouble.
func (a *slogAdapter) Noticef(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if containsAny(msg, warnNotices) {
		a.logRepeated(slog.LevelWarn, msg)
		return
	}
	a.emit(slog.LevelDebug, msg)
}

// Warnf logs server warnings at warn; connection churn, JetStream's
// routine and the warnings of a normal start at debug.
func (a *slogAdapter) Warnf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if containsAny(msg, churnMarkers) || containsAny(msg, quietWarnings) || containsAny(msg, jetStreamRoutine) ||
		containsAny(msg, startupWarnings) && a.starting() {
		a.emit(slog.LevelDebug, msg)
		return
	}
	a.logRepeated(slog.LevelWarn, msg)
}

// Errorf logs server errors at error; connection churn and authentication
// failures of others at warn (closures, and first failed route dials while
// the server starts, at debug); repeats are rate limited.
func (a *slogAdapter) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if containsAny(msg, churnMarkers) {
		if strings.Contains(msg, "connection closed") || strings.HasPrefix(msg, firstRouteDial) && a.starting() {
			a.emit(slog.LevelDebug, msg)
			return
		}
		a.logRepeated(slog.LevelWarn, msg)
		return
	}
	if containsAny(msg, clientFaults) || strings.Contains(msg, removedFromCluster) {
		a.logRepeated(slog.LevelWarn, msg)
		return
	}
	a.logRepeated(slog.LevelError, msg)
}

// starting reports whether the server started less than startupWindow ago.
func (a *slogAdapter) starting() bool {
	return a.now().Sub(a.started) < startupWindow
}

// removedFromCluster is part of the error a server logs when the JetStream
// meta group removes it: every decommissioned node sees it as it leaves,
// so it is a warning, not an error.
const removedFromCluster = "our server was removed from the cluster"

// Fatalf logs at error and records the error so that Start can report it.
// Unlike nats-server's own loggers it does not exit the process: the server
// calls Fatalf when it cannot listen and then stops, and Start fails.
func (a *slogAdapter) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	a.mu.Lock()
	if a.fatal == nil {
		a.fatal = fmt.Errorf("nats-server: %s", msg)
	}
	a.mu.Unlock()
	a.emit(slog.LevelError, msg, slog.Bool("fatal", true))
}

// Debugf logs at debug.
func (a *slogAdapter) Debugf(format string, v ...any) {
	a.emit(slog.LevelDebug, fmt.Sprintf(format, v...))
}

// Tracef logs at LevelTrace.
func (a *slogAdapter) Tracef(format string, v ...any) {
	a.emit(LevelTrace, fmt.Sprintf(format, v...))
}

// fatalErr returns the first error passed to Fatalf, if any.
func (a *slogAdapter) fatalErr() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fatal
}

// logRepeated logs msg at level unless a message of the same shape was
// logged at level within repeatWindow, in which case it goes to debug.
func (a *slogAdapter) logRepeated(level slog.Level, msg string) {
	if !a.log.Enabled(context.Background(), level) {
		return
	}
	key := level.String() + " " + repeatKey(msg)
	now := a.now()
	a.mu.Lock()
	last, seen := a.last[key]
	if !seen || now.Sub(last) >= repeatWindow {
		if len(a.last) >= 1024 { // bound memory: forget everything
			clear(a.last)
		}
		a.last[key] = now
	} else {
		level = slog.LevelDebug
	}
	a.mu.Unlock()
	a.emit(level, msg)
}

func (a *slogAdapter) emit(level slog.Level, msg string, attrs ...slog.Attr) {
	a.log.LogAttrs(context.Background(), level, msg, append(attrs, slog.String("component", "nats"))...)
}

// repeatKey is msg with every run of digits replaced by '#', so that the
// same complaint about another connection id, attempt number or port is
// recognised as a repeat.
func repeatKey(msg string) string {
	var b strings.Builder
	b.Grow(len(msg))
	inDigits := false
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c >= '0' && c <= '9' {
			if !inDigits {
				b.WriteByte('#')
			}
			inDigits = true
			continue
		}
		inDigits = false
		b.WriteByte(c)
	}
	return b.String()
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// discardLogger returns a logger that drops everything.
func discardLogger() *slog.Logger {
	return slog.New(slog.DiscardHandler)
}
