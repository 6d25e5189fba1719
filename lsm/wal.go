package lsm

import (
	"encoding/binary"
	"fmt"
	"io"
)

// A WAL file starts with a header:
//
//	magic u64 | formatVersion u32 | crc32c(previous 12 bytes) u32
//
// and goes on with one frame per record. Format version 2 added the purge
// marker flag; version 1 files are still read.
const (
	walMagic            = 0x31306c61777376 // "vswal01" little-endian
	walFormatVersion    = 2
	walMinFormatVersion = 1
	walFileHeaderLen    = 16
)

func walFileHeader() []byte {
	b := binary.LittleEndian.AppendUint64(nil, walMagic)
	b = binary.LittleEndian.AppendUint32(b, walFormatVersion)
	return binary.LittleEndian.AppendUint32(b, checksum(b))
}

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
	putFrameHeader(h[:], payload)
	dst = append(dst, h[:]...)
	return append(dst, payload...)
}

// putFrameHeader fills h (walHeaderLen bytes) with the frame header of
// payload.
func putFrameHeader(h, payload []byte) {
	binary.LittleEndian.PutUint32(h[0:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[4:], checksum(payload))
	binary.LittleEndian.PutUint32(h[8:], checksum(h[:8]))
}

// walTail says how a WAL ended.
type walTail int

const (
	walClean    walTail = iota // ends exactly after a valid record
	walZeroTail                // valid records, then only zero bytes (preallocated space)
	walTorn                    // a damaged record with no valid record after it
)

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// validFrameAt reports whether a whole, checksummed frame starts at b[0].
func validFrameAt(b []byte) bool {
	if len(b) < walHeaderLen || checksum(b[:8]) != binary.LittleEndian.Uint32(b[8:]) {
		return false
	}
	n := binary.LittleEndian.Uint32(b)
	if n > maxWALRecord || int(n) > len(b)-walHeaderLen {
		return false
	}
	return checksum(b[walHeaderLen:walHeaderLen+int(n)]) == binary.LittleEndian.Uint32(b[4:])
}

// validFrameFrom reports whether a valid frame starts anywhere in b at or
// after offset from.
func validFrameFrom(b []byte, from int) bool {
	for p := from; p+walHeaderLen <= len(b); p++ {
		if validFrameAt(b[p:]) {
			return true
		}
	}
	return false
}

// decodeWAL walks the frames of a WAL image and calls fn for each record in
// order. It returns the offset just past the last valid record and how the
// image ends. When a frame fails a check, the image is searched for a valid
// frame anywhere after it: if there is none, the damage is a torn tail —
// what a crash in the middle of a write leaves, be it a cut, zeros or a mix
// of new and old blocks — and decoding stops there; if there is one, records
// that were once complete lie beyond the damage, and the result is a
// CorruptionError naming file and offset. The records passed to fn alias
// data.
func decodeWAL(file string, data []byte, fn func(off int64, rec Record) error) (int64, walTail, error) {
	// The file header. A file that is all zeros (or empty) was created but
	// never written to before a crash.
	if allZero(data) {
		return 0, walZeroTail, nil
	}
	le := binary.LittleEndian
	reason := ""
	switch {
	case len(data) < walFileHeaderLen:
		reason = "truncated WAL file header"
	case le.Uint64(data) != walMagic:
		reason = "bad WAL magic"
	case checksum(data[:12]) != le.Uint32(data[12:]):
		reason = "WAL file header checksum mismatch"
	}
	if reason != "" {
		if validFrameFrom(data, 1) {
			return 0, walClean, corruptf(file, 0, "%s, with valid records after it", reason)
		}
		return 0, walTorn, nil
	}
	version := le.Uint32(data[8:])
	if version < walMinFormatVersion || version > walFormatVersion {
		return 0, walClean, fmt.Errorf("%w: WAL %s has format version %d, this code reads %d to %d",
			ErrUnsupported, file, version, walMinFormatVersion, walFormatVersion)
	}
	known := formatFlags(version)
	off := walFileHeaderLen
	for off < len(data) {
		rest := data[off:]
		if allZero(rest) {
			return int64(off), walZeroTail, nil
		}
		reason = ""
		var n uint32
		// Where to look for valid frames past a damaged one: right after
		// it when its (checksummed) header gives its length, so that a
		// value that happens to hold frame bytes is never mistaken for one.
		scanFrom := 1
		switch {
		case len(rest) < walHeaderLen:
			reason = "truncated WAL record header"
		case checksum(rest[:8]) != binary.LittleEndian.Uint32(rest[8:]):
			reason = "WAL record header checksum mismatch"
		default:
			n = binary.LittleEndian.Uint32(rest[0:])
			switch {
			case n > maxWALRecord:
				reason = fmt.Sprintf("WAL record length %d too large", n)
			case int(n) > len(rest)-walHeaderLen:
				reason = "WAL record runs past the end of the file"
			case checksum(rest[walHeaderLen:walHeaderLen+int(n)]) != binary.LittleEndian.Uint32(rest[4:]):
				reason = "WAL record checksum mismatch"
				scanFrom = walHeaderLen + int(n)
			}
		}
		if reason != "" {
			if validFrameFrom(rest, scanFrom) {
				return int64(off), walClean, corruptf(file, int64(off), "%s, with valid records after it", reason)
			}
			return int64(off), walTorn, nil
		}
		end := walHeaderLen + int(n)
		rec, err := decodeRecord(rest[walHeaderLen:end], known)
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

// walWriter appends frames to one WAL file. It is owned by the leader of
// the commit pipeline (commit.go).
type walWriter struct {
	f     File
	num   uint64
	name  string
	size  int64
	dirty bool // written since the last sync
	// prealloc says that space was reserved for the file: it may be
	// longer than size, with zeros.
	prealloc bool
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
		return fmt.Errorf("lsm: sync WAL %s: %w", w.name, &syncError{err})
	}
	w.dirty = false
	return nil
}

// trim cuts off the space reserved past the last frame, if any, so that
// the next Open does not read it: a 5 MiB run of zeros costs a reopen more
// than all the rest. The cut is durable at the next sync. It is best
// effort: a file it could not cut only costs that read.
func (w *walWriter) trim() error {
	t, ok := w.f.(truncater)
	if !w.prealloc || !ok {
		return nil
	}
	size, err := w.f.Size()
	if err != nil || size <= w.size {
		return err
	}
	if err := t.Truncate(w.size); err != nil {
		return fmt.Errorf("lsm: trim WAL %s to offset %d: %w", w.name, w.size, err)
	}
	w.dirty = true
	return nil
}

// cutBack undoes a failed write: it cuts the file back to size, the offset
// before the write, and fsyncs, so that neither a torn frame nor a whole
// frame of the failed write can be replayed, and nothing can be appended
// after them. Any error leaves the WAL in an unknown state.
func (w *walWriter) cutBack(size int64) error {
	t, ok := w.f.(truncater)
	if !ok {
		return fmt.Errorf("lsm: cannot cut WAL %s back to offset %d: its file system cannot truncate", w.name, size)
	}
	if err := t.Truncate(size); err != nil {
		return fmt.Errorf("lsm: cut WAL %s back to offset %d: %w", w.name, size, err)
	}
	w.size = size
	w.dirty = true
	return w.sync()
}
