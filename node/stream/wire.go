package stream

import (
	"bytes"
	"encoding/binary"
	"math"

	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node/wire"
)

// Wire format, in the conventions of package wire (a one-byte type,
// uvarints, byte strings as a length then the bytes, wire's record
// encoding, no trailing bytes). An empty After or Next stands for nil:
// keys are never empty.
//
//	request = 0x06 epoch:uvarint gainer:bytes loser:bytes after:bytes
//	          max:uvarint
//	page    = 0x86 done:bool next:bytes n:uvarint record × n
//
// The node's own messages use other type bytes (node/wire.go lists them
// all); a source that refuses a request answers with the node's error reply
// (0xff), which the node's Request func turns into an error.
//
// Decoders return errors wrapping ErrMalformed that name the offset, and
// never panic. Decoded slices alias the input buffer.
const (
	msgRequest byte = 0x06
	msgPage    byte = 0x86
)

const (
	// maxIDBytes bounds a node ID (topology.ValidID).
	maxIDBytes = 255
	// minRecordBytes is the smallest encoded record: a one-byte key, one
	// byte each for counter, node, flags and the value's length.
	minRecordBytes = 6
)

// ErrMalformed is wrapped by the errors of the decoders and of LoadState.
// It is wire.ErrMalformed, which the errors of wire's Reader wrap.
var ErrMalformed = wire.ErrMalformed

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
	b = wire.AppendBytes(b, []byte(r.Gainer))
	b = wire.AppendBytes(b, []byte(r.Loser))
	b = wire.AppendBytes(b, r.After)
	return binary.AppendUvarint(b, uint64(max(r.MaxBytes, 0)))
}

// DecodeRequest decodes an encoded Request. It refuses, with an error
// wrapping ErrMalformed, anything Encode could not have produced from a
// valid request: a zero epoch, an empty or over-long gainer or loser, a
// key over 1024 bytes, a MaxBytes over 2^31-1, trailing bytes.
func DecodeRequest(b []byte) (Request, error) {
	d := wire.NewReader(b)
	readType(d, msgRequest)
	var r Request
	r.Epoch = d.Uvarint()
	if d.Err() == nil && r.Epoch == 0 {
		d.Fail("zero epoch")
	}
	r.Gainer = readID(d, "gainer")
	r.Loser = readID(d, "loser")
	r.After = readOptKey(d, "after")
	maxBytes := d.Uvarint()
	if maxBytes > math.MaxInt32 {
		d.Fail("max bytes %d over %d", maxBytes, math.MaxInt32)
	}
	r.MaxBytes = int(maxBytes)
	if err := d.End(); err != nil {
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
		n += wire.RecordLen(&p.Records[i])
	}
	b := append(make([]byte, 0, n), msgPage, 0)
	if p.Done {
		b[1] = 1
	}
	b = wire.AppendBytes(b, p.Next)
	b = binary.AppendUvarint(b, uint64(len(p.Records)))
	for i := range p.Records {
		b = wire.AppendRecord(b, &p.Records[i])
	}
	return b
}

// DecodePage decodes an encoded Page. Besides malformed encodings it
// refuses, with an error wrapping ErrMalformed, records that are not in
// strictly ascending key order, records with an empty key or a zero
// version, tombstones with a value, a Next before the last record's key,
// and a page that is not done but gives no Next.
func DecodePage(b []byte) (Page, error) {
	d := wire.NewReader(b)
	readType(d, msgPage)
	var p Page
	p.Done = d.Bool()
	p.Next = readOptKey(d, "next")
	if d.Err() == nil && p.Next == nil && !p.Done {
		d.Fail("no resume key in a page that is not done")
	}
	n := d.Count("records", minRecordBytes, math.MaxInt)
	if n > 0 {
		p.Records = make([]lsm.Record, 0, n)
	}
	for i := 0; i < n && d.Err() == nil; i++ {
		off := d.Offset()
		rec := d.Record()
		if d.Err() == nil && i > 0 && bytes.Compare(p.Records[i-1].Key, rec.Key) >= 0 {
			d.FailAt(off, "record key %q not after %q", rec.Key, p.Records[i-1].Key)
		}
		p.Records = append(p.Records, rec)
	}
	if d.Err() == nil && n > 0 && bytes.Compare(p.Next, p.Records[n-1].Key) < 0 {
		d.Fail("next key %q before the last record's key %q", p.Next, p.Records[n-1].Key)
	}
	if err := d.End(); err != nil {
		return Page{}, err
	}
	return p, nil
}

// readType reads the type byte, which must be want.
func readType(d *wire.Reader, want byte) {
	if t := d.Byte(); d.Err() == nil && t != want {
		d.FailAt(0, "message type %#x, want %#x", t, want)
	}
}

// readID reads a node ID: 1 to 255 bytes.
func readID(d *wire.Reader, what string) string {
	off := d.Offset()
	p := d.Bytes(what, maxIDBytes)
	if d.Err() == nil && len(p) == 0 {
		d.FailAt(off, "empty %s", what)
	}
	return string(p)
}

// readOptKey reads a key that may be absent (empty on the wire, nil here).
func readOptKey(d *wire.Reader, what string) []byte {
	p := d.Bytes(what, wire.MaxKeyBytes)
	if len(p) == 0 {
		return nil
	}
	return p
}
