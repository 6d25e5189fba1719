package lsm

import (
	"fmt"
	"sync"
	"time"
)

// The commit pipeline: leader/follower group commit, as in LevelDB's writer
// queue or pebble's commit pipeline.
//
// Every write (Apply, ApplyBatch, Purge), every rotation that Flush asks
// for and every timed job (the WAL sync of SyncInterval, a retry that heals
// a stalled write path) is a commitReq that joins one queue. A caller that
// finds no leader becomes the leader: it takes the requests waiting, its
// own first, commits them as one group (one WAL write, one fsync, one
// memtable insertion), answers them, and passes the lead to the first
// request that queued meanwhile, or gives it up when there is none. The
// others (followers) sleep until they are answered or handed the lead. So
// a lone writer commits on its own goroutine, with no hand-off, while
// concurrent writers share WAL writes and fsyncs as before.
//
// Only the leader touches the WAL (db.wal, db.walBuf), the group buffer
// and the heal backoff; the queue's mutex, and the channel that hands the
// lead on, order one leader's work before the next one's.

type reqKind int

const (
	reqApply  reqKind = iota
	reqRotate         // a rotation Flush asked for
	reqSync           // the periodic WAL sync of SyncInterval
	reqHeal           // a retry of a stalled write path
)

type commitReq struct {
	kind reqKind
	// reqApply: the records to commit, each of a different key, which the
	// memtable takes over; the version held for each before, for OnApply;
	// and their WAL frames, concatenated in the same order.
	recs  []Record
	prevs []Version
	frame []byte
	imm   *memtable // reqRotate: the memtable Flush waits for
	// err is the request's outcome, set before it is answered.
	err error
	// done wakes a follower: answered (err is set) or, with lead set,
	// handed the lead. lead is also set on a request whose caller leads
	// from the start, which needs no done. A request whose caller leads is
	// answered without a wake-up, so every wake-up sent is received and
	// done is empty once submit returns (Apply reuses requests).
	done chan struct{}
	lead bool
	// one and onePrev back recs and prevs for a single Apply or Purge, so
	// that it costs no allocation of its own.
	one     [1]Record
	onePrev [1]Version
}

// commitQueue holds the requests waiting for a leader to commit them.
type commitQueue struct {
	mu      sync.Mutex
	waiting []*commitReq
	leading bool // a caller leads; it takes the waiting requests
}

// queued returns how many requests wait for a leader.
func (q *commitQueue) queued() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.waiting)
}

// submit commits req and returns its outcome, leading the commit itself
// when no other caller is.
func (db *DB) submit(req *commitReq) error {
	q := &db.cq
	q.mu.Lock()
	if !q.leading {
		q.leading = true
		req.lead = true // answered by its own caller: no wake-up
		q.waiting = append(q.waiting, req)
		q.mu.Unlock()
		db.lead()
		return req.err
	}
	if req.done == nil {
		req.done = make(chan struct{}, 1)
	}
	q.waiting = append(q.waiting, req)
	q.mu.Unlock()
	<-req.done
	if req.lead {
		db.lead() // req is first in the queue: the group takes it
	}
	return req.err
}

// lead commits one group of the waiting requests, then passes the lead to
// the next waiting request or gives it up.
func (db *DB) lead() {
	g := db.takeGroup()
	db.commitAll(g)
	clear(g)
	q := &db.cq
	q.mu.Lock()
	if len(q.waiting) == 0 {
		q.leading = false
		q.mu.Unlock()
		return
	}
	next := q.waiting[0]
	next.lead = true
	q.mu.Unlock()
	next.done <- struct{}{}
}

// takeGroup takes the requests at the front of the queue that one group
// holds: up to maxCommitBatch of them, and no more once maxCommitBytes of
// frames are taken (the last one taken may go past it).
func (db *DB) takeGroup() []*commitReq {
	q := &db.cq
	q.mu.Lock()
	defer q.mu.Unlock()
	n, size := 0, 0
	for n < len(q.waiting) && n < maxCommitBatch && size < maxCommitBytes {
		size += len(q.waiting[n].frame)
		n++
	}
	db.group = append(db.group[:0], q.waiting[:n]...)
	rest := copy(q.waiting, q.waiting[n:])
	clear(q.waiting[rest:])
	q.waiting = q.waiting[:rest]
	return db.group
}

// commitAll runs a group in queue order: each run of adjacent writes as
// one commit, each other request on its own.
func (db *DB) commitAll(g []*commitReq) {
	for i := 0; i < len(g); {
		if g[i].kind != reqApply {
			db.runJob(g[i])
			i++
			continue
		}
		j := i
		for j < len(g) && g[j].kind == reqApply {
			j++
		}
		db.commitGroup(g[i:j])
		i = j
	}
}

// answer sets r's outcome and wakes its caller if it waits (a request
// whose caller leads is not waiting). After the wake-up the leader no
// longer touches r: its caller may reuse it.
func answer(r *commitReq, err error) {
	r.err = err
	if r.done != nil && !r.lead {
		r.done <- struct{}{}
	}
}

// refuse answers every request of g with err.
func refuse(g []*commitReq, err error) {
	for _, r := range g {
		answer(r, err)
	}
}

// runJob runs a request that is not a write.
func (db *DB) runJob(req *commitReq) {
	switch req.kind {
	case reqRotate:
		db.handleRotate(req)
	case reqSync:
		if db.wal.dirty && db.readOnlyErr() == nil {
			if err := db.syncWAL(); err != nil {
				db.setReadOnly(err)
			}
		}
		answer(req, nil)
	case reqHeal:
		db.heal()
		answer(req, nil)
	}
}

// tickLoop runs the timed jobs of the commit pipeline: the WAL sync of
// SyncInterval, and the retries that heal a stalled write path (writeFailed
// kicks it when the path stalls). It submits them as requests, so that
// they run on a leader like any write. It returns when Close begins.
func (db *DB) tickLoop() {
	defer db.commitWG.Done()
	var tick <-chan time.Time
	if db.opts.Sync == SyncInterval {
		t := time.NewTicker(db.opts.SyncInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		var heal <-chan time.Time
		if db.stalledErr() != nil && db.readOnlyErr() == nil {
			heal = time.After(time.Until(time.Unix(0, db.healAt.Load())))
		}
		select {
		case <-heal:
			db.submit(&commitReq{kind: reqHeal})
		case <-tick:
			db.submit(&commitReq{kind: reqSync})
		case <-db.stallKick:
		case <-db.closing:
			return
		}
	}
}

func (db *DB) syncWAL() error {
	start := time.Now()
	err := db.wal.sync()
	db.stats.recordSync(time.Since(start))
	return err
}

// closeWAL trims the space reserved past the WAL's last frame, syncs and
// closes the WAL; Close calls it once no request can be submitted any more.
func (db *DB) closeWAL() {
	if db.readOnlyErr() == nil {
		if err := db.wal.trim(); err != nil {
			db.opts.Logger.Warn("lsm: trim WAL on close", "err", err)
		}
	}
	if db.readOnlyErr() == nil && db.wal.dirty {
		if err := db.syncWAL(); err != nil {
			db.closeErr = err
		}
	}
	if err := db.wal.f.Close(); err != nil && db.closeErr == nil {
		db.closeErr = fmt.Errorf("lsm: close WAL %s: %w", db.wal.name, err)
	}
}

// admit is what the commit leader checks before it writes: it first tries
// to heal a stalled store (transient.go), then returns the error the write
// must be refused with (writeRefusal), nil if it may go on.
func (db *DB) admit() error {
	if db.stalledErr() != nil {
		db.heal()
	}
	return db.writeRefusal()
}

// commitGroup writes the frames of the writes g to the WAL in one write,
// syncs once (SyncAlways), inserts the records into the memtable and
// answers the writes; it rotates the memtable once it is full.
func (db *DB) commitGroup(g []*commitReq) {
	if err := db.admit(); err != nil {
		refuse(g, err)
		return
	}
	if err := db.writeGroup(g); err != nil {
		refuse(g, err)
		return
	}
	full := db.insertGroup(g)
	for _, r := range g {
		answer(r, nil)
	}
	if full {
		// The group is committed whatever happens here; a rotation that
		// fails stalls the writes that follow, so that the memtable does
		// not outgrow its bound.
		if _, err := db.rotate(false); err != nil {
			db.writeFailed(err)
		}
	}
}

// writeGroup writes the frames of g to the WAL in one write and, under
// SyncAlways, syncs it. A write that fails transiently is cut back out of
// the WAL (transient.go). It returns the error for the callers of g.
func (db *DB) writeGroup(g []*commitReq) error {
	var buf []byte
	if len(g) == 1 {
		// A lone request is written as is, uncopied.
		buf = g[0].frame
	} else {
		buf = db.walBuf[:0]
		for _, r := range g {
			buf = append(buf, r.frame...)
		}
		db.walBuf = buf
		if cap(db.walBuf) > maxCommitBytes {
			db.walBuf = nil
		}
	}
	start := db.wal.size
	err := db.wal.write(buf)
	if err == nil && db.opts.Sync == SyncAlways {
		err = db.syncWAL()
	}
	db.stats.commitGroups.Add(1)
	db.stats.walBytes.Add(uint64(len(buf)))
	if err == nil {
		return nil
	}
	if isTransient(err) {
		// The group never reached the memtable; take it out of the WAL
		// too.
		if cerr := db.wal.cutBack(start); cerr != nil {
			err = fmt.Errorf("%w (and undoing it failed: %w)", err, cerr)
			db.setReadOnly(err)
			return err
		}
	}
	return db.writeFailed(err)
}

// insertGroup inserts the records of g into the memtable, calling OnApply
// for each, and reports whether the memtable is full. OnApply runs under
// the same lock as the inserts, so that every snapshot sees a record
// exactly when it follows the record's call.
func (db *DB) insertGroup(g []*commitReq) (full bool) {
	hook := db.opts.OnApply
	db.mu.Lock()
	defer db.mu.Unlock()
	for _, r := range g {
		for i := range r.recs {
			db.mem.put(r.recs[i])
			if hook != nil {
				hook(r.recs[i].Key, r.prevs[i], heldAfter(&r.recs[i]))
			}
		}
	}
	return db.mem.bytes >= db.opts.MemtableBytes
}

func (db *DB) handleRotate(req *commitReq) {
	if err := db.admit(); err != nil {
		answer(req, err)
		return
	}
	imm, err := db.rotate(false)
	if err != nil {
		// A Flush asked for this rotation, not a full memtable: the
		// current WAL and memtable take writes as before, and only the
		// Flush fails on a transient error.
		if isTransient(err) {
			db.stats.transientErrors.Add(1)
			err = transientErr(err)
		} else {
			db.setReadOnly(err)
		}
		answer(req, err)
		return
	}
	req.imm = imm
	answer(req, nil)
}
