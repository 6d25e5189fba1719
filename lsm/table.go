package lsm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"sort"
	"sync/atomic"
)

// Format version 2 added the purge marker flag; version 1 tables are still
// read.
const (
	tableMagic            = 0x316c62746b76736b // "ksvktbl1" little-endian
	tableFormatVersion    = 2
	tableMinFormatVersion = 1
	footerLen             = 56
	blockTrailerLen       = 4 // crc32c of the block contents
)

// blockHandle locates a block (without its trailer) in a table.
type blockHandle struct{ off, len uint64 }

// footer is the fixed-size end of a table:
//
//	filterOff u64 | filterLen u64 | indexOff u64 | indexLen u64 | count u64 |
//	formatVersion u32 | crc32c(previous 44 bytes) u32 | magic u64
type footer struct {
	filter, index blockHandle
	count         uint64
	version       uint32
}

func (f *footer) encode() []byte {
	b := make([]byte, footerLen)
	le := binary.LittleEndian
	le.PutUint64(b[0:], f.filter.off)
	le.PutUint64(b[8:], f.filter.len)
	le.PutUint64(b[16:], f.index.off)
	le.PutUint64(b[24:], f.index.len)
	le.PutUint64(b[32:], f.count)
	le.PutUint32(b[40:], f.version)
	le.PutUint32(b[44:], checksum(b[:44]))
	le.PutUint64(b[48:], tableMagic)
	return b
}

func decodeFooter(name string, b []byte, size int64) (footer, error) {
	var f footer
	off := size - footerLen
	le := binary.LittleEndian
	if le.Uint64(b[48:]) != tableMagic {
		return f, corruptf(name, off+48, "bad table magic %#x", le.Uint64(b[48:]))
	}
	if checksum(b[:44]) != le.Uint32(b[44:]) {
		return f, corruptf(name, off, "footer checksum mismatch")
	}
	f.version = le.Uint32(b[40:])
	if f.version < tableMinFormatVersion || f.version > tableFormatVersion {
		return f, fmt.Errorf("%w: table %s has format version %d, this code reads %d to %d",
			ErrUnsupported, name, f.version, tableMinFormatVersion, tableFormatVersion)
	}
	f.filter = blockHandle{le.Uint64(b[0:]), le.Uint64(b[8:])}
	f.index = blockHandle{le.Uint64(b[16:]), le.Uint64(b[24:])}
	f.count = le.Uint64(b[32:])
	for _, h := range []blockHandle{f.filter, f.index} {
		if h.off > uint64(off) || h.len > uint64(off)-h.off || h.off+h.len+blockTrailerLen > uint64(off) {
			return f, corruptf(name, off, "footer block handle out of range")
		}
	}
	return f, nil
}

// tableWriter writes a table's blocks sequentially.
type tableWriter struct {
	w       *bufio.Writer
	off     uint64
	data    blockBuilder
	index   blockBuilder
	hashes  []uint64
	count   uint64
	lastKey []byte
	val     []byte
	err     error
	first   []byte
}

func newTableWriter(w io.Writer) *tableWriter {
	return &tableWriter{w: bufio.NewWriterSize(w, 256<<10)}
}

func (t *tableWriter) writeBlock(b []byte) blockHandle {
	h := blockHandle{t.off, uint64(len(b))}
	if t.err != nil {
		return h
	}
	var tr [blockTrailerLen]byte
	binary.LittleEndian.PutUint32(tr[:], checksum(b))
	if _, err := t.w.Write(b); err != nil {
		t.err = err
	}
	if _, err := t.w.Write(tr[:]); err != nil {
		t.err = err
	}
	t.off += uint64(len(b)) + blockTrailerLen
	return h
}

// add appends a record; keys must arrive in strictly ascending order.
func (t *tableWriter) add(rec *Record) {
	if t.count == 0 {
		t.first = append([]byte(nil), rec.Key...)
	}
	t.val = appendValue(t.val[:0], rec)
	t.data.add(rec.Key, t.val)
	t.hashes = append(t.hashes, bloomHash(rec.Key))
	t.lastKey = append(t.lastKey[:0], rec.Key...)
	t.count++
	if t.data.size() >= targetBlockSize {
		t.flushBlock()
	}
}

func (t *tableWriter) flushBlock() {
	if t.data.empty() {
		return
	}
	h := t.writeBlock(t.data.finish())
	t.data.reset()
	var hv [2 * binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hv[:], h.off)
	n += binary.PutUvarint(hv[n:], h.len)
	t.index.add(t.lastKey, hv[:n])
}

// finish writes the filter, the index and the footer.
func (t *tableWriter) finish() (uint64, error) {
	t.flushBlock()
	var f footer
	f.filter = t.writeBlock(buildBloom(t.hashes))
	if t.index.empty() {
		// An empty table still gets a well-formed index: one restart, no entries.
		f.index = t.writeBlock(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 0), 1))
	} else {
		f.index = t.writeBlock(t.index.finish())
	}
	f.count = t.count
	f.version = tableFormatVersion
	if t.err == nil {
		_, t.err = t.w.Write(f.encode())
		t.off += footerLen
	}
	if t.err == nil {
		t.err = t.w.Flush()
	}
	return t.off, t.err
}

// tableIndex is a table's index as held in memory, flat: the last key of
// each data block, concatenated in keys (ends[i] is where block i's key
// ends), and each block's handle. It holds three allocations whatever the
// number of blocks, and no pointer per block for the GC to scan.
type tableIndex struct {
	keys    []byte
	ends    []uint32
	handles []blockHandle
}

// len returns the number of data blocks.
func (x *tableIndex) len() int { return len(x.handles) }

// lastKey returns the last key of block i; it must not be modified.
func (x *tableIndex) lastKey(i int) []byte {
	start := uint32(0)
	if i > 0 {
		start = x.ends[i-1]
	}
	return x.keys[start:x.ends[i]:x.ends[i]]
}

// add appends a block.
func (x *tableIndex) add(lastKey []byte, h blockHandle) {
	x.keys = append(x.keys, lastKey...)
	x.ends = append(x.ends, uint32(len(x.keys)))
	x.handles = append(x.handles, h)
}

// search returns the first block whose last key is >= key, or len() if
// there is none.
func (x *tableIndex) search(key []byte) int {
	return sort.Search(x.len(), func(i int) bool { return bytes.Compare(x.lastKey(i), key) >= 0 })
}

// table is an open, immutable SSTable. Its index and filter are held in
// memory; data blocks are read (and checked) on demand.
type table struct {
	f        File
	num      uint64
	name     string
	path     string
	fs       FS
	size     int64
	count    uint64
	index    tableIndex
	filter   bloom
	smallest []byte
	largest  []byte
	flags    byte // the record flags its format version defines
	stats    *dbStats
	cache    *blockCache

	refs     atomic.Int32
	obsolete atomic.Bool // delete the file when the last reference goes
}

// openTable opens and checks a table's footer, index and filter.
func openTable(fs FS, path, name string, num uint64, stats *dbStats, cache *blockCache) (*table, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, fmt.Errorf("lsm: open table %s: %w", name, err)
	}
	t, err := loadTable(f, name, stats)
	if err != nil {
		f.Close()
		return nil, err
	}
	t.num, t.path, t.fs, t.cache = num, path, fs, cache
	t.refs.Store(1)
	return t, nil
}

func loadTable(f File, name string, stats *dbStats) (*table, error) {
	size, err := f.Size()
	if err != nil {
		return nil, fmt.Errorf("lsm: stat table %s: %w", name, err)
	}
	t := &table{f: f, name: name, size: size, stats: stats}
	if size < footerLen {
		return nil, corruptf(name, 0, "table of %d bytes is shorter than its footer", size)
	}
	fb := make([]byte, footerLen)
	if _, err := f.ReadAt(fb, size-footerLen); err != nil {
		return nil, fmt.Errorf("lsm: read table %s footer: %w", name, err)
	}
	ft, err := decodeFooter(name, fb, size)
	if err != nil {
		return nil, err
	}
	t.count = ft.count
	t.flags = formatFlags(ft.version)
	fl, err := t.readBlock(ft.filter)
	if err != nil {
		return nil, err
	}
	t.filter = bloom(fl)
	ib, err := t.readBlock(ft.index)
	if err != nil {
		return nil, err
	}
	blk, err := parseBlock(ib)
	if err != nil {
		return nil, corruptf(name, int64(ft.index.off), "index block: %v", err)
	}
	if t.index, err = loadIndex(name, blk, ft); err != nil {
		return nil, err
	}
	if t.index.len() > 0 {
		// The smallest key is the first key of the first block.
		b, err := t.readDataBlock(0)
		if err != nil {
			return nil, err
		}
		bi := b.iter()
		if !bi.first() {
			return nil, corruptf(name, 0, "empty data block")
		}
		t.smallest = append([]byte(nil), bi.key...)
		t.largest = t.index.lastKey(t.index.len() - 1)
	}
	return t, nil
}

// loadIndex checks the parsed index block blk of table name and returns it
// as a tableIndex: every entry must be a block handle, the blocks must be
// adjacent and cover the data area exactly.
func loadIndex(name string, blk *block, ft footer) (tableIndex, error) {
	// An entry takes at least 5 bytes (three lengths, a handle of two),
	// and there is a restart point every restartInterval entries.
	n := min(blk.nrest*restartInterval, len(blk.data)/5+1)
	x := tableIndex{
		keys:    make([]byte, 0, len(blk.data)),
		ends:    make([]uint32, 0, n),
		handles: make([]blockHandle, 0, n),
	}
	it := blk.iter()
	var prevEnd uint64
	for ok := it.first(); ok; ok = it.next() {
		off, n1 := binary.Uvarint(it.val)
		ln, n2 := binary.Uvarint(it.val[max(n1, 0):])
		if n1 <= 0 || n2 <= 0 || off != prevEnd || ln > ft.filter.off || off+ln+blockTrailerLen > ft.filter.off {
			return x, corruptf(name, int64(ft.index.off), "index entry %d: bad block handle", x.len())
		}
		if len(x.keys)+len(it.key) > math.MaxUint32 {
			return x, corruptf(name, int64(ft.index.off), "index keys longer than 4 GiB")
		}
		prevEnd = off + ln + blockTrailerLen
		x.add(it.key, blockHandle{off, ln})
	}
	if it.err != nil {
		return x, corruptf(name, int64(ft.index.off), "index block: %v", it.err)
	}
	if prevEnd != ft.filter.off {
		return x, corruptf(name, int64(ft.index.off), "index does not cover the data blocks")
	}
	return x, nil
}

// readBlock reads a block and checks its trailer.
func (t *table) readBlock(h blockHandle) ([]byte, error) {
	buf := make([]byte, h.len+blockTrailerLen)
	if _, err := t.f.ReadAt(buf, int64(h.off)); err != nil {
		if err == io.EOF {
			return nil, corruptf(t.name, int64(h.off), "block runs past the end of the file")
		}
		return nil, fmt.Errorf("lsm: read table %s at %d: %w", t.name, h.off, err)
	}
	if t.stats != nil {
		t.stats.blockReads.Add(1)
	}
	b := buf[:h.len]
	if checksum(b) != binary.LittleEndian.Uint32(buf[h.len:]) {
		return nil, corruptf(t.name, int64(h.off), "block checksum mismatch")
	}
	return b, nil
}

func (t *table) readDataBlock(i int) (*block, error) { return t.readDataBlockCached(i, true) }

func (t *table) readDataBlockCached(i int, useCache bool) (*block, error) {
	h := t.index.handles[i]
	k := cacheKey{t.num, h.off}
	if t.cache != nil && useCache {
		if blk := t.cache.get(k); blk != nil {
			return blk, nil
		}
	}
	b, err := t.readBlock(h)
	if err != nil {
		return nil, err
	}
	blk, err := parseBlock(b)
	if err != nil {
		return nil, corruptf(t.name, int64(h.off), "data block: %v", err)
	}
	if t.cache != nil && useCache {
		t.cache.put(k, blk)
	}
	return blk, nil
}

// get looks key up. The returned record is a private copy.
func (t *table) get(key []byte, hash uint64) (Record, bool, error) {
	if !t.filter.mayContain(hash) {
		if t.stats != nil {
			t.stats.bloomUseful.Add(1)
		}
		return Record{}, false, nil
	}
	i := t.index.search(key)
	if i == t.index.len() {
		return Record{}, false, nil
	}
	blk, err := t.readDataBlock(i)
	if err != nil {
		return Record{}, false, err
	}
	it := blk.iter()
	if !it.seekGE(key) || !bytes.Equal(it.key, key) {
		if it.err != nil {
			return Record{}, false, corruptf(t.name, int64(t.index.handles[i].off), "data block: %v", it.err)
		}
		if t.stats != nil {
			t.stats.bloomUseless.Add(1)
		}
		return Record{}, false, nil
	}
	rec := Record{Key: key}
	if err := decodeValue(it.val, &rec, t.flags); err != nil {
		return Record{}, false, corruptf(t.name, int64(t.index.handles[i].off), "record %q: %v", key, err)
	}
	return cloneRecord(rec), true, nil
}

func (t *table) ref() { t.refs.Add(1) }

func (t *table) unref() {
	if t.refs.Add(-1) == 0 {
		t.f.Close()
		if t.obsolete.Load() {
			t.fs.Remove(t.path)
		}
	}
}

// tableIter walks a table's records in key order from a start key to an
// optional end key (exclusive).
type tableIter struct {
	t       *table
	noCache bool // read from the file, bypassing the block cache
	end     []byte
	bi      int
	blk     *blockIter
	cur     Record
	ok      bool
	err     error
	done    bool
}

// iterUncached walks the whole table reading every block from the file.
func (t *table) iterUncached() *tableIter { return t.newIter(nil, nil, true) }

func (t *table) iter(start, end []byte) *tableIter { return t.newIter(start, end, false) }

func (t *table) newIter(start, end []byte, noCache bool) *tableIter {
	it := &tableIter{t: t, end: end, noCache: noCache}
	if start == nil {
		it.bi = 0
	} else {
		it.bi = t.index.search(start)
	}
	if !it.load() {
		return it
	}
	var ok bool
	if start == nil {
		ok = it.blk.first()
	} else {
		ok = it.blk.seekGE(start)
	}
	it.settle(ok)
	return it
}

func (it *tableIter) load() bool {
	if it.bi >= it.t.index.len() {
		it.ok = false
		return false
	}
	blk, err := it.t.readDataBlockCached(it.bi, !it.noCache)
	if err != nil {
		it.err, it.ok = err, false
		return false
	}
	it.blk = blk.iter()
	return true
}

// settle moves past exhausted blocks and decodes the current entry.
func (it *tableIter) settle(ok bool) {
	for !ok {
		if it.blk != nil && it.blk.err != nil {
			it.err = corruptf(it.t.name, int64(it.t.index.handles[it.bi].off), "data block: %v", it.blk.err)
			it.ok = false
			return
		}
		it.bi++
		if !it.load() {
			return
		}
		ok = it.blk.first()
	}
	if it.end != nil && bytes.Compare(it.blk.key, it.end) >= 0 {
		it.ok = false
		return
	}
	it.cur = Record{Key: it.blk.key}
	if err := decodeValue(it.blk.val, &it.cur, it.t.flags); err != nil {
		it.err = corruptf(it.t.name, int64(it.t.index.handles[it.bi].off), "record %q: %v", it.blk.key, err)
		it.ok = false
		return
	}
	it.ok = true
}

func (it *tableIter) valid() bool { return it.ok }

// rec returns the current record; it aliases iterator buffers until next.
func (it *tableIter) rec() Record { return it.cur }

func (it *tableIter) next() {
	if !it.ok {
		return
	}
	it.settle(it.blk.next())
}
