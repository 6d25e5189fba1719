package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node/wire"
)

// Wire format of the data path (request-reply between nodes), in the
// conventions of package wire: a one-byte type, uvarints, byte strings as
// a length then the bytes, wire's version and record encodings, no
// trailing bytes.
//
//	put req    = 0x01 epoch:uvarint record
//	get req    = 0x02 epoch:uvarint key:bytes
//	hint req   = 0x03 target:bytes record
//	ack        = 0x81 held:version applied:bool
//	get reply  = 0x82 found:bool [record if found]
//	ok         = 0x83
//	stale      = 0x87 epoch:uvarint
//	batch req  = 0x09 count:uvarint message:bytes{count}
//	batch reply= 0x89 count:uvarint message:bytes{count}
//
// A batch carries count (1 to maxBatchMessages) put, get or hint requests
// to one node, each a whole message as above, and its reply their replies
// in the same order: an ack, get reply, ok, stale or error each, or an
// empty message for a request whose reply did not fit in the batch's
// (maxBatchReplyBytes), which the sender sends again on its own (see
// batcher.go). A malformed batch gets one error reply; a malformed
// request inside a well-formed batch gets its own error reply, and its
// neighbours are served.
//
// Anti-entropy uses 0x04, 0x05, 0x08, 0x84, 0x85 and 0x88 (aewire.go),
// streaming 0x06 and 0x86 (package stream); no two messages share a type
// byte.
//
//	error      = 0xff message:bytes
//
// A node that refuses a scan-heavy request because MaxScanRequests are in
// progress sends an error reply whose message begins with ErrOverloaded's
// text, "node: overloaded"; the caller tries again later.
//
// A put or get carries the topology epoch its coordinator planned it at. A
// replica at a later epoch refuses it with a stale reply naming its own
// epoch (the coordinator catches up and plans again): see fence in
// topo.go.
//
// Decoders return errors wrapping ErrMalformed that name the offset, and
// never panic; decoded slices alias the input buffer, which the transport
// hands over to the handler (it is not reused).
const (
	msgPut      byte = 0x01
	msgGet      byte = 0x02
	msgHint     byte = 0x03
	msgAck      byte = 0x81
	msgGetReply byte = 0x82
	msgOK       byte = 0x83
	msgStale    byte = 0x87
	msgBatch    byte = 0x09
	msgBatchRep byte = 0x89
	msgError    byte = 0xff
)

// maxBatchMessages bounds the messages of one batch on the wire, so that
// a hostile count cannot make a decoder allocate; Config.MaxBatchRequests
// is at most this.
const maxBatchMessages = 1024

// maxBatchReplyBytes bounds a batch reply: the replies past it are sent
// empty (the sender asks again for each on its own). The first reply is
// always sent, and one reply alone fits a NATS message as a single request
// does (DefaultMaxValueBytes leaves room for the key and the framing).
const maxBatchReplyBytes = DefaultMaxValueBytes

// ErrMalformed is wrapped by the errors of every wire decoder, and by
// those refusing a record that is not valid. It is wire.ErrMalformed.
var ErrMalformed = wire.ErrMalformed

// RemoteError is an error reported by the remote node in an error reply.
type RemoteError struct {
	// Msg is the remote node's error message.
	Msg string
}

// Error returns the remote message, prefixed with "remote: ".
func (e *RemoteError) Error() string { return "remote: " + e.Msg }

// Is reports whether the remote node refused the request as overloaded
// (target ErrOverloaded): its message then begins with ErrOverloaded's
// text. Other remote errors match no sentinel.
func (e *RemoteError) Is(target error) bool {
	return target == ErrOverloaded && strings.HasPrefix(e.Msg, ErrOverloaded.Error())
}

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

func encodePut(epoch uint64, r *lsm.Record) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+wire.RecordSize(r))
	b = binary.AppendUvarint(append(b, msgPut), epoch)
	return wire.AppendRecord(b, r)
}

func encodeGet(epoch uint64, key []byte) []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(key))
	b = binary.AppendUvarint(append(b, msgGet), epoch)
	return wire.AppendBytes(b, key)
}

func encodeStale(epoch uint64) []byte {
	return binary.AppendUvarint([]byte{msgStale}, epoch)
}

func encodeHint(target string, r *lsm.Record) []byte {
	b := make([]byte, 0, 2+len(target)+wire.RecordSize(r))
	b = wire.AppendBytes(append(b, msgHint), []byte(target))
	return wire.AppendRecord(b, r)
}

func encodeAck(held lsm.Version, applied bool) []byte {
	b := make([]byte, 0, 2+2*binary.MaxVarintLen64)
	b = wire.AppendVersion(append(b, msgAck), held)
	if applied {
		return append(b, 1)
	}
	return append(b, 0)
}

func encodeGetReply(r *lsm.Record) []byte {
	if r == nil {
		return []byte{msgGetReply, 0}
	}
	b := make([]byte, 0, 2+wire.RecordSize(r))
	return wire.AppendRecord(append(b, msgGetReply, 1), r)
}

func encodeOK() []byte { return []byte{msgOK} }

func encodeError(err error) []byte {
	msg := err.Error()
	if len(msg) > 4096 {
		msg = msg[:4096]
	}
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(msg))
	return wire.AppendBytes(append(b, msgError), []byte(msg))
}

// encodeBatch encodes a batch request of msgs.
func encodeBatch(msgs [][]byte) []byte { return appendBatch(msgBatch, msgs) }

// encodeBatchReply encodes the replies of a batch, in order; those that
// would take it past maxBatchReplyBytes (the first aside) are sent empty,
// and set to nil in reps.
func encodeBatchReply(reps [][]byte) []byte {
	size := 0
	for i, m := range reps {
		if i > 0 && size+binary.MaxVarintLen32+len(m) > maxBatchReplyBytes {
			reps[i] = nil
			continue
		}
		size += binary.MaxVarintLen32 + len(m)
	}
	return appendBatch(msgBatchRep, reps)
}

func appendBatch(t byte, msgs [][]byte) []byte {
	size := 1 + binary.MaxVarintLen32
	for _, m := range msgs {
		size += binary.MaxVarintLen32 + len(m)
	}
	b := binary.AppendUvarint(append(make([]byte, 0, size), t), uint64(len(msgs)))
	for _, m := range msgs {
		b = wire.AppendBytes(b, m)
	}
	return b
}

// decodeBatch decodes a batch request: 1 to maxBatchMessages messages, none
// empty. The messages alias b.
func decodeBatch(b []byte) ([][]byte, error) {
	r := wire.NewReader(b)
	if err := readType(r, msgBatch); err != nil {
		return nil, err
	}
	msgs := readBatch(r, false)
	if err := r.End(); err != nil {
		return nil, err
	}
	return msgs, nil
}

// decodeBatchReply decodes the reply to a batch of want requests: want
// replies, each empty (not sent: ask again alone) or a whole message. An
// error or stale reply to the whole batch is returned as its error.
func decodeBatchReply(b []byte, want int) ([][]byte, error) {
	r := wire.NewReader(b)
	if err := readType(r, msgBatchRep); err != nil {
		return nil, err
	}
	reps := readBatch(r, true)
	if r.Err() == nil && len(reps) != want {
		r.FailAt(1, "%d replies to a batch of %d", len(reps), want)
	}
	if err := r.End(); err != nil {
		return nil, err
	}
	return reps, nil
}

// readBatch reads a batch's count and messages (empty ones only if
// allowEmpty).
func readBatch(r *wire.Reader, allowEmpty bool) [][]byte {
	off := r.Offset()
	n := r.Count("messages", 1, maxBatchMessages)
	if r.Err() == nil && n == 0 {
		r.FailAt(off, "empty batch")
	}
	msgs := make([][]byte, 0, n)
	for i := 0; i < n && r.Err() == nil; i++ {
		off := r.Offset()
		m := r.Bytes("message", math.MaxInt32)
		if r.Err() == nil && len(m) == 0 && !allowEmpty {
			r.FailAt(off, "empty message %d", i)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// readType reads the type byte of the message r reads: an error reply
// becomes a *RemoteError and a stale reply a *StaleError (unless want is
// their type), another type than want an error wrapping ErrMalformed.
func readType(r *wire.Reader, want byte) error {
	t := r.Byte()
	if r.Err() != nil {
		return r.Err()
	}
	if t == msgError && want != msgError {
		msg := r.Bytes("error", math.MaxInt32)
		if err := r.End(); err != nil {
			return err
		}
		return &RemoteError{Msg: string(msg)}
	}
	if t == msgStale && want != msgStale {
		epoch := r.Uvarint()
		if err := r.End(); err != nil {
			return err
		}
		return &StaleError{Epoch: epoch}
	}
	if t != want {
		r.FailAt(0, "message type %#x, want %#x", t, want)
	}
	return r.Err()
}

func decodePut(b []byte) (epoch uint64, rec lsm.Record, err error) {
	r := wire.NewReader(b)
	if err := readType(r, msgPut); err != nil {
		return 0, lsm.Record{}, err
	}
	epoch = r.Uvarint()
	rec = r.Record()
	return epoch, rec, r.End()
}

func decodeGet(b []byte) (epoch uint64, key []byte, err error) {
	r := wire.NewReader(b)
	if err := readType(r, msgGet); err != nil {
		return 0, nil, err
	}
	epoch = r.Uvarint()
	key = r.Bytes("key", wire.MaxKeyBytes)
	if r.Err() == nil && len(key) == 0 {
		r.Fail("empty key")
	}
	return epoch, key, r.End()
}

func decodeHint(b []byte) (string, lsm.Record, error) {
	r := wire.NewReader(b)
	if err := readType(r, msgHint); err != nil {
		return "", lsm.Record{}, err
	}
	target := r.Bytes("target", maxTargetBytes)
	if r.Err() == nil && len(target) == 0 {
		r.Fail("empty target")
	}
	rec := r.Record()
	if err := r.End(); err != nil {
		return "", lsm.Record{}, err
	}
	return string(target), rec, nil
}

func decodeAck(b []byte) (held lsm.Version, applied bool, err error) {
	r := wire.NewReader(b)
	if err := readType(r, msgAck); err != nil {
		return lsm.Version{}, false, err
	}
	held = r.Version()
	applied = r.Bool()
	if err := r.End(); err != nil {
		return lsm.Version{}, false, err
	}
	return held, applied, nil
}

// decodeGetReply returns found == false for a replica holding nothing.
func decodeGetReply(b []byte) (rec lsm.Record, found bool, err error) {
	r := wire.NewReader(b)
	if err := readType(r, msgGetReply); err != nil {
		return lsm.Record{}, false, err
	}
	found = r.Bool()
	if found {
		rec = r.Record()
	}
	if err := r.End(); err != nil {
		return lsm.Record{}, false, err
	}
	return rec, found, nil
}

func decodeOK(b []byte) error {
	r := wire.NewReader(b)
	if err := readType(r, msgOK); err != nil {
		return err
	}
	return r.End()
}

// decodeRecord decodes a bare record (as stored in the hint store).
func decodeRecord(b []byte) (lsm.Record, error) {
	r := wire.NewReader(b)
	rec := r.Record()
	return rec, r.End()
}

// replyError returns the error an error or stale reply carries, nil for any
// other reply.
func replyError(b []byte) error {
	if len(b) == 0 || (b[0] != msgError && b[0] != msgStale) {
		return nil
	}
	return readType(wire.NewReader(b), 0)
}
