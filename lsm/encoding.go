package lsm

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

const flagTombstone = 1

var errShort = errors.New("short buffer")

// appendValue encodes everything of rec except the key:
//
//	flags u8 | counter u64 | node u32 | expiry varint | value (rest)
func appendValue(dst []byte, rec *Record) []byte {
	var flags byte
	if rec.Tombstone {
		flags |= flagTombstone
	}
	dst = append(dst, flags)
	dst = binary.LittleEndian.AppendUint64(dst, rec.Version.Counter)
	dst = binary.LittleEndian.AppendUint32(dst, rec.Version.Node)
	dst = binary.AppendVarint(dst, rec.Expiry)
	return append(dst, rec.Value...)
}

// decodeValue is the inverse of appendValue. The record's Value aliases b.
func decodeValue(b []byte, rec *Record) error {
	if len(b) < 13 {
		return errShort
	}
	flags := b[0]
	if flags&^flagTombstone != 0 {
		return errors.New("unknown record flags")
	}
	rec.Tombstone = flags&flagTombstone != 0
	rec.Version.Counter = binary.LittleEndian.Uint64(b[1:])
	rec.Version.Node = binary.LittleEndian.Uint32(b[9:])
	exp, n := binary.Varint(b[13:])
	if n <= 0 {
		return errors.New("bad expiry varint")
	}
	rec.Expiry = exp
	rec.Value = b[13+n:]
	if rec.Tombstone && len(rec.Value) != 0 {
		return errors.New("tombstone with a value")
	}
	if len(rec.Value) == 0 {
		rec.Value = nil
	}
	return nil
}

// appendRecord encodes a whole record (the WAL payload):
//
//	keyLen uvarint | key | value encoding of appendValue
func appendRecord(dst []byte, rec *Record) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(rec.Key)))
	dst = append(dst, rec.Key...)
	return appendValue(dst, rec)
}

// decodeRecord is the inverse of appendRecord. The record aliases b.
func decodeRecord(b []byte) (Record, error) {
	var rec Record
	kl, n := binary.Uvarint(b)
	if n <= 0 {
		return rec, errors.New("bad key length varint")
	}
	if kl > uint64(len(b)-n) {
		return rec, errors.New("key length past the end")
	}
	rec.Key = b[n : n+int(kl)]
	if len(rec.Key) == 0 {
		return rec, errors.New("empty key")
	}
	err := decodeValue(b[n+int(kl):], &rec)
	return rec, err
}

// cloneRecord returns a deep copy of rec.
func cloneRecord(rec Record) Record {
	buf := make([]byte, len(rec.Key)+len(rec.Value))
	copy(buf, rec.Key)
	copy(buf[len(rec.Key):], rec.Value)
	rec.Key = buf[:len(rec.Key):len(rec.Key)]
	if rec.Value != nil {
		rec.Value = buf[len(rec.Key):]
	}
	return rec
}
