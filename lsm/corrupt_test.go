package lsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// walFixture writes n records to a fresh DB and closes it, leaving them in
// the WAL. It returns the FS, the WAL's path and the frame offsets.
func walFixture(t *testing.T, n int) (*MemFS, string, []int) {
	t.Helper()
	fs := NewMemFS()
	db := openMem(t, fs, nil)
	for i := 0; i < n; i++ {
		mustApply(t, db, put(fmt.Sprintf("key%02d", i), fmt.Sprintf("value-%02d", i), v(uint64(i+1))))
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := fs.List("/db")
	var wal string
	for _, nm := range names {
		if strings.HasSuffix(nm, ".log") {
			wal = "/db/" + nm
		}
	}
	data, err := fs.ReadFile(wal)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int
	decodeWAL(wal, data, func(off int64, _ Record) error { offs = append(offs, int(off)); return nil })
	if len(offs) != n {
		t.Fatalf("fixture has %d frames, want %d", len(offs), n)
	}
	return fs, wal, offs
}

func countKeys(t *testing.T, db *DB) int {
	t.Helper()
	n := 0
	if err := db.Scan(nil, nil, func(Record) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWALTornTailVersusCorruption(t *testing.T) {
	const n = 10
	tests := []struct {
		name     string
		mutate   func(data []byte, offs []int) []byte
		wantKeys int  // records surviving when the open succeeds
		corrupt  bool // Open must fail with ErrCorrupt
		frame    int  // the frame the error must name
	}{
		{"intact", func(d []byte, _ []int) []byte { return d }, n, false, 0},
		{"cut inside the last header", func(d []byte, o []int) []byte { return d[:o[n-1]+5] }, n - 1, false, 0},
		{"cut inside the last payload", func(d []byte, o []int) []byte { return d[:len(d)-3] }, n - 1, false, 0},
		{"cut one byte short", func(d []byte, o []int) []byte { return d[:len(d)-1] }, n - 1, false, 0},
		{"cut inside the first frame", func(d []byte, o []int) []byte { return d[:7] }, 0, false, 0},
		{"zero-filled tail", func(d []byte, o []int) []byte { return append(d, make([]byte, 100)...) }, n, false, 0},
		{"garbage last payload", func(d []byte, o []int) []byte { d[len(d)-2] ^= 0x40; return d }, n - 1, false, 0},
		{"bit flip in a middle payload", func(d []byte, o []int) []byte { d[o[4]+walHeaderLen+3] ^= 1; return d }, 0, true, 4},
		{"bit flip in a middle length", func(d []byte, o []int) []byte { d[o[4]] ^= 0x10; return d }, 0, true, 4},
		{"bit flip in a middle checksum", func(d []byte, o []int) []byte { d[o[6]+5] ^= 0x80; return d }, 0, true, 6},
		{"zeroed middle frame", func(d []byte, o []int) []byte {
			clear(d[o[3]:o[4]])
			return d
		}, 0, true, 3},
		{"bit flip in the first header", func(d []byte, o []int) []byte { d[o[0]+9] ^= 2; return d }, 0, true, 0},
		{"bit flip in the file header", func(d []byte, o []int) []byte { d[3] ^= 2; return d }, 0, true, -1},
		{"torn file header", func(d []byte, o []int) []byte { return d[:10] }, 0, false, 0},
		{"empty file", func(d []byte, o []int) []byte { return d[:0] }, 0, false, 0},
		{"zeroed file", func(d []byte, o []int) []byte { clear(d); return d }, 0, false, 0},
		{"garbage after the tail", func(d []byte, o []int) []byte { return append(d, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13) }, n, false, 0},
		{"damaged last frame, then zeros", func(d []byte, o []int) []byte {
			d[len(d)-4] ^= 8
			return append(d, make([]byte, 4096)...)
		}, n - 1, false, 0},
		{"torn group: last two frames half zeroed", func(d []byte, o []int) []byte {
			clear(d[o[n-2]+walHeaderLen : o[n-1]+walHeaderLen+2])
			return append(d, make([]byte, 100)...)
		}, n - 2, false, 0},
		{"damaged frame with a valid one after it", func(d []byte, o []int) []byte {
			d[o[n-2]+walHeaderLen] ^= 1
			return d
		}, 0, true, n - 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, wal, offs := walFixture(t, n)
			data, _ := fs.ReadFile(wal)
			data = tt.mutate(data, offs)
			fs.WriteFile(wal, data)
			db, err := Open(Options{Dir: "/db", FS: fs})
			if tt.corrupt {
				var ce *CorruptionError
				if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) {
					t.Fatalf("Open = %v, want ErrCorrupt", err)
				}
				wantOff := 0 // -1: the file header
				if tt.frame >= 0 {
					wantOff = offs[tt.frame]
				}
				if !strings.HasSuffix(wal, ce.File) || ce.Offset != int64(wantOff) {
					t.Fatalf("error names %s@%d, want %s@%d: %v", ce.File, ce.Offset, wal, wantOff, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if got := countKeys(t, db); got != tt.wantKeys {
				t.Fatalf("%d records after recovery, want %d", got, tt.wantKeys)
			}
			// The tail was cut for good: more writes and another reopen work.
			mustApply(t, db, put("after", "x", v(1000)))
			db.Close()
			db = openMem(t, fs, nil)
			if got := countKeys(t, db); got != tt.wantKeys+1 {
				t.Fatalf("%d records after second reopen, want %d", got, tt.wantKeys+1)
			}
			db.Close()
		})
	}
}

func TestWALUnknownFormatVersion(t *testing.T) {
	fs, wal, _ := walFixture(t, 3)
	data, _ := fs.ReadFile(wal)
	binary.LittleEndian.PutUint32(data[8:], walFormatVersion+1)
	binary.LittleEndian.PutUint32(data[12:], checksum(data[:12]))
	fs.WriteFile(wal, data)
	if _, err := Open(Options{Dir: "/db", FS: fs}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Open = %v, want ErrUnsupported", err)
	}
}

// TestWALTornRecordHoldingFrames: a torn record whose value holds the bytes
// of valid WAL frames is still a torn tail, not corruption.
func TestWALTornRecordHoldingFrames(t *testing.T) {
	fs := NewMemFS()
	db := openMem(t, fs, nil)
	mustApply(t, db, put("first", "1", v(1)))
	mustApply(t, db, put("evil", string(walSeed()), v(2)))
	db.Close()
	names, _ := fs.List("/db")
	for _, nm := range names {
		if strings.HasSuffix(nm, ".log") {
			data, _ := fs.ReadFile("/db/" + nm)
			data[len(data)-1] ^= 0xff // damage the last record's payload
			fs.WriteFile("/db/"+nm, data)
		}
	}
	db = openMem(t, fs, nil)
	defer db.Close()
	if got := countKeys(t, db); got != 1 {
		t.Fatalf("%d records, want 1", got)
	}
}

// tableFixture writes records into a single table and returns its path.
func tableFixture(t *testing.T, n int) (*MemFS, string) {
	t.Helper()
	fs := NewMemFS()
	db := openMem(t, fs, nil)
	for i := 0; i < n; i++ {
		mustApply(t, db, put(fmt.Sprintf("key%04d", i), strings.Repeat(fmt.Sprint(i%10), 40), v(uint64(i+1))))
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	db.Close()
	names, _ := fs.List("/db")
	for _, nm := range names {
		if strings.HasSuffix(nm, ".sst") {
			return fs, "/db/" + nm
		}
	}
	t.Fatal("no table")
	return nil, ""
}

// readAllChecked opens the DB and reads every key with Get and Scan. It
// fails the test if any read returns a wrong value, and returns the first
// error met.
func readAllChecked(t *testing.T, fs FS, n int) error {
	db, err := Open(Options{Dir: "/db", FS: fs})
	if err != nil {
		return err
	}
	defer db.Close()
	var first error
	for i := 0; i < n; i++ {
		got, err := db.Get([]byte(fmt.Sprintf("key%04d", i)))
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		if string(got.Value) != strings.Repeat(fmt.Sprint(i%10), 40) || got.Version != v(uint64(i+1)) || got.Tombstone {
			t.Fatalf("key %d: wrong record %+v", i, got)
		}
	}
	err = db.Scan(nil, nil, func(r Record) bool {
		var i int
		fmt.Sscanf(string(r.Key), "key%04d", &i)
		if string(r.Value) != strings.Repeat(fmt.Sprint(i%10), 40) {
			t.Fatalf("scan: wrong record %+v", r)
		}
		return true
	})
	if first == nil {
		first = err
	}
	return first
}

// TestTableBitFlips flips one bit in every byte of a table's filter, index
// and footer and in every fifth byte of its data blocks, in turn: each flip
// must be reported as ErrCorrupt (at open or on the read that meets it),
// naming the table, and no read may return a wrong value.
func TestTableBitFlips(t *testing.T) {
	const n = 150
	fs, path := tableFixture(t, n)
	orig, _ := fs.ReadFile(path)
	size := len(orig)
	ft, err := decodeFooter("t", orig[size-footerLen:], int64(size))
	if err != nil {
		t.Fatal(err)
	}
	region := func(off int) string {
		switch {
		case off >= size-footerLen:
			return "footer"
		case uint64(off) >= ft.index.off:
			return "index"
		case uint64(off) >= ft.filter.off:
			return "filter"
		}
		return "data"
	}
	seen := map[string]int{}
	for off := 0; off < size; off++ {
		if region(off) == "data" && off%5 != 0 {
			continue // every fifth byte of the data blocks is enough
		}
		data := append([]byte(nil), orig...)
		data[off] ^= 1 << (off % 8)
		fs.WriteFile(path, data)
		err := readAllChecked(t, fs, n)
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flip at %d (%s): err = %v, want ErrCorrupt", off, region(off), err)
		}
		var ce *CorruptionError
		if errors.As(err, &ce) && !strings.HasSuffix(path, ce.File) {
			t.Fatalf("flip at %d: error names %q", off, ce.File)
		}
		seen[region(off)]++
	}
	t.Logf("bytes flipped per region: %v (table of %d bytes)", seen, size)
	fs.WriteFile(path, orig)
	if err := readAllChecked(t, fs, n); err != nil {
		t.Fatal(err)
	}
}

func TestTableTruncated(t *testing.T) {
	const n = 100
	fs, path := tableFixture(t, n)
	orig, _ := fs.ReadFile(path)
	for _, cut := range []int{0, 1, footerLen - 1, footerLen, len(orig) / 2, len(orig) - footerLen, len(orig) - 1} {
		fs.WriteFile(path, orig[:cut])
		if err := readAllChecked(t, fs, n); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("table cut to %d bytes: %v", cut, err)
		}
	}
	// A table missing altogether is an error too, not an empty store.
	fs.Remove(path)
	if _, err := Open(Options{Dir: "/db", FS: fs}); err == nil {
		t.Fatal("Open with a missing table succeeded")
	}
}

func TestTableUnknownFormatVersion(t *testing.T) {
	fs, path := tableFixture(t, 10)
	data, _ := fs.ReadFile(path)
	f := data[len(data)-footerLen:]
	binary.LittleEndian.PutUint32(f[40:], tableFormatVersion+1)
	binary.LittleEndian.PutUint32(f[44:], checksum(f[:44]))
	fs.WriteFile(path, data)
	_, err := Open(Options{Dir: "/db", FS: fs})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), fmt.Sprintf("format version %d,", tableFormatVersion+1)) {
		t.Fatalf("Open = %v, want ErrUnsupported", err)
	}
}

func TestManifestCorruption(t *testing.T) {
	fs, _ := tableFixture(t, 10)
	orig, _ := fs.ReadFile("/db/MANIFEST")
	for off := range orig {
		data := append([]byte(nil), orig...)
		data[off] ^= 0x20
		fs.WriteFile("/db/MANIFEST", data)
		_, err := Open(Options{Dir: "/db", FS: fs})
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("manifest flip at %d: Open = %v", off, err)
		}
	}
	fs.Remove("/db/MANIFEST")
	if _, err := Open(Options{Dir: "/db", FS: fs}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("missing manifest: Open = %v", err)
	}
}
