package lsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func walSeed() []byte {
	return walImage(walFormatVersion,
		put("a", "1", v(1)),
		del("b", v(2)),
		Record{Key: []byte("c"), Value: bytes.Repeat([]byte("x"), 300), Version: Version{1 << 40, 7}, Expiry: -5},
		put("d", "", v(uint64(3))),
		purgeMarker("e", v(4)),
	)
}

// FuzzDecodeWAL: decoding never panics; what it accepts re-encodes to the
// same bytes; errors are CorruptionErrors (or ErrUnsupported); a version 1
// WAL never yields a purge marker.
func FuzzDecodeWAL(f *testing.F) {
	seed := walSeed()
	f.Add(seed)
	f.Add(walImage(1, put("a", "1", v(1)), purgeMarker("e", v(4))))
	f.Add(seed[:len(seed)-3])
	f.Add(append(append([]byte(nil), seed...), 0, 0, 0, 0))
	f.Add([]byte{})
	f.Add(make([]byte, walHeaderLen))
	flipped := append([]byte(nil), seed...)
	flipped[20] ^= 1
	f.Add(flipped)
	f.Fuzz(func(t *testing.T, data []byte) {
		var re []byte
		if len(data) >= walFileHeaderLen {
			re = append(re, data[:walFileHeaderLen]...)
		}
		end, _, err := decodeWAL("fuzz.log", data, func(_ int64, rec Record) error {
			if rec.purged && binary.LittleEndian.Uint32(data[8:]) < 2 {
				t.Fatalf("version 1 WAL yielded a purge marker")
			}
			re = appendFrame(re, appendRecord(nil, &rec))
			return nil
		})
		if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
			t.Fatalf("error does not wrap ErrCorrupt: %v", err)
		}
		if end < 0 || end > int64(len(data)) {
			t.Fatalf("end %d out of range", end)
		}
		if end > walFileHeaderLen && !bytes.Equal(re, data[:end]) {
			t.Fatalf("accepted prefix does not re-encode to itself")
		}
	})
}

func blockSeed() []byte {
	var b blockBuilder
	for i := 0; i < 40; i++ {
		b.add([]byte{'k', byte('a' + i/10), byte('a' + i%10)}, bytes.Repeat([]byte{byte(i)}, i%7))
	}
	return append([]byte(nil), b.finish()...)
}

// FuzzDecodeBlock: parsing and iterating any bytes never panics, and the
// keys an iterator yields ascend strictly.
func FuzzDecodeBlock(f *testing.F) {
	f.Add(blockSeed(), []byte("kbc"))
	f.Add([]byte{0, 0, 0, 0}, []byte("a"))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0}, []byte(""))
	f.Fuzz(func(t *testing.T, data, seek []byte) {
		blk, err := parseBlock(data)
		if err != nil {
			return
		}
		it := blk.iter()
		var prev []byte
		n := 0
		for ok := it.first(); ok; ok = it.next() {
			if n > 0 && bytes.Compare(prev, it.key) >= 0 {
				t.Fatalf("keys not ascending: %q then %q", prev, it.key)
			}
			prev = append(prev[:0], it.key...)
			n++
			var rec Record
			_ = decodeValue(it.val, &rec, formatFlags(tableFormatVersion))
		}
		it2 := blk.iter()
		if it2.seekGE(seek) && it2.err == nil && bytes.Compare(it2.key, seek) < 0 {
			t.Fatalf("seekGE(%q) landed on %q", seek, it2.key)
		}
	})
}

// tableSeed returns a table of format version version with n records,
// every seventh a purge marker and every fifth a tombstone.
func tableSeed(version uint32, n int) []byte {
	recs := make([]Record, n)
	for i := range recs {
		k := string([]byte{'k', byte(i / 256), byte(i)})
		switch {
		case i%7 == 6:
			recs[i] = purgeMarker(k, v(uint64(i+1)))
		case i%5 == 4:
			recs[i] = del(k, v(uint64(i+1)))
		default:
			recs[i] = put(k, "value", v(uint64(i+1)))
		}
	}
	return tableImage(version, recs...)
}

// FuzzOpenTable: opening and reading any bytes as a table never panics;
// failures are ErrCorrupt or ErrUnsupported; a version 1 table never yields
// a purge marker.
func FuzzOpenTable(f *testing.F) {
	f.Add(tableSeed(tableFormatVersion, 3), []byte("k\x00\x01"))
	f.Add(tableSeed(tableFormatVersion, 200), []byte("k\x00\x10"))
	f.Add(tableSeed(1, 200), []byte("k\x00\x06"))
	f.Add(make([]byte, footerLen), []byte("a"))
	f.Fuzz(func(t *testing.T, data, key []byte) {
		fs := NewMemFS()
		fs.MkdirAll("/t")
		fs.WriteFile("/t/x.sst", data)
		file, _ := fs.Open("/t/x.sst")
		tb, err := loadTable(file, "x.sst", nil)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		r, _, err := tb.get(key, bloomHash(key))
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("get: %v", err)
		}
		if r.purged && tb.flags&flagPurged == 0 {
			t.Fatalf("version 1 table yielded a purge marker")
		}
		it := tb.iter(nil, nil)
		var prev []byte
		for ; it.valid(); it.next() {
			if prev != nil && bytes.Compare(prev, it.rec().Key) >= 0 {
				t.Fatalf("table keys not ascending")
			}
			prev = append(prev[:0], it.rec().Key...)
			if it.rec().purged && tb.flags&flagPurged == 0 {
				t.Fatalf("version 1 table yielded a purge marker")
			}
		}
		if it.err != nil && !errors.Is(it.err, ErrCorrupt) {
			t.Fatalf("iter: %v", it.err)
		}
	})
}
