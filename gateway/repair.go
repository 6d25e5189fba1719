package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/kvs-db/kvs/node"
)

// RepairLine is one line of POST /admin/repair's answer, newline-delimited
// JSON: one per peer as its round ends, then a last one with Done set and
// the totals. `kvs repair` prints them.
type RepairLine struct {
	// Peer is the other replica of the round; empty on the last line.
	Peer string `json:"peer,omitempty"`
	// Done marks the last line, which carries the totals.
	Done bool `json:"done,omitempty"`
	// Ranges shared, RangesDiffering with different roots, Segments
	// differing, Keys compared, records Pushed and Pulled, bytes sent.
	Ranges          int `json:"ranges"`
	RangesDiffering int `json:"ranges_differing"`
	Segments        int `json:"segments"`
	Keys            int `json:"keys"`
	Pushed          int `json:"pushed"`
	Pulled          int `json:"pulled"`
	BytesSent       int `json:"bytes_sent"`
	BytesReceived   int `json:"bytes_received"`
	// Error says what kind of failure ended the round, if one did; the
	// node's log has the error, with the answer's X-Request-ID.
	Error string `json:"error,omitempty"`
}

// repairTimeout bounds a whole repair: rounds with every peer.
const repairTimeout = 30 * time.Minute

func repairLine(st node.RoundStats, err error) RepairLine {
	l := RepairLine{Peer: st.Peer, Ranges: st.Ranges, RangesDiffering: st.RangesDiffering, Segments: st.Segments,
		Keys: st.Keys, Pushed: st.Pushed, Pulled: st.Pulled, BytesSent: st.BytesSent, BytesReceived: st.BytesReceived}
	if err != nil {
		l.Error = publicMessage(err)
	}
	return l
}

// serveRepair runs an anti-entropy round with every peer now and streams
// one JSON line per peer, then the totals. A node that cannot start a
// repair answers 503 with an error body; once the lines stream, the status
// is 200 and failures are in the lines.
func (g *Gateway) serveRepair(w http.ResponseWriter, r *http.Request) {
	if err := g.node.Ready(); err != nil {
		g.writeNodeError(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), repairTimeout)
	defer cancel()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	emit := func(l RepairLine) {
		_ = enc.Encode(l)
		if flusher != nil {
			flusher.Flush()
		}
	}
	// A failed round's line says what kind of failure it was; the log
	// has the error, with the request ID the response header carries.
	logRound := func(st node.RoundStats, err error) {
		if err != nil {
			g.log.Warn("repair round failed", "request_id", w.Header().Get(headerRequestID), "peer", st.Peer, "err", err)
		}
	}
	total, err := g.node.Repair(ctx, func(st node.RoundStats, err error) {
		logRound(st, err)
		emit(repairLine(st, err))
	})
	logRound(total, err)
	last := repairLine(total, err)
	last.Peer, last.Done = "", true
	emit(last)
}
