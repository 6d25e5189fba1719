package lsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Record flags, the first byte of a record's encoding.
const (
	flagTombstone = 1 << 0
	// flagPurged marks a purge marker. It is new in format version 2 of
	// the WAL and of tables: the decoders of version 1 refuse unknown
	// flags as corruption, so files that may hold it carry version 2,
	// which those decoders refuse as unsupported instead.
	flagPurged = 1 << 1
)

// formatFlags returns the record flags a WAL or table of format version v
// may hold.
func formatFlags(v uint32) byte {
	if v < 2 {
		return flagTombstone
	}
	return flagTombstone | flagPurged
}

var errShort = errors.New("short buffer")

// appendValue encodes everything of rec except the key:
//
//	flags u8 | counter u64 | node u32 | expiry varint | value (rest)
//
// flags: bit 0 tombstone, bit 1 purge marker (format version 2 on).
func appendValue(dst []byte, rec *Record) []byte {
	var flags byte
	if rec.Tombstone {
		flags |= flagTombstone
	}
	if rec.purged {
		flags |= flagPurged
	}
	dst = append(dst, flags)
	dst = binary.LittleEndian.AppendUint64(dst, rec.Version.Counter)
	dst = binary.LittleEndian.AppendUint32(dst, rec.Version.Node)
	dst = binary.AppendVarint(dst, rec.Expiry)
	return append(dst, rec.Value...)
}

// decodeValue is the inverse of appendValue; known holds the flags the
// file's format version defines. The record's Value aliases b.
func decodeValue(b []byte, rec *Record, known byte) error {
	if len(b) < 13 {
		return errShort
	}
	flags := b[0]
	if flags&^known != 0 {
		return fmt.Errorf("unknown record flags %#x", flags)
	}
	if flags == flagTombstone|flagPurged {
		return errors.New("record is both a tombstone and a purge marker")
	}
	rec.Tombstone = flags&flagTombstone != 0
	rec.purged = flags&flagPurged != 0
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
	if rec.purged && len(rec.Value) != 0 {
		return errors.New("purge marker with a value")
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

// decodeRecord is the inverse of appendRecord; known holds the flags the
// file's format version defines. The record aliases b.
func decodeRecord(b []byte, known byte) (Record, error) {
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
	err := decodeValue(b[n+int(kl):], &rec, known)
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
