// Package stream moves the data of a topology change: when a member joins,
// is decommissioned or is removed, every gainer pulls the keys it receives
// from the members that hold them (its sources). It owns the wire messages
// of that exchange (Request, Page), the source's side (Serve), the
// gainer's side (Puller) and the gainer's resumable state (State, kept in
// one file). It knows nothing of rings or NATS: the node computes which
// keys a source sends (Placement.Streams, as an include function) and
// carries the messages (Config.Request); everything else that is I/O comes
// in through Config as well, so the package is tested with in-memory fakes.
//
// Protocol. A transfer is one (loser, source) pair of a gainer: the keys
// the gainer receives in place of loser, read from source's store. The
// gainer asks for them a page at a time, each request naming where to
// resume:
//
//	gainer                                     source
//	  Request{Epoch, Gainer, Loser, After=nil} ->
//	                                           <- Page{Records, Next=k1}
//	  Request{..., After=k1}                   ->
//	                                           <- Page{Records, Next=k2}
//	  ...                                          (until Done)
//	                                           <- Page{Records, Done}
//
// The source refuses a request whose epoch is not that of its pending
// change, so that a page never mixes two placements. It scans its store in
// key order from just after After, keeps the keys include reports, and
// stops when the page holds MaxBytes of records (capped at MaxPageBytes),
// or when its time budget is spent, so that a request on a sparse range
// still returns before the gainer's timeout; Next says where it stopped
// examining keys, which may be well past the last record. The source holds
// no state between requests: the gainer's After is the only cursor, so
// either side may restart at any time.
//
// The gainer applies each page (apply-if-newer, so replays are harmless)
// and then records the page's Next in its state file, so a restarted gainer
// resumes from the last page it applied, repeating at most the pages in
// flight. Transfers run a few at a time and share one throughput budget. A
// source that stays unreachable for Config.FallbackAfter is replaced by the
// sources Config.Alternatives names (the other current replicas of the
// loser's ranges); the replacements start from the first key, since they
// may lack keys the failed source had already sent.
package stream
