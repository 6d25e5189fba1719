package lsm

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// Blocks (data and index) hold sorted key/value entries with prefix-
// compressed keys:
//
//	entry:   shared uvarint | unshared uvarint | valueLen uvarint | key[shared:] | value
//	block:   entry* | restart u32 * numRestarts | numRestarts u32
//
// Every restartInterval-th entry is a restart point: it stores its whole key
// (shared = 0) and its offset is listed in the restart array, so a lookup
// binary-searches the restart points and then scans at most
// restartInterval entries.
const (
	restartInterval = 16
	targetBlockSize = 4096
)

type blockBuilder struct {
	buf      []byte
	restarts []uint32
	n        int
	lastKey  []byte
}

func (b *blockBuilder) add(key, value []byte) {
	shared := 0
	if b.n%restartInterval == 0 {
		b.restarts = append(b.restarts, uint32(len(b.buf)))
	} else {
		for shared < len(key) && shared < len(b.lastKey) && key[shared] == b.lastKey[shared] {
			shared++
		}
	}
	b.buf = binary.AppendUvarint(b.buf, uint64(shared))
	b.buf = binary.AppendUvarint(b.buf, uint64(len(key)-shared))
	b.buf = binary.AppendUvarint(b.buf, uint64(len(value)))
	b.buf = append(b.buf, key[shared:]...)
	b.buf = append(b.buf, value...)
	b.lastKey = append(b.lastKey[:0], key...)
	b.n++
}

func (b *blockBuilder) size() int { return len(b.buf) + 4*len(b.restarts) + 4 }

func (b *blockBuilder) empty() bool { return b.n == 0 }

// finish returns the encoded block; it is valid until the next reset.
func (b *blockBuilder) finish() []byte {
	for _, r := range b.restarts {
		b.buf = binary.LittleEndian.AppendUint32(b.buf, r)
	}
	b.buf = binary.LittleEndian.AppendUint32(b.buf, uint32(len(b.restarts)))
	return b.buf
}

func (b *blockBuilder) reset() {
	b.buf = b.buf[:0]
	b.restarts = b.restarts[:0]
	b.n = 0
	b.lastKey = b.lastKey[:0]
}

// block is a decoded (checked) block.
type block struct {
	data     []byte // the entries
	restarts []byte // numRestarts u32 values
	nrest    int
}

var errBadBlock = errors.New("malformed block")

func parseBlock(b []byte) (*block, error) {
	if len(b) < 4 {
		return nil, errBadBlock
	}
	n := binary.LittleEndian.Uint32(b[len(b)-4:])
	if n == 0 || uint64(n)*4+4 > uint64(len(b)) {
		return nil, errBadBlock
	}
	dataEnd := len(b) - 4 - int(n)*4
	blk := &block{data: b[:dataEnd], restarts: b[dataEnd : len(b)-4], nrest: int(n)}
	prev := -1
	for i := 0; i < blk.nrest; i++ {
		r := int(binary.LittleEndian.Uint32(blk.restarts[4*i:]))
		if r <= prev || r > dataEnd || (i == 0 && r != 0) {
			return nil, errBadBlock
		}
		prev = r
	}
	return blk, nil
}

func (b *block) restart(i int) int { return int(binary.LittleEndian.Uint32(b.restarts[4*i:])) }

// blockIter walks a block's entries.
type blockIter struct {
	b      *block
	off    int // offset of the next entry
	key    []byte
	spare  []byte
	val    []byte
	valid  bool
	err    error
	curOff int
}

func (b *block) iter() *blockIter { return &blockIter{b: b} }

// decodeAt decodes the entry at off, building the key on it.key.
func (it *blockIter) decodeAt(off int) bool {
	d := it.b.data
	if off >= len(d) {
		it.valid = false
		return false
	}
	p := d[off:]
	shared, n1 := binary.Uvarint(p)
	if n1 <= 0 {
		return it.fail()
	}
	unshared, n2 := binary.Uvarint(p[n1:])
	if n2 <= 0 {
		return it.fail()
	}
	vlen, n3 := binary.Uvarint(p[n1+n2:])
	if n3 <= 0 {
		return it.fail()
	}
	h := n1 + n2 + n3
	if shared > uint64(len(it.key)) || unshared > uint64(len(p)-h) || vlen > uint64(len(p)-h)-unshared {
		return it.fail()
	}
	if shared+unshared == 0 {
		return it.fail()
	}
	k := append(it.spare[:0], it.key[:shared]...)
	k = append(k, p[h:h+int(unshared)]...)
	if it.valid && bytes.Compare(k, it.key) <= 0 {
		// keys must ascend strictly
		return it.fail()
	}
	it.spare, it.key = it.key, k
	it.val = p[h+int(unshared) : h+int(unshared)+int(vlen)]
	it.curOff = off
	it.off = off + h + int(unshared) + int(vlen)
	it.valid = true
	return true
}

func (it *blockIter) fail() bool {
	it.valid = false
	it.err = errBadBlock
	return false
}

func (it *blockIter) first() bool {
	it.key = it.key[:0]
	it.valid = false
	return it.decodeAt(0)
}

func (it *blockIter) next() bool {
	if !it.valid {
		return false
	}
	return it.decodeAt(it.off)
}

// seekGE positions the iterator at the first entry with key >= key.
func (it *blockIter) seekGE(key []byte) bool {
	// Binary search for the last restart point whose key is < key.
	lo, hi := 0, it.b.nrest-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		it.key = it.key[:0]
		it.valid = false
		if !it.decodeAt(it.b.restart(mid)) {
			if it.err != nil {
				return false
			}
			hi = mid - 1
			continue
		}
		if bytes.Compare(it.key, key) < 0 {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	it.key = it.key[:0]
	it.valid = false
	if !it.decodeAt(it.b.restart(lo)) {
		return false
	}
	for bytes.Compare(it.key, key) < 0 {
		if !it.next() {
			return false
		}
	}
	return true
}
