package stream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Progress sums up a gainer's streaming.
type Progress struct {
	// Epoch is the epoch of the change being streamed.
	Epoch uint64
	// Transfers counts the transfers, replaced ones included, and Done
	// those complete (or replaced).
	Transfers, Done int
	// Keys and Bytes count the records and page bytes received.
	Keys, Bytes uint64
}

// Puller is a gainer's side of a topology change: it pulls every transfer
// from its source, page by page, applying each page and then saving its
// state. Its methods are safe for concurrent use; Run runs one at a time.
type Puller struct {
	cfg     Config
	lim     *limiter
	running atomic.Bool

	mu        sync.Mutex
	st        State
	started   time.Time // when Run began
	lastLog   time.Time // of the last progress line
	lastBytes uint64    // Bytes at the last progress line
}

// NewPuller returns a Puller with cfg, after filling its defaults.
func NewPuller(cfg Config) (*Puller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Puller{cfg: cfg, lim: newLimiter(cfg.Throughput, cfg.Clock)}, nil
}

// Run pulls every transfer to completion and returns nil, or returns ctx's
// error. If Dir holds a state for the same epoch and gainer, it resumes
// from it, using transfers only to add the ones the state lacks (a
// transfer is known by its Loser and Source); a state of another change
// is discarded. A state file that cannot be read is an error (wrapping
// ErrMalformed when it is damaged): Clear, then Run again, starts over.
//
// Transfers run a few at a time, sharing the Throughput budget. A transfer
// whose source stays unreachable for FallbackAfter is marked Done and
// Replaced, and a transfer from each of the sources Alternatives names
// takes its place, from the first key: a replacement source may lack keys
// the failed one had already sent.
func (p *Puller) Run(ctx context.Context, epoch uint64, gainer string, transfers []Transfer) error {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("stream: Run is already running")
	}
	defer p.running.Store(false)
	if err := p.begin(epoch, gainer, transfers); err != nil {
		return err
	}
	return p.loop(ctx)
}

// Progress returns the progress of the current or last Run.
func (p *Puller) Progress() Progress {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.progressLocked()
}

// Clear removes the state file. The node calls it once the change has
// committed (or was aborted); it is refused while Run runs.
func (p *Puller) Clear() error {
	if p.running.Load() {
		return errors.New("stream: Clear while Run is running")
	}
	return removeState(p.cfg.Dir)
}

// begin loads or creates the state of the change, adds the transfers it
// lacks and saves it.
func (p *Puller) begin(epoch uint64, gainer string, transfers []Transfer) error {
	fresh := State{Epoch: epoch, Gainer: gainer}
	if err := fresh.validate(); err != nil {
		return fmt.Errorf("stream: run: %w", err)
	}
	for i := range transfers {
		if err := transfers[i].validate(); err != nil {
			return fmt.Errorf("stream: run: transfer %d: %w", i, err)
		}
	}
	st, err := LoadState(p.cfg.Dir)
	switch {
	case errors.Is(err, ErrNoState):
		st = fresh
	case err != nil:
		return err
	case st.Epoch != epoch || st.Gainer != gainer:
		p.cfg.Logger.Info("stream: discarding the state of another change",
			"epoch", st.Epoch, "gainer", st.Gainer, "new_epoch", epoch, "new_gainer", gainer)
		st = fresh
	default:
		p.cfg.Logger.Info("stream: resuming", "epoch", epoch, "transfers", len(st.Transfers))
	}
	for _, t := range transfers {
		if st.index(t.Loser, t.Source) < 0 {
			t.After = cloneKey(t.After)
			st.Transfers = append(st.Transfers, t)
		}
	}
	if err := saveState(p.cfg.Dir, &st); err != nil {
		return err
	}
	now := p.cfg.Clock.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.st = st
	p.started, p.lastLog, p.lastBytes = now, now, p.progressLocked().Bytes
	return nil
}

// loop runs the transfers that are not done, up to maxParallel at a time,
// starting more whenever one ends (a replaced transfer adds others), until
// all are done or ctx ends.
func (p *Puller) loop(ctx context.Context) error {
	finished := make(chan int)
	active := map[int]bool{}
	for {
		if ctx.Err() == nil {
			p.startPending(ctx, active, finished)
		}
		if len(active) == 0 {
			break
		}
		delete(active, <-finished)
	}
	pr := p.Progress()
	if pr.Done < pr.Transfers {
		return ctx.Err()
	}
	p.logDone(pr)
	return nil
}

func (p *Puller) startPending(ctx context.Context, active map[int]bool, finished chan<- int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.st.Transfers {
		if len(active) >= maxParallel {
			return
		}
		if p.st.Transfers[i].Done || active[i] {
			continue
		}
		active[i] = true
		go func() {
			p.pull(ctx, i)
			finished <- i
		}()
	}
}

// index returns the position of the transfer of loser's keys from source,
// or -1.
func (s *State) index(loser, source string) int {
	for i, t := range s.Transfers {
		if t.Loser == loser && t.Source == source {
			return i
		}
	}
	return -1
}

func (p *Puller) progressLocked() Progress {
	pr := Progress{Epoch: p.st.Epoch, Transfers: len(p.st.Transfers)}
	for _, t := range p.st.Transfers {
		if t.Done {
			pr.Done++
		}
		pr.Keys += t.Keys
		pr.Bytes += t.Bytes
	}
	return pr
}

// saveLocked persists the state. A failure is logged, not returned: the
// next page saves again, and a restart meanwhile only repeats pages.
func (p *Puller) saveLocked() {
	if err := saveState(p.cfg.Dir, &p.st); err != nil {
		p.cfg.Logger.Error("stream: save state", "err", err)
	}
}

// logProgressLocked writes a progress line if the last one is logEvery old.
func (p *Puller) logProgressLocked(pr Progress) {
	now := p.cfg.Clock.Now()
	elapsed := now.Sub(p.lastLog)
	if elapsed < logEvery {
		return
	}
	p.cfg.Logger.Info("stream: progress", "epoch", pr.Epoch, "keys", pr.Keys, "bytes", pr.Bytes,
		"bytes_per_sec", int64(float64(pr.Bytes-p.lastBytes)/elapsed.Seconds()),
		"transfers_done", pr.Done, "transfers", pr.Transfers)
	p.lastLog, p.lastBytes = now, pr.Bytes
}

func (p *Puller) logDone(pr Progress) {
	p.mu.Lock()
	elapsed := p.cfg.Clock.Now().Sub(p.started)
	p.mu.Unlock()
	p.cfg.Logger.Info("stream: done", "epoch", pr.Epoch, "keys", pr.Keys, "bytes", pr.Bytes,
		"transfers", pr.Transfers, "elapsed", elapsed)
}
