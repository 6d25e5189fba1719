package node

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/kvs-db/kvs/lsm"
)

// countingHandler counts log records by level and message; every logger
// derived from it (With) counts into the same tally.
type countingHandler struct {
	mu     *sync.Mutex
	counts map[string]int // "LEVEL msg"
}

func newCountingHandler() *countingHandler {
	return &countingHandler{mu: &sync.Mutex{}, counts: map[string]int{}}
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *countingHandler) WithGroup(string) slog.Handler            { return h }

func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counts[r.Level.String()+" "+r.Message]++
	return nil
}

func (h *countingHandler) count(level slog.Level, msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counts[level.String()+" "+msg]
}

// A hint this node holds for itself that its own replica keeps refusing
// (here: a version more than MaxClockAhead ahead of its clock) is retried
// every handoff round, but warned about once a minute of the node's clock;
// the rounds in between log at debug level.
func TestSelfHintRefusalWarnsOncePerMinute(t *testing.T) {
	logs := newCountingHandler()
	c := newTestCluster(t, three, func(cfg *Config) {
		if cfg.ID == "n1" {
			cfg.Logger = slog.New(logs)
		}
	})
	n1 := c.node("n1")
	future := uint64(c.clock.Now().Add(10*time.Hour).UnixMilli()) << 16
	if _, err := n1.hints.add("n1", lsm.Record{Key: []byte("k"), Value: []byte("v"), Version: lsm.Version{Counter: future, Node: 7}}); err != nil {
		t.Fatal(err)
	}
	n1.wakeHandoff()
	// Handoff rounds run every GossipInterval (10 ms of real time).
	waitFor(t, 10*time.Second, "five refused rounds", func() bool { return logs.count(slog.LevelDebug, "hint refused") >= 5 })
	if got := logs.count(slog.LevelWarn, "hint refused"); got != 1 {
		t.Errorf("%d warnings over %d rounds within a minute, want 1", got, logs.count(slog.LevelDebug, "hint refused")+got)
	}
	c.clock.Advance(logEvery)
	waitFor(t, 10*time.Second, "the warning a minute later", func() bool { return logs.count(slog.LevelWarn, "hint refused") == 2 })
	debugs := logs.count(slog.LevelDebug, "hint refused")
	waitFor(t, 10*time.Second, "five more rounds", func() bool { return logs.count(slog.LevelDebug, "hint refused") >= debugs+5 })
	if got := logs.count(slog.LevelWarn, "hint refused"); got != 2 {
		t.Errorf("%d warnings after the clock moved a minute, want 2", got)
	}
	if got := n1.hints.pendingByTarget()["n1"]; got != 1 {
		t.Errorf("n1 holds %d hints for itself, want the refused one kept", got)
	}
}

func TestLogLimiter(t *testing.T) {
	var l logLimiter
	t0 := time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)
	for i, tc := range []struct {
		key        string
		at         time.Duration
		ok         bool
		suppressed int
	}{
		{"a", 0, true, 0},
		{"a", time.Second, false, 0},
		{"b", time.Second, true, 0}, // keys are independent
		{"a", 59 * time.Second, false, 0},
		{"a", logEvery, true, 2}, // due again: two were not logged
		{"a", logEvery + time.Second, false, 0},
	} {
		ok, sup := l.allow(tc.key, t0.Add(tc.at))
		if ok != tc.ok || sup != tc.suppressed {
			t.Errorf("#%d allow(%s, +%v) = %v, %d; want %v, %d", i, tc.key, tc.at, ok, sup, tc.ok, tc.suppressed)
		}
	}
}
