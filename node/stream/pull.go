package stream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kvs-db/kvs/lsm"
)

// failures tracks the consecutive failed attempts of one transfer.
type failures struct {
	n     int       // consecutive failures
	since time.Time // first of the current run of unreachable errors; zero if none
}

// pull runs transfer i until it is done or replaced, or ctx ends.
func (p *Puller) pull(ctx context.Context, i int) {
	var f failures
	for ctx.Err() == nil {
		req, source, ok := p.nextRequest(i)
		if !ok {
			return
		}
		page, n, err := p.fetch(ctx, source, req)
		if err != nil {
			if ctx.Err() != nil || p.failed(i, source, req.Loser, err, &f) {
				return
			}
			if sleep(ctx, p.cfg.Clock, backoff(p.cfg.Retry, f.n)) != nil {
				return
			}
			continue
		}
		f = failures{}
		if !p.apply(ctx, source, page.Records) {
			return
		}
		p.advance(i, page, n)
		if p.lim.wait(ctx, n) != nil {
			return
		}
	}
}

// nextRequest returns the request that continues transfer i, and false if
// the transfer is done.
func (p *Puller) nextRequest(i int) (Request, string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := &p.st.Transfers[i]
	req := Request{Epoch: p.st.Epoch, Gainer: p.st.Gainer, Loser: t.Loser, After: t.After, MaxBytes: p.cfg.PageBytes}
	return req, t.Source, !t.Done
}

// fetch asks source for the page req names and checks that it continues
// from req.After. It returns the page and the size of the reply.
func (p *Puller) fetch(ctx context.Context, source string, req Request) (Page, int, error) {
	rctx, cancel := context.WithTimeout(ctx, p.cfg.RequestTimeout)
	defer cancel()
	rep, err := p.cfg.Request(rctx, source, req.Encode())
	if err != nil {
		if rctx.Err() != nil && ctx.Err() == nil && !errors.Is(err, ErrUnreachable) {
			err = fmt.Errorf("%w: no reply in %v: %w", ErrUnreachable, p.cfg.RequestTimeout, err)
		}
		return Page{}, 0, err
	}
	page, err := DecodePage(rep)
	if err == nil {
		err = checkPage(&page, req.After)
	}
	if err != nil {
		return Page{}, 0, fmt.Errorf("stream: page from %s after %q: %w", source, req.After, err)
	}
	return page, len(rep), nil
}

// checkPage reports a page that does not continue strictly after after:
// taking it would repeat keys or, worse, never end.
func checkPage(p *Page, after []byte) error {
	if after == nil {
		return nil
	}
	if len(p.Records) > 0 && bytes.Compare(p.Records[0].Key, after) <= 0 {
		return fmt.Errorf("%w: record %q not after the resume key", ErrMalformed, p.Records[0].Key)
	}
	if !p.Done && bytes.Compare(p.Next, after) <= 0 {
		return fmt.Errorf("%w: next key %q does not move past the resume key", ErrMalformed, p.Next)
	}
	return nil
}

// failed notes a failed attempt of transfer i and, when source has been
// unreachable for FallbackAfter, hands the transfer to the alternatives.
// It reports whether it did (the transfer is then done).
func (p *Puller) failed(i int, source, loser string, err error, f *failures) bool {
	now := p.cfg.Clock.Now()
	f.n++
	log := p.cfg.Logger.Debug
	if f.n == 1 {
		log = p.cfg.Logger.Warn
	}
	log("stream: request failed", "source", source, "loser", loser, "attempt", f.n, "err", err)
	if !errors.Is(err, ErrUnreachable) {
		f.since = time.Time{} // the source answered
		return false
	}
	if f.since.IsZero() {
		f.since = now
	}
	if now.Sub(f.since) < p.cfg.FallbackAfter || p.cfg.Alternatives == nil {
		return false
	}
	return p.replace(i, p.cfg.Alternatives(loser, source))
}

// replace marks transfer i replaced by transfers of the same loser's keys
// from alts, each from the first key, and reports whether any alternative
// was usable. An alternative that already has a live transfer of those
// keys is used as it is; one whose transfer was itself replaced is
// started again.
func (p *Puller) replace(i int, alts []string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	loser, source := p.st.Transfers[i].Loser, p.st.Transfers[i].Source
	var used []string
	for _, a := range alts {
		if a == source || a == p.st.Gainer || validID(a) != nil {
			continue
		}
		switch j := p.st.index(loser, a); {
		case j < 0:
			p.st.Transfers = append(p.st.Transfers, Transfer{Loser: loser, Source: a})
		case p.st.Transfers[j].Replaced:
			old := p.st.Transfers[j]
			p.st.Transfers[j] = Transfer{Loser: loser, Source: a, Keys: old.Keys, Bytes: old.Bytes}
		}
		used = append(used, a)
	}
	if len(used) == 0 {
		return false
	}
	p.st.Transfers[i].Done, p.st.Transfers[i].Replaced = true, true
	p.saveLocked()
	p.cfg.Logger.Warn("stream: source replaced", "source", source, "loser", loser,
		"after", p.cfg.FallbackAfter, "by", used)
	return true
}

// apply stores recs, retrying until it succeeds or ctx ends (then it
// returns false).
func (p *Puller) apply(ctx context.Context, source string, recs []lsm.Record) bool {
	for n := 1; len(recs) > 0; n++ {
		err := p.cfg.Apply(recs)
		if err == nil {
			return true
		}
		p.cfg.Logger.Error("stream: apply", "source", source, "records", len(recs), "attempt", n, "err", err)
		if sleep(ctx, p.cfg.Clock, backoff(p.cfg.Retry, n)) != nil {
			return false
		}
	}
	return true
}

// advance records page, applied, as received by transfer i, saves the
// state and reports progress.
func (p *Puller) advance(i int, page Page, n int) {
	p.mu.Lock()
	t := &p.st.Transfers[i]
	if page.Next != nil {
		t.After = cloneKey(page.Next) // not an alias of the reply buffer
	}
	t.Done = page.Done
	t.Keys += uint64(len(page.Records))
	t.Bytes += uint64(n)
	p.saveLocked()
	pr := p.progressLocked()
	p.logProgressLocked(pr)
	p.mu.Unlock()
	if p.cfg.OnProgress != nil {
		p.cfg.OnProgress(pr)
	}
}

// cloneKey copies k; empty is nil.
func cloneKey(k []byte) []byte {
	if len(k) == 0 {
		return nil
	}
	return bytes.Clone(k)
}
