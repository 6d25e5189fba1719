package lsm

import (
	"encoding/binary"
	"fmt"
	"io"
)

// WAL framing. Each record is
//
//	payloadLen u32 | payloadCRC u32 | headerCRC u32 | payload
//
// headerCRC covers the first eight bytes, so a damaged length is detected
// before it is trusted.
const walHeaderLen = 12

// maxWALRecord bounds a WAL payload; a valid header never claims more.
const maxWALRecord = 1 << 30

func appendFrame(dst, payload []byte) []byte {
	var h [walHeaderLen]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[4:], checksum(payload))
	binary.LittleEndian.PutUint32(h[8:], checksum(h[:8]))
	dst = append(dst, h[:]...)
	return append(dst, payload...)
}

// walTail says how a WAL ended.
type walTail int

const (
	walClean walTail = iota // ends exactly after a valid record
	walTorn                 // ends in an incomplete record (crash mid-write)
)

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// decodeWAL walks the frames of a WAL image and calls fn for each record in
// order. It returns the offset just past the last valid record and whether
// the image ends in a torn record. A torn record is one that runs past the
// end of the image, whose payload checksum fails when it is the last thing
// in the image, or a zero-filled tail. Anything else that fails a check is a
// CorruptionError naming file and offset. The records passed to fn alias
// data.
func decodeWAL(file string, data []byte, fn func(off int64, rec Record) error) (int64, walTail, error) {
	off := 0
	for off < len(data) {
		rest := data[off:]
		if len(rest) < walHeaderLen {
			return int64(off), walTorn, nil
		}
		if allZero(rest[:walHeaderLen]) && allZero(rest) {
			return int64(off), walTorn, nil
		}
		if checksum(rest[:8]) != binary.LittleEndian.Uint32(rest[8:]) {
			return int64(off), walClean, corruptf(file, int64(off), "WAL record header checksum mismatch")
		}
		n := binary.LittleEndian.Uint32(rest[0:])
		if n > maxWALRecord {
			return int64(off), walClean, corruptf(file, int64(off), "WAL record length %d too large", n)
		}
		end := walHeaderLen + int(n)
		if end > len(rest) {
			return int64(off), walTorn, nil
		}
		payload := rest[walHeaderLen:end]
		if checksum(payload) != binary.LittleEndian.Uint32(rest[4:]) {
			if end == len(rest) {
				return int64(off), walTorn, nil
			}
			return int64(off), walClean, corruptf(file, int64(off), "WAL record checksum mismatch")
		}
		rec, err := decodeRecord(payload)
		if err != nil {
			return int64(off), walClean, corruptf(file, int64(off), "WAL record: %v", err)
		}
		if fn != nil {
			if err := fn(int64(off), rec); err != nil {
				return int64(off), walClean, err
			}
		}
		off += end
	}
	return int64(off), walClean, nil
}

// readAll reads a whole file.
func readAll(f File) ([]byte, error) {
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, size)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !(err == io.EOF && int64(n) == size) {
		return nil, err
	}
	return buf[:n], nil
}

// walWriter appends frames to one WAL file. It is owned by the committer.
type walWriter struct {
	f     File
	num   uint64
	name  string
	size  int64
	dirty bool // written since the last sync
}

func (w *walWriter) write(b []byte) error {
	n, err := w.f.Write(b)
	w.size += int64(n)
	if err == nil && n != len(b) {
		err = io.ErrShortWrite
	}
	if n > 0 {
		w.dirty = true
	}
	if err != nil {
		return fmt.Errorf("lsm: write WAL %s: %w", w.name, err)
	}
	return nil
}

func (w *walWriter) sync() error {
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("lsm: sync WAL %s: %w", w.name, err)
	}
	w.dirty = false
	return nil
}
