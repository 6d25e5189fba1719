package lsm

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// maxImmutable is how many frozen memtables may wait for their flush before
// writes stall.
const maxImmutable = 2

// maxCommitBatch bounds how many Apply calls share one WAL write.
const maxCommitBatch = 1024

// maxCommitBytes is the WAL write size at which a leader stops taking
// more requests into a group (the last one taken may go past it), and the
// size of WAL frames ApplyBatch commits at once: it bounds the memory a
// group holds and how long a batch keeps its keys locked.
const maxCommitBytes = 4 << 20

// stripes serialise the read-check-write of Apply per key.
const stripes = 256

// DB is an LSM-tree store of versioned records. It is safe for concurrent
// use.
type DB struct {
	opts  Options
	fs    FS
	dir   string
	stats dbStats
	cache *blockCache
	lock  io.Closer // the LOCK file, held while open

	qmu         sync.Mutex
	quarantined []QuarantinedTable
	qCh         chan qReq   // corrupt tables found by reads
	noCompact   atomic.Bool // compaction met corruption and stopped

	// closeMu is held shared by every public call and exclusively by Close.
	closeMu sync.RWMutex
	closed  bool
	// closing is closed when Close begins, before it waits for the calls
	// in flight: waits that only a retry would end (a flush, a directory
	// sync) give up then.
	closing   chan struct{}
	closeOnce sync.Once
	// running is set once Open has recovered: from then on a manifest in
	// place whose directory sync fails transiently is synced again until it
	// works (transient.go); during Open, the failure fails Open.
	running atomic.Bool

	// mu guards mem, imms and cur. immCond (on mu's write lock) signals
	// that an immutable memtable was flushed or that the DB failed.
	mu      sync.RWMutex
	immCond *sync.Cond
	mem     *memtable
	imms    []*memtable // oldest first
	cur     *version

	keyLocks [stripes]sync.Mutex

	nextFileNum atomic.Uint64
	roErr       atomic.Pointer[error]
	roCh        chan struct{} // closed when roErr is set
	// stalled is the transient error the write path is stalled on (nil:
	// it is not); the commit pipeline sets and clears it (transient.go).
	stalled atomic.Pointer[error]
	// flushState reports the flusher's transient failures; compactErr is
	// the compactor's last one, nil once a compaction works again.
	flushState bgState
	compactErr atomic.Pointer[error]

	reqPool sync.Pool // of *commitReq, for Apply and Purge
	// cq is the commit pipeline's queue (commit.go). The fields after it
	// up to healAt belong to the leader of the moment.
	cq       commitQueue
	wal      *walWriter
	walBuf   []byte
	group    []*commitReq // the group being committed
	healWait backoff      // the heal retry schedule
	// healAt is when the next heal may be tried (Unix nanoseconds); the
	// leader sets it, tickLoop reads it. stallKick wakes tickLoop when the
	// write path stalls.
	healAt    atomic.Int64
	stallKick chan struct{}
	commitWG  sync.WaitGroup // tickLoop
	closeErr  error          // the final WAL sync/close error

	// installMu serialises manifest updates and the installation of the
	// table list that goes with them (flushes and compactions).
	installMu   sync.Mutex
	flushCh     chan struct{}
	compactKick chan struct{}
	compactCh   chan compactReq
	quit        chan struct{}
	bgWG        sync.WaitGroup
}

// version is an immutable list of live tables, newest first, shared by
// readers through a reference count.
type version struct {
	tables []*table
	refs   atomic.Int32
}

func newVersion(tables []*table) *version {
	v := &version{tables: tables}
	for _, t := range tables {
		t.ref()
	}
	v.refs.Store(1)
	return v
}

func (v *version) ref() { v.refs.Add(1) }

func (v *version) unref() {
	if v.refs.Add(-1) == 0 {
		for _, t := range v.tables {
			t.unref()
		}
	}
}

// heldAfter returns the version a committed record leaves held: none for a
// purge marker.
func heldAfter(rec *Record) Version {
	if rec.purged {
		return Version{}
	}
	return rec.Version
}

// Open opens or creates the store in opts.Dir, replaying the WAL.
func Open(opts Options) (*DB, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	db := &DB{
		opts:        opts,
		fs:          opts.FS,
		dir:         opts.Dir,
		stallKick:   make(chan struct{}, 1),
		flushCh:     make(chan struct{}, 1),
		compactKick: make(chan struct{}, 1),
		compactCh:   make(chan compactReq),
		qCh:         make(chan qReq, 16),
		quit:        make(chan struct{}),
		roCh:        make(chan struct{}),
		closing:     make(chan struct{}),
		healWait:    newBackoff(&opts),
	}
	db.immCond = sync.NewCond(&db.mu)
	db.cache = newBlockCache(opts.BlockCacheBytes)
	if err := db.fs.MkdirAll(db.dir); err != nil {
		return nil, fmt.Errorf("lsm: create %s: %w", db.dir, err)
	}
	lock, err := db.fs.Lock(join(db.dir, lockName))
	if err != nil {
		return nil, fmt.Errorf("lsm: %s is in use: %w", db.dir, err)
	}
	db.lock = lock
	if err := db.recover(); err != nil {
		lock.Close()
		return nil, err
	}
	db.running.Store(true)
	db.commitWG.Add(1)
	go db.tickLoop()
	db.bgWG.Add(2)
	go db.flushLoop()
	go db.compactLoop()
	kick(db.compactKick)
	return db, nil
}

func (db *DB) newFileNum() uint64 { return db.nextFileNum.Add(1) - 1 }

// memtableKeys is how many keys a full memtable holds when its records are
// small (a short key and a value of about 100 bytes, 128 bytes beyond the
// entry's overhead): its index starts at that size, and grows past it.
func (db *DB) memtableKeys() int {
	return int(max(db.opts.MemtableBytes/(memEntryOverhead+128), 1))
}

// recover loads the manifest and tables, replays the WAL into a table and
// starts the WAL to write to (startWAL).
func (db *DB) recover() (err error) {
	fsys, dir := db.fs, db.dir
	names, err := fsys.List(dir)
	if err != nil {
		return fmt.Errorf("lsm: list %s: %w", dir, err)
	}
	m, exists, err := readManifest(fsys, dir)
	if err != nil {
		return err
	}
	var maxNum uint64
	var logs []uint64
	for _, n := range names {
		num, kind, ok := parseName(n)
		if !ok {
			continue
		}
		maxNum = max(maxNum, num)
		if !exists {
			return corruptf(manifestName, 0, "manifest missing but %s exists", n)
		}
		if kind == "log" && num >= m.logNum {
			logs = append(logs, num)
		}
	}
	if !exists {
		m = manifest{nextFileNum: 1}
	}
	db.nextFileNum.Store(max(m.nextFileNum, maxNum+1, 1))

	var tables []*table
	defer func() {
		if err != nil {
			for _, t := range tables {
				t.f.Close()
			}
		}
	}()
	live := map[string]bool{}
	var quarantine []string
	for _, mt := range m.tables {
		name := tableName(mt.num)
		t, err := openTable(fsys, join(dir, name), name, mt.num, &db.stats, db.cache)
		if err == nil && uint64(t.size) != mt.size {
			t.f.Close()
			err = corruptf(name, t.size, "table is %d bytes, the manifest says %d", t.size, mt.size)
		}
		if err != nil {
			if db.opts.QuarantineCorrupt && errors.Is(err, ErrCorrupt) {
				db.opts.Logger.Error("lsm: quarantining corrupt table", "table", name, "err", err)
				quarantine = append(quarantine, name)
				live[name] = true // not an orphan: moved aside below
				db.quarantined = append(db.quarantined, QuarantinedTable{Table: name, Err: err.Error()})
				continue
			}
			return err
		}
		tables = append(tables, t)
		live[name] = true
	}

	// Replay the WAL files the manifest still needs, oldest first.
	sort.Slice(logs, func(i, j int) bool { return logs[i] < logs[j] })
	mem := newMemtable(0, 0) // replay: the WAL's records, however many
	for i, num := range logs {
		name := logName(num)
		f, err := fsys.Open(join(dir, name))
		if err != nil {
			return fmt.Errorf("lsm: open WAL %s: %w", name, err)
		}
		data, err := readAll(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("lsm: read WAL %s: %w", name, err)
		}
		end, tail, err := decodeWAL(name, data, func(_ int64, rec Record) error {
			if old, ok := mem.get(rec.Key); replaces(old, ok, rec) {
				mem.put(cloneRecord(rec))
			}
			return nil
		})
		if err != nil {
			return err
		}
		if tail == walTorn {
			if i != len(logs)-1 {
				// Every WAL but the newest was fsynced before the next
				// was started: damage there is not a torn write.
				return corruptf(name, end, "WAL ends in a damaged record but is not the newest WAL")
			}
			db.opts.Logger.Warn("lsm: cut torn WAL tail", "file", name, "offset", end, "dropped_bytes", int64(len(data))-end)
		}
	}
	if mem.count > 0 {
		num := db.newFileNum()
		t, err := db.writeTable(num, func(w *tableWriter) error {
			for it := mem.iter(nil, nil); it.valid(); it.next() {
				r := it.rec()
				w.add(&r)
			}
			return nil
		})
		if err != nil {
			return err
		}
		tables = append([]*table{t}, tables...)
		live[t.name] = true
		db.stats.flushes.Add(1)
	}

	reuse := exists && len(logs) == 1 && mem.count == 0 && len(quarantine) == 0
	if err := db.startWAL(reuse, logs, tables); err != nil {
		return err
	}
	walNum := db.wal.num
	// The manifest no longer names the quarantined tables: move them aside.
	for _, name := range quarantine {
		if err := fsys.Rename(join(dir, name), join(dir, name+quarantineSuffix)); err != nil {
			db.opts.Logger.Error("lsm: move quarantined table aside", "table", name, "err", err)
		}
	}
	if len(quarantine) > 0 {
		if err := db.syncDir(); err != nil {
			return fmt.Errorf("lsm: sync dir after quarantine: %w", err)
		}
	}
	// Remove what the manifest no longer references: replayed logs, orphan
	// tables of an interrupted flush or compaction, temporary files.
	for _, n := range names {
		num, kind, ok := parseName(n)
		switch {
		case ok && kind == "log" && num < walNum,
			ok && kind == "sst" && !live[n],
			!ok && hasTmpSuffix(n):
			fsys.Remove(join(dir, n))
		}
	}
	db.mem = newMemtable(walNum, db.memtableKeys())
	db.cur = newVersion(tables)
	for _, t := range tables {
		t.refs.Add(-1) // the version now holds the only reference
	}
	return nil
}

// startWAL creates the WAL that Open writes to. With reuse (the one WAL
// replayed held no record, and the manifest names every table), it is that
// WAL again, empty, and the manifest stays as it is: it names that WAL or
// an older one as the oldest needed, and a crash meanwhile leaves an empty
// WAL. Otherwise it is a new WAL, and the manifest goes first, naming it
// as the oldest needed, which is right whether or not the file exists
// after a crash.
func (db *DB) startWAL(reuse bool, logs []uint64, tables []*table) (err error) {
	var num uint64
	if reuse {
		num = logs[0]
	} else {
		num = db.newFileNum()
		if err := db.writeManifest(num, tables); err != nil {
			return err
		}
	}
	db.wal, err = db.openWAL(num)
	return err
}

// replaces reports whether a WAL record replaces the record old (ok: there
// is one) that the replay holds for its key. The WAL is in commit order,
// which per key is the order of the checks of Apply and Purge, so replay
// repeats them: a record applies over no record, a purge marker or an older
// version; a purge marker applies over exactly the version it names, or
// over no record (the record it purged is then in a table).
func replaces(old Record, ok bool, rec Record) bool {
	if rec.purged {
		return !ok || !old.purged && old.Version == rec.Version
	}
	return !ok || old.purged || old.Version.Less(rec.Version)
}

func hasTmpSuffix(n string) bool { return len(n) > 4 && n[len(n)-4:] == ".tmp" }

// openWAL creates WAL file num and makes its directory entry durable. The
// caller makes it the current WAL. On failure the file is removed and the
// current WAL is as it was.
func (db *DB) openWAL(num uint64) (*walWriter, error) {
	name := logName(num)
	path := join(db.dir, name)
	f, err := db.fs.Create(path)
	if err != nil {
		return nil, fmt.Errorf("lsm: create WAL %s: %w", name, err)
	}
	fail := func(err error) (*walWriter, error) {
		f.Close()
		db.fs.Remove(path)
		return nil, err
	}
	var prealloc bool
	if p, ok := f.(preallocator); ok {
		// Best effort: a WAL that outgrows it, or a file system that
		// cannot, only costs speed. The zeros end the WAL cleanly on
		// replay. But no room for it (ENOSPC, EDQUOT) fails the WAL:
		// its writes would fail soon anyway.
		err := p.Preallocate(db.opts.MemtableBytes + db.opts.MemtableBytes/4)
		if err != nil && isTransient(err) {
			return fail(fmt.Errorf("lsm: preallocate WAL %s: %w", name, err))
		}
		if err != nil {
			db.opts.Logger.Debug("lsm: preallocate WAL", "file", name, "err", err)
		}
		prealloc = err == nil
	}
	if err := db.syncDir(); err != nil {
		return fail(fmt.Errorf("lsm: sync dir for WAL %s: %w", name, err))
	}
	w := &walWriter{f: f, num: num, name: name, prealloc: prealloc}
	// The header reaches the disk with the first synced record (or the
	// sync before the next rotation); a crash before that leaves an empty
	// or zero file, which replays as no records.
	if err := w.write(walFileHeader()); err != nil {
		return fail(err)
	}
	return w, nil
}

// writeManifest records tables (newest first) and the oldest needed WAL.
func (db *DB) writeManifest(logNum uint64, tables []*table) error {
	m := manifest{nextFileNum: db.nextFileNum.Load(), logNum: logNum}
	for _, t := range tables {
		m.tables = append(m.tables, manifestTable{t.num, uint64(t.size)})
	}
	if err := replaceFile(db.fs, db.dir, manifestName, m.encode()); err != nil {
		return err
	}
	db.stats.manifestWrites.Add(1)
	if err := db.syncDirInPlace(); err != nil {
		return &inPlaceError{fmt.Errorf("lsm: sync dir after writing %s: %w", manifestName, err)}
	}
	return nil
}

// inPlaceError is a manifest update that failed after the new manifest was
// renamed into place: the next Open may read it, so the tables it names
// must be kept. It is never transient (syncDirInPlace retries those).
type inPlaceError struct{ err error }

func (e *inPlaceError) Error() string { return e.err.Error() }
func (e *inPlaceError) Unwrap() error { return e.err }

// syncDirInPlace syncs the directory after a manifest was renamed into
// place. A transient failure (the directory could not be opened) is retried
// with backoff while the DB runs, until it works, a sync fails, or Close
// begins; it counts as a failing flush meanwhile, so that a rotation
// waiting for a flush gives up.
func (db *DB) syncDirInPlace() error {
	b := newBackoff(&db.opts)
	for {
		err := db.syncDir()
		if err == nil || !isTransient(err) || !db.running.Load() {
			return err
		}
		db.opts.Logger.Warn("lsm: cannot sync the directory after a manifest update; retrying", "err", err)
		db.setFlushFailing(err)
		select {
		case <-time.After(b.next()):
		case <-db.closing:
			return err
		}
	}
}

// writeTable writes a table through a synced temporary file, renames it
// into place, syncs the directory and opens it. It returns a nil table if
// fill added nothing.
func (db *DB) writeTable(num uint64, fill func(w *tableWriter) error) (*table, error) {
	name := tableName(num)
	path := join(db.dir, name)
	tmp := path + ".tmp"
	f, err := db.fs.Create(tmp)
	if err != nil {
		return nil, fmt.Errorf("lsm: create table %s: %w", name, err)
	}
	fail := func(err error) (*table, error) {
		f.Close()
		db.fs.Remove(tmp)
		return nil, err
	}
	w := newTableWriter(f)
	if err := fill(w); err != nil {
		return fail(err)
	}
	if w.count == 0 {
		return fail(nil)
	}
	size, err := w.finish()
	if err != nil {
		return fail(fmt.Errorf("lsm: write table %s: %w", name, err))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("lsm: sync table %s: %w", name, &syncError{err}))
	}
	if err := f.Close(); err != nil {
		db.fs.Remove(tmp)
		return nil, fmt.Errorf("lsm: close table %s: %w", name, err)
	}
	if err := db.fs.Rename(tmp, path); err != nil {
		db.fs.Remove(tmp)
		return nil, fmt.Errorf("lsm: rename table %s: %w", name, err)
	}
	if err := db.syncDir(); err != nil {
		// Nothing names the table yet: drop it.
		db.fs.Remove(path)
		return nil, fmt.Errorf("lsm: sync dir for table %s: %w", name, err)
	}
	db.stats.tableBytesWritten.Add(size)
	return openTable(db.fs, path, name, num, &db.stats, db.cache)
}

// readOnlyErr returns the error that made the DB read-only, or nil.
func (db *DB) readOnlyErr() error {
	if p := db.roErr.Load(); p != nil {
		return *p
	}
	return nil
}

// setReadOnly records the first write-path error; later writes are refused.
// It must not be called with db.mu held.
func (db *DB) setReadOnly(err error) {
	if db.roErr.CompareAndSwap(nil, &err) {
		db.opts.Logger.Error("lsm: write path failed, refusing further writes", "err", err)
		close(db.roCh)
	}
	db.mu.Lock()
	db.immCond.Broadcast()
	db.mu.Unlock()
}

func (db *DB) errReadOnly() error {
	return fmt.Errorf("%w: %w", ErrReadOnly, db.readOnlyErr())
}

// Apply stores rec only if rec.Version is newer than the version held for
// rec.Key (any non-zero version is, when nothing is held or the key was
// purged); the check and the write are atomic per key. It returns the
// version held after the call and whether rec was applied. Under SyncAlways
// the record is durable before Apply returns; concurrent calls share one WAL
// write and one fsync (group commit). The DB copies rec's slices.
//
// An I/O error on the write path fails the Apply that met it. A transient
// one (ErrTransient: out of file descriptors, disk full) was cut back out
// of the WAL, so the record does not survive a restart, and later Applies
// fail with ErrTransient until the write path recovers by itself (see
// Writable). Any other may or may not leave the record after a restart and
// makes every later Apply fail with ErrReadOnly.
func (db *DB) Apply(rec Record) (held Version, applied bool, err error) {
	if err := checkRecord(&rec); err != nil {
		return Version{}, false, err
	}
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if err := db.writable(); err != nil {
		return Version{}, false, err
	}
	kl := db.keyLock(rec.Key)
	kl.Lock()
	defer kl.Unlock()
	prev, err := db.heldVersion(rec.Key)
	if err != nil {
		return Version{}, false, err
	}
	// The zero version is older than every other: a record of version
	// zero is never applied, and any other is when nothing is held.
	if !prev.Less(rec.Version) {
		db.stats.rejected.Add(1)
		return prev, false, nil
	}
	if err := db.commit(rec, prev); err != nil {
		return prev, false, err
	}
	db.stats.applies.Add(1)
	return rec.Version, true, nil
}

// checkRecord refuses what Apply never stores.
func checkRecord(rec *Record) error {
	if len(rec.Key) == 0 {
		return errors.New("lsm: empty key")
	}
	if rec.Tombstone && len(rec.Value) > 0 {
		return errors.New("lsm: tombstone with a value")
	}
	if len(rec.Key)+len(rec.Value) > maxWALRecord/2 {
		return fmt.Errorf("lsm: record of %d bytes is too large", len(rec.Key)+len(rec.Value))
	}
	return nil
}

// writable returns why the DB takes no writes, or nil. The caller holds
// closeMu shared.
func (db *DB) writable() error {
	if db.closed {
		return ErrClosed
	}
	if db.readOnlyErr() != nil {
		return db.errReadOnly()
	}
	return nil
}

// keyLock returns the stripe lock that serialises the check and the write
// of Apply and Purge for key.
func (db *DB) keyLock(key []byte) *sync.Mutex {
	return &db.keyLocks[bloomHash(key)%stripes]
}

// heldVersion returns the version held for key: the zero Version if there
// is no record or only a purge marker.
func (db *DB) heldVersion(key []byte) (Version, error) {
	cur, found, err := db.get(key, false)
	if err != nil || !found || cur.purged {
		return Version{}, err
	}
	return cur.Version, nil
}

// commit commits a copy of rec through the commit pipeline and returns
// once it is in the WAL (synced under SyncAlways) and the memtable. prev is
// the version held before, passed on to OnApply. The copy the memtable
// keeps aliases the record's WAL frame: one allocation holds both.
func (db *DB) commit(rec Record, prev Version) error {
	req := db.getReq()
	defer db.reqPool.Put(req)
	req.frame, req.one[0] = appendRecordFrame(make([]byte, 0, frameLen(&rec)), &rec)
	req.onePrev[0] = prev
	req.recs, req.prevs = req.one[:], req.onePrev[:]
	return db.submit(req)
}

// getReq returns a blank write request from the pool. A request goes back
// to the pool once submit returns: by then nothing refers to it (the
// leader answers it last) and its done channel is empty.
func (db *DB) getReq() *commitReq {
	req, _ := db.reqPool.Get().(*commitReq)
	if req == nil {
		return &commitReq{kind: reqApply}
	}
	*req = commitReq{kind: reqApply, done: req.done}
	return req
}

// Purge drops the record held for key if its version is exactly v (a
// tombstone included) and reports whether it did. Afterwards the key reads
// as never written: Get returns ErrNotFound, Scan and ScanAt skip it, and an
// Apply of any non-zero version applies. Unlike a tombstone, a purge never
// makes a later write lose. If the version held is not v (a newer write got
// in first, or nothing is held), Purge changes nothing and returns false.
//
// The check and the drop are atomic per key with Apply. The purge goes
// through the WAL and group commit like an Apply: under SyncAlways it is
// durable when Purge returns. It calls Options.OnApply(key, v, Version{}).
// The store keeps a purge marker in place of the record, shadowing the
// versions older tables may hold, until a compaction merges it into the
// oldest table; that compaction drops it. I/O errors are as for Apply.
func (db *DB) Purge(key []byte, v Version) (purged bool, err error) {
	if err := checkRecord(&Record{Key: key}); err != nil {
		return false, err
	}
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if err := db.writable(); err != nil {
		return false, err
	}
	kl := db.keyLock(key)
	kl.Lock()
	defer kl.Unlock()
	held, err := db.heldVersion(key)
	if err != nil {
		return false, err
	}
	if held.IsZero() || held != v {
		return false, nil
	}
	if err := db.commit(Record{Key: key, Version: v, purged: true}, held); err != nil {
		return false, err
	}
	db.stats.purges.Add(1)
	return true, nil
}

// Get returns the newest record for key, tombstones included (Tombstone is
// then true), or an error wrapping ErrNotFound; a purged key is not found.
// The returned slices belong to the caller.
func (db *DB) Get(key []byte) (Record, error) {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closed {
		return Record{}, ErrClosed
	}
	rec, found, err := db.get(key, true)
	if err != nil {
		return Record{}, err
	}
	if !found || rec.purged {
		return Record{}, ErrNotFound
	}
	return rec, nil
}

// get looks key up in the memtable, the immutable memtables (newest first)
// and the tables (newest first). With clone, the record is a private copy.
// The record found may be a purge marker.
func (db *DB) get(key []byte, clone bool) (Record, bool, error) {
	db.stats.gets.Add(1)
	db.mu.RLock()
	if r, ok := db.mem.get(key); ok {
		db.mu.RUnlock()
		if clone {
			r = cloneRecord(r)
		}
		return r, true, nil
	}
	for i := len(db.imms) - 1; i >= 0; i-- {
		if r, ok := db.imms[i].get(key); ok {
			db.mu.RUnlock()
			if clone {
				r = cloneRecord(r)
			}
			return r, true, nil
		}
	}
	v := db.cur
	v.ref()
	db.mu.RUnlock()
	defer v.unref()
	h := bloomHash(key)
	for _, t := range v.tables {
		r, ok, err := t.get(key, h)
		if err != nil {
			db.noteCorruption(err, v.tables)
			return Record{}, false, err
		}
		if ok {
			return r, true, nil
		}
	}
	return Record{}, false, nil
}

// Scan calls fn for every record with start <= key < end (end nil means no
// upper bound) in ascending key order, newest version only, tombstones
// included, purged keys skipped, over a consistent snapshot taken when Scan
// is called; writes, flushes and compactions that run meanwhile are not
// seen. It stops when fn returns false. The records passed to fn belong to
// fn.
func (db *DB) Scan(start, end []byte, fn func(Record) bool) error {
	return db.ScanAt(start, end, nil, fn)
}

// ScanAt is Scan, but it also calls atSnapshot (unless nil) exactly once
// while the snapshot is taken, under the lock that orders the snapshot
// with the Options.OnApply calls: every OnApply call happens either before
// atSnapshot, and its record is in the snapshot, or after it, and its record
// is not. atSnapshot never runs concurrently with an OnApply call or with
// the atSnapshot of another ScanAt. It is not called if ScanAt returns
// ErrClosed. Like OnApply, it holds up writes and reads while it runs and
// must not call into the DB.
func (db *DB) ScanAt(start, end []byte, atSnapshot func(), fn func(Record) bool) error {
	srcs, v, err := db.snapshot(start, end, atSnapshot)
	if err != nil {
		return err
	}
	defer v.unref()
	for _, t := range v.tables {
		srcs = append(srcs, t.iter(start, end))
	}
	err = mergeIter(srcs, func(r Record) bool { return r.purged || fn(cloneRecord(r)) })
	if err != nil {
		db.noteCorruption(err, v.tables)
	}
	return err
}

// snapshot copies the memtable's records in [start, end), lists the frozen
// memtables newest first and references the current table list, all under
// db.mu, and calls atSnapshot there. With atSnapshot, db.mu is held
// exclusively, so that atSnapshot calls are ordered with each other as well
// as with OnApply.
func (db *DB) snapshot(start, end []byte, atSnapshot func()) ([]iterator, *version, error) {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closed {
		return nil, nil, ErrClosed
	}
	if atSnapshot != nil {
		db.mu.Lock()
		defer db.mu.Unlock()
		atSnapshot()
	} else {
		db.mu.RLock()
		defer db.mu.RUnlock()
	}
	srcs := []iterator{sliceIter(db.mem.snapshot(start, end))}
	for i := len(db.imms) - 1; i >= 0; i-- {
		srcs = append(srcs, db.imms[i].iter(start, end))
	}
	v := db.cur
	v.ref()
	return srcs, v, nil
}

// Flush writes the memtable to a table now and returns once every record
// applied before the call is in a table. If a flush fails transiently
// meanwhile, it returns an error wrapping ErrTransient at once; the flusher
// goes on retrying in the background.
func (db *DB) Flush() error {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if err := db.writable(); err != nil {
		return err
	}
	// Flushes go oldest first: a failure after this point means ours
	// has not happened yet.
	failed := db.flushState.failures()
	req := &commitReq{kind: reqRotate}
	if err := db.submit(req); err != nil {
		return err
	}
	if req.imm == nil {
		return nil
	}
	select {
	case <-req.imm.flushed:
	case <-db.roCh:
	case <-failed:
	case <-db.closing:
	}
	// The memtable may have made it before the DB failed.
	switch {
	case isClosed(req.imm.flushed):
		return req.imm.flushErr
	case db.readOnlyErr() != nil:
		return db.errReadOnly()
	case isClosed(db.closing):
		return ErrClosed
	}
	return transientErr(db.flushState.get())
}

// Close waits for the Apply calls in flight, stops the background work
// (a running compaction is abandoned), syncs and closes the WAL and releases
// the tables and the directory lock. Records not yet in a table stay in the
// WAL and are replayed by the next Open. A second Close returns ErrClosed.
func (db *DB) Close() error {
	db.closeOnce.Do(func() { close(db.closing) })
	db.closeMu.Lock()
	if db.closed {
		db.closeMu.Unlock()
		return ErrClosed
	}
	db.closed = true
	db.closeMu.Unlock()

	// No call is in flight now, so none leads the commit pipeline: once
	// tickLoop is gone, nothing touches the WAL.
	db.commitWG.Wait()
	db.closeWAL()
	close(db.quit)
	db.mu.Lock()
	db.immCond.Broadcast()
	db.mu.Unlock()
	db.bgWG.Wait()

	db.mu.Lock()
	v := db.cur
	db.cur = nil
	db.mu.Unlock()
	v.unref()
	if err := db.lock.Close(); err != nil && db.closeErr == nil {
		db.closeErr = fmt.Errorf("lsm: release lock: %w", err)
	}
	return db.closeErr
}

// rotate freezes the memtable and starts a new one with a new WAL. It
// returns the newest immutable memtable (nil if there is none). An empty
// memtable is left as it is, unless fresh is set: then it moves to a new
// WAL file, and the old one, which holds no record, is removed (the heal of
// a stalled write path, transient.go). It waits while too many frozen
// memtables wait for their flush, unless the flusher is failing: then it
// fails with the flusher's error. On failure nothing has changed.
func (db *DB) rotate(fresh bool) (*memtable, error) {
	db.mu.RLock()
	empty := db.mem.count == 0
	var last *memtable
	if len(db.imms) > 0 {
		last = db.imms[len(db.imms)-1]
	}
	db.mu.RUnlock()
	if empty && !fresh {
		return last, nil
	}
	// Wait for room first: once the new WAL is current, the memtable must
	// freeze with it, or it would span two WAL files.
	if !empty {
		if err := db.waitForFlush(); err != nil {
			return nil, err
		}
	}
	// Sync the old WAL so that only the newest WAL can end torn.
	if db.wal.dirty {
		if err := db.syncWAL(); err != nil {
			return nil, err
		}
	}
	old := db.wal
	w, err := db.openWAL(db.newFileNum())
	if err != nil {
		return nil, err
	}
	db.wal = w
	old.f.Close()

	db.mu.Lock()
	imm := last
	if !empty {
		imm = db.mem
		db.imms = append(db.imms, imm)
	}
	db.mem = newMemtable(w.num, db.memtableKeys())
	db.mu.Unlock()
	if empty {
		if err := db.fs.Remove(join(db.dir, old.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			db.opts.Logger.Warn("lsm: remove empty WAL", "file", old.name, "err", err)
		}
		return imm, nil
	}
	kick(db.flushCh)
	return imm, nil
}

// waitForFlush waits until fewer than maxImmutable frozen memtables wait
// for their flush. It fails at once if the DB is read-only or the flusher
// is failing (transiently: the error says so).
func (db *DB) waitForFlush() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if len(db.imms) < maxImmutable {
		return nil
	}
	start := time.Now()
	defer func() { db.stats.recordStall(time.Since(start)) }()
	for len(db.imms) >= maxImmutable {
		if db.readOnlyErr() != nil {
			return db.errReadOnly()
		}
		if err := db.flushState.get(); err != nil {
			return fmt.Errorf("lsm: %d memtables wait for a flush that fails: %w", len(db.imms), err)
		}
		if isClosed(db.quit) {
			return ErrClosed
		}
		db.immCond.Wait()
	}
	return nil
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// flushLoop writes immutable memtables to tables, oldest first. A
// transient failure is retried with backoff; any other makes the DB
// read-only.
func (db *DB) flushLoop() {
	defer db.bgWG.Done()
	wait := newBackoff(&db.opts)
	var retry <-chan time.Time
	for {
		select {
		case <-db.flushCh:
		case <-retry:
		case <-db.quit:
			return
		}
		retry = nil
		for !isClosed(db.quit) && db.readOnlyErr() == nil {
			did, err := db.flushOne()
			if err != nil {
				if isClosed(db.closing) {
					break // the memtables stay in their WALs
				}
				if isTransient(err) {
					d := wait.next()
					db.opts.Logger.Warn("lsm: flush failed; retrying", "in", d, "err", err)
					db.setFlushFailing(err)
					retry = time.After(d)
					break
				}
				db.opts.Logger.Error("lsm: flush failed", "err", err)
				db.setReadOnly(err)
				db.failImmutables(err)
				break
			}
			if db.clearFlushFailing() {
				db.opts.Logger.Info("lsm: flush recovered")
			}
			wait.reset()
			if !did {
				break
			}
			kick(db.compactKick)
		}
	}
}

// compactLoop runs the compactions that are due and those requested, and
// quarantines the corrupt tables reads report. A compaction that fails
// transiently is tried again after a backoff.
func (db *DB) compactLoop() {
	defer db.bgWG.Done()
	wait := newBackoff(&db.opts)
	var retry <-chan time.Time
	for {
		select {
		case <-db.compactKick:
		case <-retry:
			retry = nil
		case req := <-db.compactCh:
			inputs, err := db.manualCompact(req)
			if err != nil {
				if db.handleCompactionError(err, inputs) {
					err = transientErr(err)
				}
			}
			req.done <- err
		case q := <-db.qCh:
			if err := db.quarantineTable(q.t, q.err); err != nil {
				if isTransient(err) {
					// The next read of the table asks again.
					db.opts.Logger.Warn("lsm: quarantine failed; retried when the table is read again", "table", q.t.name, "err", err)
				} else {
					db.setReadOnly(err)
				}
			}
			continue
		case <-db.quit:
			return
		}
		if retry != nil {
			continue // backing off; the timer runs the due compactions
		}
		for !isClosed(db.quit) && db.readOnlyErr() == nil && !db.noCompact.Load() {
			inputs, err := db.compactOnce()
			if err != nil {
				if errors.Is(err, errAborted) {
					return
				}
				if db.handleCompactionError(err, inputs) {
					d := wait.next()
					db.opts.Logger.Warn("lsm: compaction failed; retrying", "in", d, "err", err)
					retry = time.After(d)
					break
				}
				continue
			}
			if db.compactErr.Swap(nil) != nil {
				db.opts.Logger.Info("lsm: compaction recovered")
			}
			wait.reset()
			if inputs == nil {
				break
			}
		}
	}
}

// install writes a manifest with the table list edit makes of the current
// one and installs that list. flushed, if not nil, is the immutable
// memtable (the oldest) now in a table; obsolete tables are deleted once
// no reader holds them.
func (db *DB) install(edit func([]*table) ([]*table, error), flushed *memtable, obsolete []*table) error {
	db.installMu.Lock()
	defer db.installMu.Unlock()
	db.mu.RLock()
	tables, err := edit(db.cur.tables)
	imms := db.imms
	if flushed != nil {
		if len(imms) == 0 || imms[0] != flushed {
			db.mu.RUnlock()
			return errors.New("lsm: internal error: flushed memtable is not the oldest")
		}
		imms = imms[1:]
	}
	// The oldest WAL still needed is that of the oldest unflushed memtable.
	logNum := db.mem.walNum
	if len(imms) > 0 {
		logNum = imms[0].walNum
	}
	db.mu.RUnlock()
	if err != nil {
		return err
	}
	if err := db.writeManifest(logNum, tables); err != nil {
		return err
	}
	nv := newVersion(tables)
	for _, t := range obsolete {
		t.obsolete.Store(true)
	}
	db.mu.Lock()
	old := db.cur
	db.cur = nv
	if flushed != nil {
		db.imms = db.imms[1:]
		db.immCond.Broadcast()
	}
	db.mu.Unlock()
	old.unref()
	return nil
}

// manifestInPlace reports whether a failed install left its manifest in
// place, naming its new tables: they must stay on disk.
func manifestInPlace(err error) bool {
	var ip *inPlaceError
	return errors.As(err, &ip)
}

// failImmutables wakes Flush callers waiting for memtables that will not be
// flushed.
func (db *DB) failImmutables(err error) {
	db.mu.RLock()
	imms := append([]*memtable(nil), db.imms...)
	db.mu.RUnlock()
	for _, m := range imms {
		m.finish(err)
	}
}

// flushOne writes the oldest immutable memtable to a table.
func (db *DB) flushOne() (bool, error) {
	db.mu.RLock()
	if len(db.imms) == 0 {
		db.mu.RUnlock()
		return false, nil
	}
	imm := db.imms[0]
	db.mu.RUnlock()

	t, err := db.writeTable(db.newFileNum(), func(w *tableWriter) error {
		for it := imm.iter(nil, nil); it.valid(); it.next() {
			r := it.rec()
			w.add(&r)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	err = db.install(func(ts []*table) ([]*table, error) {
		return append([]*table{t}, ts...), nil
	}, imm, nil)
	if err != nil && !manifestInPlace(err) {
		t.obsolete.Store(true)
	}
	t.unref() // the version holds it now
	if err != nil {
		return false, err
	}
	// Counted before the waiters hear of it, so that a Flush that returns
	// sees its own flush in Stats.
	db.stats.flushes.Add(1)
	imm.finish(nil)
	// The WAL of the flushed memtable is no longer needed.
	if err := db.fs.Remove(join(db.dir, logName(imm.walNum))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		db.opts.Logger.Warn("lsm: remove WAL", "file", logName(imm.walNum), "err", err)
	}
	db.opts.Logger.Debug("lsm: flushed memtable", "table", t.name, "bytes", t.size, "records", t.count)
	return true, nil
}

func (m *memtable) finish(err error) {
	select {
	case <-m.flushed:
	default:
		m.flushErr = err
		close(m.flushed)
	}
}
