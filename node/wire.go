package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/kvs-db/kvs/lsm"
)

// Wire format of the data path (request-reply between nodes). Every message
// starts with a one-byte type; integers are unsigned varints (expiry a signed
// varint); byte strings are a varint length then the raw bytes. No message
// may carry trailing bytes.
//
//	record     = key:bytes counter:uvarint node:uvarint flags:byte
//	             [expiry:varint if flags&2] value:bytes
//	             flags: 1 = tombstone, 2 = has expiry
//
//	put req    = 0x01 epoch:uvarint record
//	get req    = 0x02 epoch:uvarint key:bytes
//	hint req   = 0x03 target:bytes record
//	ack        = 0x81 held.counter:uvarint held.node:uvarint applied:byte(0|1)
//	get reply  = 0x82 found:byte(0|1) [record if found]
//	ok         = 0x83
//	stale      = 0x87 epoch:uvarint
//
// Anti-entropy uses 0x04, 0x05, 0x84 and 0x85 (antientropy.go), streaming
// 0x06 and 0x86 (package stream); no two messages share a type byte.
//
//	error      = 0xff message:bytes
//
// A put or get carries the topology epoch its coordinator planned it at. A
// replica at a later epoch refuses it with a stale reply naming its own
// epoch (the coordinator catches up and plans again): see fence in
// topo.go.
//
// Decoders return errors wrapping ErrMalformed and never panic; decoded
// slices alias the input buffer, which the transport hands over to the
// handler (it is not reused).
const (
	msgPut      byte = 0x01
	msgGet      byte = 0x02
	msgHint     byte = 0x03
	msgAck      byte = 0x81
	msgGetReply byte = 0x82
	msgOK       byte = 0x83
	msgStale    byte = 0x87
	msgError    byte = 0xff

	flagTombstone byte = 1
	flagExpiry    byte = 2
)

// ErrMalformed is wrapped by the errors of every wire decoder.
var ErrMalformed = errors.New("node: malformed message")

// RemoteError is an error reported by the remote node in an error reply.
type RemoteError struct {
	// Msg is the remote node's error message.
	Msg string
}

// Error returns the remote message, prefixed with "remote: ".
func (e *RemoteError) Error() string { return "remote: " + e.Msg }

// ErrStaleEpoch is wrapped by a StaleError: a replica refused a request
// planned at an older topology epoch than its own.
var ErrStaleEpoch = errors.New("node: stale topology epoch")

// StaleError is a replica's refusal of a request planned at an older
// topology epoch. The coordinator catches up and plans the request again.
type StaleError struct {
	// Epoch is the replica's epoch.
	Epoch uint64
}

// Error says the replica's epoch.
func (e *StaleError) Error() string {
	return fmt.Sprintf("replica at topology epoch %d refused a request from an older epoch", e.Epoch)
}

// Unwrap returns ErrStaleEpoch.
func (e *StaleError) Unwrap() error { return ErrStaleEpoch }

// maxTargetBytes bounds the node ID carried by a hint.
const maxTargetBytes = 255

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

func recordSize(r *lsm.Record) int { return len(r.Key) + len(r.Value) + 2*binary.MaxVarintLen64 + 24 }

func encodePut(epoch uint64, r *lsm.Record) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+recordSize(r))
	b = binary.AppendUvarint(append(b, msgPut), epoch)
	return appendRecord(b, r)
}

func encodeGet(epoch uint64, key []byte) []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(key))
	b = binary.AppendUvarint(append(b, msgGet), epoch)
	return appendBytes(b, key)
}

func encodeStale(epoch uint64) []byte {
	return binary.AppendUvarint([]byte{msgStale}, epoch)
}

func encodeHint(target string, r *lsm.Record) []byte {
	b := make([]byte, 0, 2+len(target)+recordSize(r))
	b = appendBytes(append(b, msgHint), []byte(target))
	return appendRecord(b, r)
}

func encodeAck(held lsm.Version, applied bool) []byte {
	b := make([]byte, 0, 2+2*binary.MaxVarintLen64)
	b = append(b, msgAck)
	b = binary.AppendUvarint(b, held.Counter)
	b = binary.AppendUvarint(b, uint64(held.Node))
	if applied {
		return append(b, 1)
	}
	return append(b, 0)
}

func encodeGetReply(r *lsm.Record) []byte {
	if r == nil {
		return []byte{msgGetReply, 0}
	}
	b := make([]byte, 0, 2+recordSize(r))
	return appendRecord(append(b, msgGetReply, 1), r)
}

func encodeOK() []byte { return []byte{msgOK} }

func encodeError(err error) []byte {
	msg := err.Error()
	if len(msg) > 4096 {
		msg = msg[:4096]
	}
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(msg))
	return appendBytes(append(b, msgError), []byte(msg))
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
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(max) {
		r.fail("%s length %d over %d", what, n, max)
		return nil
	}
	if n > uint64(len(r.b)-r.off) {
		r.fail("%s length %d past end", what, n)
		return nil
	}
	p := r.b[r.off : r.off+int(n) : r.off+int(n)]
	r.off += int(n)
	return p
}

func (r *reader) bool() bool {
	switch c := r.byte(); c {
	case 0:
		return false
	case 1:
		return true
	default:
		r.fail("bad bool %d", c)
		return false
	}
}

func (r *reader) record() lsm.Record {
	var rec lsm.Record
	rec.Key = r.bytes("key", MaxKeyBytes)
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
	if len(rec.Key) == 0 {
		r.fail("empty key")
	}
	if rec.Tombstone && len(rec.Value) != 0 {
		r.fail("tombstone with a value")
	}
	if rec.Version.IsZero() {
		r.fail("zero version")
	}
	return rec
}

// end fails unless the whole message was read.
func (r *reader) end() error {
	if r.err == nil && r.off != len(r.b) {
		r.fail("%d trailing bytes", len(r.b)-r.off)
	}
	return r.err
}

// start reads the type byte; an error reply becomes a *RemoteError.
func (r *reader) start(want byte) error {
	t := r.byte()
	if r.err != nil {
		return r.err
	}
	if t == msgError && want != msgError {
		msg := r.bytes("error", math.MaxInt32)
		if err := r.end(); err != nil {
			return err
		}
		return &RemoteError{Msg: string(msg)}
	}
	if t == msgStale && want != msgStale {
		epoch := r.uvarint()
		if err := r.end(); err != nil {
			return err
		}
		return &StaleError{Epoch: epoch}
	}
	if t != want {
		r.fail("message type %#x, want %#x", t, want)
	}
	return r.err
}

func decodePut(b []byte) (epoch uint64, rec lsm.Record, err error) {
	r := reader{b: b}
	if err := r.start(msgPut); err != nil {
		return 0, lsm.Record{}, err
	}
	epoch = r.uvarint()
	rec = r.record()
	return epoch, rec, r.end()
}

func decodeGet(b []byte) (epoch uint64, key []byte, err error) {
	r := reader{b: b}
	if err := r.start(msgGet); err != nil {
		return 0, nil, err
	}
	epoch = r.uvarint()
	key = r.bytes("key", MaxKeyBytes)
	if r.err == nil && len(key) == 0 {
		r.fail("empty key")
	}
	return epoch, key, r.end()
}

func decodeHint(b []byte) (string, lsm.Record, error) {
	r := reader{b: b}
	if err := r.start(msgHint); err != nil {
		return "", lsm.Record{}, err
	}
	target := r.bytes("target", maxTargetBytes)
	if r.err == nil && len(target) == 0 {
		r.fail("empty target")
	}
	rec := r.record()
	if err := r.end(); err != nil {
		return "", lsm.Record{}, err
	}
	return string(target), rec, nil
}

func decodeAck(b []byte) (held lsm.Version, applied bool, err error) {
	r := reader{b: b}
	if err := r.start(msgAck); err != nil {
		return lsm.Version{}, false, err
	}
	held.Counter = r.uvarint()
	node := r.uvarint()
	if node > math.MaxUint32 {
		r.fail("version node %d over 32 bits", node)
	}
	held.Node = uint32(node)
	applied = r.bool()
	if err := r.end(); err != nil {
		return lsm.Version{}, false, err
	}
	return held, applied, nil
}

// decodeGetReply returns found == false for a replica holding nothing.
func decodeGetReply(b []byte) (rec lsm.Record, found bool, err error) {
	r := reader{b: b}
	if err := r.start(msgGetReply); err != nil {
		return lsm.Record{}, false, err
	}
	found = r.bool()
	if found {
		rec = r.record()
	}
	if err := r.end(); err != nil {
		return lsm.Record{}, false, err
	}
	return rec, found, nil
}

func decodeOK(b []byte) error {
	r := reader{b: b}
	if err := r.start(msgOK); err != nil {
		return err
	}
	return r.end()
}

// decodeRecord decodes a bare record (as stored in the hint store).
func decodeRecord(b []byte) (lsm.Record, error) {
	r := reader{b: b}
	rec := r.record()
	return rec, r.end()
}
