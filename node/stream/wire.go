package stream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/kvs-db/kvs/lsm"
)

// Wire format, in the node's conventions (node/wire.go): a one-byte type,
// unsigned varints (expiry a signed varint), byte strings as a varint
// length then the raw bytes, no trailing bytes. An empty After or Next
// stands for nil: keys are never empty.
//
//	request = 0x06 epoch:uvarint gainer:bytes loser:bytes after:bytes
//	          max:uvarint
//	page    = 0x86 done:byte(0|1) next:bytes n:uvarint record × n
//	record  = key:bytes counter:uvarint node:uvarint flags:byte
//	          [expiry:varint if flags&2] value:bytes
//	          flags: 1 = tombstone, 2 = has expiry
//
// The node's own messages use types 0x01-0x05 and replies 0x81-0x85; a
// source that refuses a request answers with the node's error reply
// (0xff), which the node's Request func turns into an error.
//
// Decoders return errors wrapping ErrMalformed that name the offset, and
// never panic. Decoded slices alias the input buffer.
const (
	msgRequest byte = 0x06
	msgPage    byte = 0x86

	flagTombstone byte = 1
	flagExpiry    byte = 2
)

const (
	// maxKeyBytes is the largest key (node.MaxKeyBytes, which this package
	// cannot import).
	maxKeyBytes = 1024
	// maxIDBytes bounds a node ID (topology.ValidID).
	maxIDBytes = 255
	// minRecordBytes is the smallest encoded record: a one-byte key, one
	// byte each for counter, node, flags and the value's length.
	minRecordBytes = 6
)

// ErrMalformed is wrapped by the errors of the decoders and of LoadState.
var ErrMalformed = errors.New("stream: malformed")

// Request asks a source for the next page of the keys a gainer receives in
// place of a loser.
type Request struct {
	// Epoch is the epoch the topology change began at; the source refuses
	// a mismatch. Never zero.
	Epoch uint64
	// Gainer is the member that receives the keys.
	Gainer string
	// Loser is the member whose ranges they are: the source sends the keys
	// for which Placement.Streams(h, Gainer, Loser, source) holds.
	Loser string
	// After is where to resume: strictly after this key; nil means from
	// the first key.
	After []byte
	// MaxBytes bounds the encoded size of the page's records. The source
	// caps it at MaxPageBytes; zero or less means that cap.
	MaxBytes int
}

// Encode returns the wire encoding of r.
func (r *Request) Encode() []byte {
	b := make([]byte, 0, 4*binary.MaxVarintLen64+len(r.Gainer)+len(r.Loser)+len(r.After))
	b = binary.AppendUvarint(append(b, msgRequest), r.Epoch)
	b = appendBytes(b, []byte(r.Gainer))
	b = appendBytes(b, []byte(r.Loser))
	b = appendBytes(b, r.After)
	return binary.AppendUvarint(b, uint64(max(r.MaxBytes, 0)))
}

// DecodeRequest decodes an encoded Request. It refuses, with an error
// wrapping ErrMalformed, anything Encode could not have produced from a
// valid request: a zero epoch, an empty or over-long gainer or loser, a
// key over 1024 bytes, a MaxBytes over 2^31-1, trailing bytes.
func DecodeRequest(b []byte) (Request, error) {
	d := reader{b: b}
	d.start(msgRequest)
	var r Request
	r.Epoch = d.uvarint()
	if d.err == nil && r.Epoch == 0 {
		d.fail("zero epoch")
	}
	r.Gainer = d.id("gainer")
	r.Loser = d.id("loser")
	r.After = d.optKey("after")
	maxBytes := d.uvarint()
	if maxBytes > math.MaxInt32 {
		d.fail("max bytes %d over %d", maxBytes, math.MaxInt32)
	}
	r.MaxBytes = int(maxBytes)
	if err := d.end(); err != nil {
		return Request{}, err
	}
	return r, nil
}

// Page is a source's reply to a Request.
type Page struct {
	// Records are the page's records in strictly ascending key order,
	// tombstones included.
	Records []lsm.Record
	// Next is where to resume: the last key the source examined, which
	// may be past the last record. It is nil only when Done and the source
	// examined no key.
	Next []byte
	// Done means the source's scan reached the end of its store: the
	// transfer is complete.
	Done bool
}

// Encode returns the wire encoding of p.
func (p *Page) Encode() []byte {
	n := 3*binary.MaxVarintLen64 + len(p.Next)
	for i := range p.Records {
		n += recordBytes(&p.Records[i])
	}
	b := append(make([]byte, 0, n), msgPage, 0)
	if p.Done {
		b[1] = 1
	}
	b = appendBytes(b, p.Next)
	b = binary.AppendUvarint(b, uint64(len(p.Records)))
	for i := range p.Records {
		b = appendRecord(b, &p.Records[i])
	}
	return b
}

// DecodePage decodes an encoded Page. Besides malformed encodings it
// refuses, with an error wrapping ErrMalformed, records that are not in
// strictly ascending key order, records with an empty key or a zero
// version, tombstones with a value, a Next before the last record's key,
// and a page that is not done but gives no Next.
func DecodePage(b []byte) (Page, error) {
	d := reader{b: b}
	d.start(msgPage)
	var p Page
	p.Done = d.bool()
	p.Next = d.optKey("next")
	if d.err == nil && p.Next == nil && !p.Done {
		d.fail("no resume key in a page that is not done")
	}
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)-d.off)/minRecordBytes {
		d.fail("%d records in %d bytes", n, len(d.b)-d.off)
	}
	if d.err == nil && n > 0 {
		p.Records = make([]lsm.Record, 0, n)
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		off := d.off
		rec := d.record()
		if d.err == nil && i > 0 && bytes.Compare(p.Records[i-1].Key, rec.Key) >= 0 {
			d.off = off
			d.fail("record key %q not after %q", rec.Key, p.Records[i-1].Key)
		}
		p.Records = append(p.Records, rec)
	}
	if d.err == nil && n > 0 && bytes.Compare(p.Next, p.Records[n-1].Key) < 0 {
		d.fail("next key %q before the last record's key %q", p.Next, p.Records[n-1].Key)
	}
	if err := d.end(); err != nil {
		return Page{}, err
	}
	return p, nil
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

func appendRecord(b []byte, r *lsm.Record) []byte {
	b = appendBytes(b, r.Key)
	b = binary.AppendUvarint(b, r.Version.Counter)
	b = binary.AppendUvarint(b, uint64(r.Version.Node))
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
	return appendBytes(b, r.Value)
}

// recordBytes is the exact size of r's encoding: what it adds to a page.
func recordBytes(r *lsm.Record) int {
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

// reader decodes a message; the first error sticks and later reads return
// zero values.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: at offset %d: %s", ErrMalformed, r.off, fmt.Sprintf(format, args...))
	}
}

// start reads the type byte.
func (r *reader) start(want byte) {
	if t := r.byte(); r.err == nil && t != want {
		r.off--
		r.fail("message type %#x, want %#x", t, want)
	}
}

// end fails unless the whole message was read.
func (r *reader) end() error {
	if r.err == nil && r.off != len(r.b) {
		r.fail("%d trailing bytes", len(r.b)-r.off)
	}
	return r.err
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.fail("truncated")
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *reader) bool() bool {
	switch c := r.byte(); c {
	case 0:
		return false
	case 1:
		return true
	default:
		r.off--
		r.fail("bad bool %d", c)
		return false
	}
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.fail("bad uvarint")
		return 0
	}
	r.off += n
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b[r.off:])
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.off += n
	return v
}

// bytes reads a length-prefixed byte string of at most max bytes.
func (r *reader) bytes(what string, max int) []byte {
	off := r.off
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(max) {
		r.off = off
		r.fail("%s length %d over %d", what, n, max)
		return nil
	}
	if n > uint64(len(r.b)-r.off) {
		r.off = off
		r.fail("%s length %d past end", what, n)
		return nil
	}
	p := r.b[r.off : r.off+int(n) : r.off+int(n)]
	r.off += int(n)
	return p
}

// id reads a node ID: 1 to 255 bytes.
func (r *reader) id(what string) string {
	off := r.off
	p := r.bytes(what, maxIDBytes)
	if r.err == nil && len(p) == 0 {
		r.off = off
		r.fail("empty %s", what)
	}
	return string(p)
}

// optKey reads a key that may be absent (empty on the wire, nil here).
func (r *reader) optKey(what string) []byte {
	p := r.bytes(what, maxKeyBytes)
	if len(p) == 0 {
		return nil
	}
	return p
}

func (r *reader) record() lsm.Record {
	var rec lsm.Record
	off := r.off
	rec.Key = r.bytes("key", maxKeyBytes)
	rec.Version.Counter = r.uvarint()
	node := r.uvarint()
	if node > math.MaxUint32 {
		r.fail("version node %d over 32 bits", node)
	}
	rec.Version.Node = uint32(node)
	flags := r.byte()
	if flags&^(flagTombstone|flagExpiry) != 0 {
		r.fail("unknown flags %#x", flags)
	}
	rec.Tombstone = flags&flagTombstone != 0
	if flags&flagExpiry != 0 {
		rec.Expiry = r.varint()
		if r.err == nil && rec.Expiry == 0 {
			r.fail("expiry flag with zero expiry")
		}
	}
	rec.Value = r.bytes("value", math.MaxInt32)
	if r.err != nil {
		return lsm.Record{}
	}
	switch {
	case len(rec.Key) == 0:
		r.off = off
		r.fail("empty key")
	case rec.Tombstone && len(rec.Value) != 0:
		r.off = off
		r.fail("tombstone of %q with a value", rec.Key)
	case rec.Version.IsZero():
		r.off = off
		r.fail("zero version of %q", rec.Key)
	}
	return rec
}
