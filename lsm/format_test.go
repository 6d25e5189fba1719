package lsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// loadFixture copies the files of testdata/<dir> into /db of a MemFS.
func loadFixture(t *testing.T, dir string) *MemFS {
	t.Helper()
	fs := NewMemFS()
	fs.MkdirAll("/db")
	entries, err := os.ReadDir(filepath.Join("testdata", dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".txt") {
			continue
		}
		b, err := os.ReadFile(filepath.Join("testdata", dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fs.WriteFile("/db/"+e.Name(), b)
	}
	return fs
}

// fileVersions returns the format version of every WAL and table in /db.
func fileVersions(t *testing.T, fs *MemFS) map[string]uint32 {
	t.Helper()
	names, _ := fs.List("/db")
	out := map[string]uint32{}
	for _, n := range names {
		b, _ := fs.ReadFile("/db/" + n)
		switch {
		case strings.HasSuffix(n, ".log") && len(b) >= walFileHeaderLen:
			out[n] = binary.LittleEndian.Uint32(b[8:])
		case strings.HasSuffix(n, ".sst"):
			out[n] = binary.LittleEndian.Uint32(b[len(b)-footerLen+40:])
		}
	}
	return out
}

// TestFormatV1Readable opens a directory written by the code before format
// version 2 (testdata/format-v1: a table and a WAL, see its README.txt) and
// reads every record, then writes, flushes, compacts and reopens: the new
// files are version 2 and nothing is lost.
func TestFormatV1Readable(t *testing.T) {
	fs := loadFixture(t, "format-v1")
	vs := fileVersions(t, fs)
	if len(vs) != 2 || vs["000002.log"] != 1 || vs["000003.sst"] != 1 {
		t.Fatalf("fixture is not a version 1 WAL and table: %v", vs)
	}
	want := map[string]Record{
		"a": put("a", "apricot", v(4)),
		"b": del("b", v(2)),
		"c": del("c", v(6)),
		"d": put("d", "date", v(5)),
	}
	check := func(db *DB) {
		t.Helper()
		for k, w := range want {
			got, err := db.Get([]byte(k))
			if err != nil || !recEqual(got, w) {
				t.Fatalf("Get(%s) = %+v, %v; want %+v", k, got, err, w)
			}
		}
		if n := countKeys(t, db); n != len(want) {
			t.Fatalf("scan: %d keys, want %d", n, len(want))
		}
	}
	db := openMem(t, fs, nil)
	check(db)
	// c@3 with expiry 99 is shadowed by the WAL (now replayed into a new
	// table); read it from the version 1 table, the oldest.
	tb := db.cur.tables[len(db.cur.tables)-1]
	if tb.name != "000003.sst" {
		t.Fatalf("oldest table is %s", tb.name)
	}
	c, ok, err := tb.get([]byte("c"), bloomHash([]byte("c")))
	if err != nil || !ok || string(c.Value) != "cherry" || c.Expiry != 99 {
		t.Fatalf("version 1 table: c = %+v, %v, %v", c, ok, err)
	}
	want["e"] = put("e", "elder", v(7))
	mustApply(t, db, want["e"])
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Compact(); err != nil {
		t.Fatal(err)
	}
	check(db)
	db.Close()
	for n, ver := range fileVersions(t, fs) {
		if ver != 2 {
			t.Errorf("%s written with format version %d", n, ver)
		}
	}
	db = openMem(t, fs, nil)
	defer db.Close()
	check(db)
}

func purgeMarker(k string, ver Version) Record {
	return Record{Key: []byte(k), Version: ver, purged: true}
}

// walImage returns a WAL of the given format version holding recs.
func walImage(version uint32, recs ...Record) []byte {
	b := walFileHeader()
	binary.LittleEndian.PutUint32(b[8:], version)
	binary.LittleEndian.PutUint32(b[12:], checksum(b[:12]))
	for _, r := range recs {
		b = appendFrame(b, appendRecord(nil, &r))
	}
	return b
}

// tableImage returns a table of the given format version holding recs.
func tableImage(version uint32, recs ...Record) []byte {
	fs := NewMemFS()
	fs.MkdirAll("/t")
	f, _ := fs.Create("/t/x.sst")
	w := newTableWriter(f)
	for _, r := range recs {
		w.add(&r)
	}
	w.finish()
	b, _ := fs.ReadFile("/t/x.sst")
	ft := b[len(b)-footerLen:]
	binary.LittleEndian.PutUint32(ft[40:], version)
	binary.LittleEndian.PutUint32(ft[44:], checksum(ft[:44]))
	return b
}

// readTableImage loads a table image and returns its records.
func readTableImage(data []byte) ([]Record, error) {
	fs := NewMemFS()
	fs.MkdirAll("/t")
	fs.WriteFile("/t/x.sst", data)
	f, _ := fs.Open("/t/x.sst")
	tb, err := loadTable(f, "x.sst", nil)
	if err != nil {
		return nil, err
	}
	var out []Record
	it := tb.iter(nil, nil)
	for ; it.valid(); it.next() {
		out = append(out, cloneRecord(it.rec()))
	}
	return out, it.err
}

// TestPurgeMarkerEncoding: a purge marker round-trips through the WAL and
// table encodings of version 2; in a version 1 file its flag is corruption
// that names the file and the offset of the record's frame or block, as
// any unknown flag was before.
func TestPurgeMarkerEncoding(t *testing.T) {
	recs := []Record{put("a", "1", v(1)), purgeMarker("b", v(2)), del("c", v(3))}

	var got []Record
	_, _, err := decodeWAL("x.log", walImage(2, recs...), func(_ int64, r Record) error {
		got = append(got, cloneRecord(r))
		return nil
	})
	if err != nil || len(got) != 3 || !got[1].purged || got[0].purged || got[2].purged || !recEqual(got[1], recs[1]) {
		t.Fatalf("version 2 WAL: %+v, %v", got, err)
	}
	got, err = readTableImage(tableImage(2, recs...))
	if err != nil || len(got) != 3 || !got[1].purged || got[0].purged || got[2].purged || !recEqual(got[1], recs[1]) {
		t.Fatalf("version 2 table: %+v, %v", got, err)
	}

	var ce *CorruptionError
	wal1 := walImage(1, recs...)
	_, _, err = decodeWAL("x.log", wal1, nil)
	second := int64(walFileHeaderLen + len(appendFrame(nil, appendRecord(nil, &recs[0]))))
	if !errors.As(err, &ce) || ce.File != "x.log" || ce.Offset != second || !strings.Contains(ce.Reason, "unknown record flags") {
		t.Fatalf("purge marker in a version 1 WAL: %v, want corruption at offset %d", err, second)
	}
	_, err = readTableImage(tableImage(1, recs...))
	if !errors.As(err, &ce) || ce.File != "x.sst" || ce.Offset != 0 || !strings.Contains(ce.Reason, "unknown record flags") {
		t.Fatalf("purge marker in a version 1 table: %v, want corruption of block 0", err)
	}
	// Version 1 files without markers read as before.
	if _, _, err := decodeWAL("x.log", walImage(1, recs[0], recs[2]), nil); err != nil {
		t.Fatalf("version 1 WAL: %v", err)
	}
	if got, err := readTableImage(tableImage(1, recs[0], recs[2])); err != nil || len(got) != 2 {
		t.Fatalf("version 1 table: %+v, %v", got, err)
	}
}

// TestMalformedPurgeMarker: the decoder refuses a marker that is also a
// tombstone or carries a value.
func TestMalformedPurgeMarker(t *testing.T) {
	for _, r := range []Record{
		{Key: []byte("k"), Version: v(1), purged: true, Tombstone: true},
		{Key: []byte("k"), Version: v(1), purged: true, Value: []byte("x")},
	} {
		var got Record
		err := decodeValue(appendValue(nil, &r), &got, formatFlags(2))
		if err == nil {
			t.Errorf("decodeValue accepted %+v", r)
		}
	}
}

// TestFormatVersionRange: WALs and tables of a version below 1 or above the
// current one are refused with ErrUnsupported, naming the version.
func TestFormatVersionRange(t *testing.T) {
	for _, ver := range []uint32{0, walFormatVersion + 1} {
		_, _, err := decodeWAL("x.log", walImage(ver, put("a", "1", v(1))), nil)
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), fmt.Sprintf("x.log has format version %d,", ver)) {
			t.Errorf("WAL version %d: %v", ver, err)
		}
	}
	for _, ver := range []uint32{0, tableFormatVersion + 1} {
		_, err := readTableImage(tableImage(ver, put("a", "1", v(1))))
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), fmt.Sprintf("x.sst has format version %d,", ver)) {
			t.Errorf("table version %d: %v", ver, err)
		}
	}
}
