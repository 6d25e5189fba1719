package node

import "fmt"

// quorumResult is the state of a quorum: won, still pending, or lost (it can
// no longer be won whatever the outstanding replies say).
type quorumResult int

const (
	quorumPending quorumResult = iota
	quorumWon
	quorumLost
)

func (r quorumResult) String() string {
	switch r {
	case quorumPending:
		return "pending"
	case quorumWon:
		return "won"
	case quorumLost:
		return "lost"
	}
	return fmt.Sprintf("quorumResult(%d)", int(r))
}

// tally counts the replies of one fanned-out request against a quorum: need
// successes out of total participants. It is not safe for concurrent use; the
// coordinator feeds it from one goroutine.
type tally struct {
	need, total int
	ok, failed  int
}

// newTally returns a tally needing need successes among total participants.
func newTally(need, total int) *tally { return &tally{need: need, total: total} }

// success records one successful reply.
func (t *tally) success() quorumResult { t.ok++; return t.result() }

// failure records one failed reply (error, timeout, or a participant known
// to be down).
func (t *tally) failure() quorumResult { t.failed++; return t.result() }

// result says whether the quorum is won, pending, or lost.
func (t *tally) result() quorumResult {
	switch {
	case t.need <= 0:
		return quorumWon
	case t.ok >= t.need:
		return quorumWon
	case t.total-t.failed < t.need:
		return quorumLost
	}
	return quorumPending
}

// outstanding is the number of participants that have not replied.
func (t *tally) outstanding() int { return t.total - t.ok - t.failed }

// String renders the tally for error messages: "2 of 3 acks needed, 1
// received".
func (t *tally) String() string {
	return fmt.Sprintf("%d of %d needed, %d received, %d failed", t.need, t.total, t.ok, t.failed)
}
