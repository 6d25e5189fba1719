// Package wire owns the binary encoding conventions of node-to-node
// messages: one type byte, uvarints, length-prefixed byte strings, the
// record encoding, and decoders that never panic and report the offset.
// The messages themselves, and their type bytes, belong to the packages
// that send them (node, node/stream); this package holds what they share,
// so that a record is encoded one way everywhere.
//
//	message = type:byte field…        no trailing bytes
//	uvarint = encoding/binary.AppendUvarint: 7 bits a byte, low first, ≤ 10 bytes
//	varint  = encoding/binary.AppendVarint: a zig-zag uvarint
//	u64     = 8 bytes little-endian (tokens, hashes)
//	bool    = byte 0 or 1
//	bytes   = length:uvarint, then that many bytes
//	version = counter:uvarint node:uvarint            node < 2^32
//	record  = key:bytes version flags:byte [expiry:varint if flags&2] value:bytes
//	          flags: 1 = tombstone, 2 = has expiry (then expiry ≠ 0)
//
// A record's key is 1 to MaxKeyBytes bytes, its version is not zero, and a
// tombstone has no value: Reader.Record refuses anything else.
//
// A Reader decodes a message front to back. Its first error sticks: later
// reads return zero values, and End returns that error. Every error wraps
// ErrMalformed and names the offset at which the bad field starts. Decoded
// byte strings alias the message.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/kvs-db/kvs/lsm"
)

// MaxKeyBytes is the largest key. Keys are 1 to MaxKeyBytes bytes.
const MaxKeyBytes = 1024

// ErrMalformed is wrapped by every error of a Reader.
var ErrMalformed = errors.New("wire: malformed message")

// The flags byte of a record.
const (
	flagTombstone byte = 1
	flagExpiry    byte = 2
)

// AppendBytes appends p as a byte string: its length, then its bytes.
func AppendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// AppendVersion appends v: its counter, then its node.
func AppendVersion(b []byte, v lsm.Version) []byte {
	b = binary.AppendUvarint(b, v.Counter)
	return binary.AppendUvarint(b, uint64(v.Node))
}

// AppendRecord appends the encoding of r.
func AppendRecord(b []byte, r *lsm.Record) []byte {
	b = AppendBytes(b, r.Key)
	b = AppendVersion(b, r.Version)
	var flags byte
	if r.Tombstone {
		flags |= flagTombstone
	}
	if r.Expiry != 0 {
		flags |= flagExpiry
	}
	b = append(b, flags)
	if r.Expiry != 0 {
		b = binary.AppendVarint(b, r.Expiry)
	}
	return AppendBytes(b, r.Value)
}

// RecordSize returns a bound on the size of r's encoding, cheaper to
// compute than RecordLen: the capacity to give a buffer that will hold it.
func RecordSize(r *lsm.Record) int { return len(r.Key) + len(r.Value) + 2*binary.MaxVarintLen64 + 24 }

// RecordLen returns the exact size of r's encoding,
// len(AppendRecord(nil, r)): what it adds to a message.
func RecordLen(r *lsm.Record) int {
	n := uvarintLen(uint64(len(r.Key))) + len(r.Key) +
		uvarintLen(r.Version.Counter) + uvarintLen(uint64(r.Version.Node)) + 1 +
		uvarintLen(uint64(len(r.Value))) + len(r.Value)
	if r.Expiry != 0 {
		n += uvarintLen(uint64(r.Expiry<<1) ^ uint64(r.Expiry>>63)) // zig-zag, as AppendVarint
	}
	return n
}

func uvarintLen(x uint64) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}

// Reader decodes one message. Its first error sticks: later reads return
// zero values (nil for byte strings) and leave the offset alone.
type Reader struct {
	b   []byte
	off int
	err error
}

// NewReader returns a Reader of b, at offset 0.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

// Err returns the first error, or nil.
func (r *Reader) Err() error { return r.err }

// Offset returns the offset of the next byte to read.
func (r *Reader) Offset() int { return r.off }

// Fail records an error at the current offset, unless there is one already.
// Its message is format applied to args; the error wraps ErrMalformed.
func (r *Reader) Fail(format string, args ...any) { r.FailAt(r.off, format, args...) }

// FailAt is Fail naming offset off: where the field at fault starts, when
// the Reader has read past it.
func (r *Reader) FailAt(off int, format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: at offset %d: %s", ErrMalformed, off, fmt.Sprintf(format, args...))
	}
}

// End returns the first error, or fails if the message goes on: a message
// has no trailing bytes.
func (r *Reader) End() error {
	if r.err == nil && r.off != len(r.b) {
		r.Fail("%d trailing bytes", len(r.b)-r.off)
	}
	return r.err
}

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.Fail("truncated")
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

// Bool reads a byte that must be 0 or 1.
func (r *Reader) Bool() bool {
	switch c := r.Byte(); c {
	case 0:
		return false
	case 1:
		return true
	default:
		r.FailAt(r.off-1, "bad bool %d", c)
		return false
	}
}

// Uvarint reads an unsigned varint.
func (r *Reader) Uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.Fail("bad uvarint")
		return 0
	}
	r.off += n
	return v
}

// Varint reads a signed (zig-zag) varint.
func (r *Reader) Varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b[r.off:])
	if n <= 0 {
		r.Fail("bad varint")
		return 0
	}
	r.off += n
	return v
}

// U64 reads 8 bytes little-endian.
func (r *Reader) U64() uint64 {
	if r.err != nil {
		return 0
	}
	if len(r.b)-r.off < 8 {
		r.Fail("truncated")
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v
}

// Bytes reads a byte string of at most max bytes; what names it in an
// error. The result aliases the message, with its capacity cut to its
// length so that appending to it cannot overwrite what follows.
func (r *Reader) Bytes(what string, max int) []byte {
	off := r.off
	n := r.Uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(max) {
		r.FailAt(off, "%s length %d over %d", what, n, max)
		return nil
	}
	if n > uint64(len(r.b)-r.off) {
		r.FailAt(off, "%s length %d past end", what, n)
		return nil
	}
	p := r.b[r.off : r.off+int(n) : r.off+int(n)]
	r.off += int(n)
	return p
}

// Count reads the number of items that follow, each at least size bytes
// (size > 0); what names them in an error. It fails if the rest of the
// message cannot hold that many, or if there are more than max, so that
// a hostile count cannot make its reader allocate.
func (r *Reader) Count(what string, size, max int) int {
	off := r.off
	n := r.Uvarint()
	if r.err != nil {
		return 0
	}
	if rest := len(r.b) - r.off; n > uint64(rest/size) {
		r.FailAt(off, "%d %s in %d bytes", n, what, rest)
		return 0
	}
	if n > uint64(max) {
		r.FailAt(off, "%d %s, over %d", n, what, max)
		return 0
	}
	return int(n)
}

// Version reads a version: its counter, then its node, which must fit in
// 32 bits. A zero version is not refused here: only a record's must not be.
func (r *Reader) Version() lsm.Version {
	var v lsm.Version
	v.Counter = r.Uvarint()
	off := r.off
	node := r.Uvarint()
	if node > math.MaxUint32 {
		r.FailAt(off, "version node %d over 32 bits", node)
		return lsm.Version{}
	}
	v.Node = uint32(node)
	return v
}

// Record reads a record and checks it (see the package comment). After an
// error it returns the zero Record, or the record it refused.
func (r *Reader) Record() lsm.Record {
	start := r.off
	var rec lsm.Record
	rec.Key = r.Bytes("key", MaxKeyBytes)
	rec.Version = r.Version()
	off := r.off
	flags := r.Byte()
	if flags&^(flagTombstone|flagExpiry) != 0 {
		r.FailAt(off, "unknown flags %#x", flags)
	}
	rec.Tombstone = flags&flagTombstone != 0
	if flags&flagExpiry != 0 {
		off := r.off
		rec.Expiry = r.Varint()
		if r.err == nil && rec.Expiry == 0 {
			r.FailAt(off, "expiry flag with zero expiry")
		}
	}
	rec.Value = r.Bytes("value", math.MaxInt32)
	if r.err != nil {
		return lsm.Record{}
	}
	switch {
	case len(rec.Key) == 0:
		r.FailAt(start, "empty key")
	case rec.Tombstone && len(rec.Value) != 0:
		r.FailAt(start, "tombstone of %q with a value", rec.Key)
	case rec.Version.IsZero():
		r.FailAt(start, "zero version of %q", rec.Key)
	}
	return rec
}
