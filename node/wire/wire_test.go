package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/kvs-db/kvs/lsm"
)

// unhex decodes hex written with spaces between the fields.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// sameRecord compares records treating nil and empty slices alike.
func sameRecord(a, b lsm.Record) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) &&
		a.Version == b.Version && a.Tombstone == b.Tombstone && a.Expiry == b.Expiry
}

// goldenRecords are records beside their encodings, field by field: key,
// counter, node, flags, [expiry], value. The encoding is what every node
// of a cluster must agree on, build after build.
var goldenRecords = []struct {
	rec  lsm.Record
	want string
}{
	{lsm.Record{Key: []byte("k"), Value: []byte("v"), Version: lsm.Version{Counter: 300, Node: 2}},
		"016b ac02 02 00 0176"},
	{lsm.Record{Key: []byte("a"), Version: lsm.Version{Counter: 1}},
		"0161 01 00 00 00"},
	{lsm.Record{Key: []byte("tomb"), Version: lsm.Version{Counter: 1, Node: 1}, Tombstone: true, Expiry: -1},
		"04746f6d62 01 01 03 01 00"},
	{lsm.Record{Key: []byte("e"), Value: []byte("x"), Version: lsm.Version{Counter: math.MaxUint64, Node: math.MaxUint32}, Expiry: 1764093600000},
		"0165 ffffffffffffffffff01 ffffffff0f 02 8084e1c2d766 0178"},
	{lsm.Record{Key: []byte("m"), Version: lsm.Version{Node: 7}, Tombstone: true, Expiry: math.MinInt64},
		"016d 00 07 03 ffffffffffffffffff01 00"},
	{lsm.Record{Key: bytes.Repeat([]byte("k"), 200), Value: bytes.Repeat([]byte("v"), 128), Version: lsm.Version{Counter: 128, Node: 1}},
		"c801" + strings.Repeat("6b", 200) + " 8001 01 00 8001" + strings.Repeat("76", 128)},
}

func TestRecordGolden(t *testing.T) {
	for _, g := range goldenRecords {
		want := unhex(t, g.want)
		got := AppendRecord([]byte{0xee}, &g.rec)
		if got[0] != 0xee || !bytes.Equal(got[1:], want) {
			t.Errorf("%.8q: got %x, want ee%x", g.rec.Key, got, want)
		}
		if n := RecordLen(&g.rec); n != len(want) {
			t.Errorf("%.8q: RecordLen %d, encoding %d", g.rec.Key, n, len(want))
		}
		if n := RecordSize(&g.rec); n < len(want) {
			t.Errorf("%.8q: RecordSize %d, under the encoding's %d", g.rec.Key, n, len(want))
		}
		r := NewReader(want)
		if rec := r.Record(); r.End() != nil || !sameRecord(rec, g.rec) {
			t.Errorf("%.8q: decoded %+v, %v", g.rec.Key, rec, r.Err())
		}
	}
}

func TestAppendGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		{"empty bytes", AppendBytes(nil, nil), "00"},
		{"bytes", AppendBytes([]byte{1}, []byte("ab")), "01 02 6162"},
		{"long bytes", AppendBytes(nil, make([]byte, 300)), "ac02" + strings.Repeat("00", 300)},
		{"version", AppendVersion(nil, lsm.Version{Counter: 1 << 14, Node: 127}), "808001 7f"},
	} {
		if want := unhex(t, tc.want); !bytes.Equal(tc.got, want) {
			t.Errorf("%s: got %x, want %x", tc.name, tc.got, want)
		}
	}
}

func TestReader(t *testing.T) {
	b := unhex(t, "07 01 ac02 03 ffffffffffffffffff01 0102030405060708 02 6869 02 0102")
	r := NewReader(b)
	if c := r.Byte(); c != 7 {
		t.Errorf("Byte = %d", c)
	}
	if v := r.Bool(); !v {
		t.Errorf("Bool = %v", v)
	}
	if v := r.Uvarint(); v != 300 {
		t.Errorf("Uvarint = %d", v)
	}
	if v := r.Varint(); v != -2 {
		t.Errorf("Varint = %d", v)
	}
	if v := r.Uvarint(); v != math.MaxUint64 {
		t.Errorf("Uvarint = %d", v)
	}
	if v := r.U64(); v != 0x0807060504030201 {
		t.Errorf("U64 = %#x", v)
	}
	if p := r.Bytes("name", 2); string(p) != "hi" || cap(p) != 2 {
		t.Errorf("Bytes = %q, capacity %d", p, cap(p))
	}
	if n := r.Count("items", 1, 2); n != 2 {
		t.Errorf("Count = %d", n)
	}
	if r.Offset() != len(b)-2 {
		t.Errorf("Offset = %d, want %d", r.Offset(), len(b)-2)
	}
	if err := r.End(); err == nil || !strings.Contains(err.Error(), "2 trailing bytes") {
		t.Errorf("End before the last 2 bytes = %v", err)
	}
}

// TestReaderRejects: every error wraps ErrMalformed and names the offset
// at which the bad field starts.
func TestReaderRejects(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		read     func(*Reader)
		want     string // a part of the error message
	}{
		{"byte truncated", "", func(r *Reader) { r.Byte() }, "offset 0: truncated"},
		{"bad bool", "00 02", func(r *Reader) { r.Byte(); r.Bool() }, "offset 1: bad bool 2"},
		{"bad uvarint", "ffffffffffffffffffff01", func(r *Reader) { r.Uvarint() }, "offset 0: bad uvarint"},
		{"truncated uvarint", "00 80", func(r *Reader) { r.Byte(); r.Uvarint() }, "offset 1: bad uvarint"},
		{"bad varint", "80", func(r *Reader) { r.Varint() }, "offset 0: bad varint"},
		{"u64 truncated", "00 01020304050607", func(r *Reader) { r.Byte(); r.U64() }, "offset 1: truncated"},
		{"bytes over max", "00 03 616263", func(r *Reader) { r.Byte(); r.Bytes("name", 2) }, "offset 1: name length 3 over 2"},
		{"bytes past end", "00 03 6162", func(r *Reader) { r.Byte(); r.Bytes("name", 9) }, "offset 1: name length 3 past end"},
		{"count past end", "00 03 0000", func(r *Reader) { r.Byte(); r.Count("pairs", 2, 9) }, "offset 1: 3 pairs in 2 bytes"},
		{"huge count", "ffffffffffffffffff01", func(r *Reader) { r.Count("pairs", 1, math.MaxInt) }, "offset 0: 18446744073709551615 pairs in 0 bytes"},
		{"count over max", "03 000000", func(r *Reader) { r.Count("pairs", 1, 2) }, "offset 0: 3 pairs, over 2"},
		{"node over 32 bits", "01 8080808010", func(r *Reader) { r.Version() }, "offset 1: version node 4294967296 over 32 bits"},
		{"trailing", "00 00", func(r *Reader) { r.Byte() }, "offset 1: 1 trailing bytes"},
		{"fail", "00 00", func(r *Reader) { r.Byte(); r.Fail("no %s", "good") }, "offset 1: no good"},
		{"fail at", "00 00", func(r *Reader) { r.Byte(); r.FailAt(0, "bad") }, "offset 0: bad"},
		{"first error sticks", "02", func(r *Reader) { r.Bool(); r.Byte(); r.Fail("later") }, "offset 0: bad bool 2"},
		{"record key too long", "8108", func(r *Reader) { r.Record() }, "offset 0: key length 1025 over 1024"},
		{"record empty key", "00 01 00 00 00", func(r *Reader) { r.Record() }, "offset 0: empty key"},
		{"record unknown flags", "016b 01 00 80 00", func(r *Reader) { r.Record() }, "offset 4: unknown flags 0x80"},
		{"record zero expiry", "016b 01 00 02 00 00", func(r *Reader) { r.Record() }, "offset 5: expiry flag with zero expiry"},
		{"record bad expiry", "016b 01 00 02 80", func(r *Reader) { r.Record() }, "offset 5: bad varint"},
		{"record node over 32 bits", "016b 01 8080808010 00 00", func(r *Reader) { r.Record() }, "offset 3: version node"},
		{"record tombstone with value", "00 016b 01 00 01 0176", func(r *Reader) { r.Byte(); r.Record() }, `offset 1: tombstone of "k" with a value`},
		{"record zero version", "016b 00 00 00 00", func(r *Reader) { r.Record() }, `offset 0: zero version of "k"`},
		{"record value past end", "016b 01 00 00 05 78", func(r *Reader) { r.Record() }, "offset 5: value length 5 past end"},
		{"record truncated", "016b 01", func(r *Reader) { r.Record() }, "offset 3: bad uvarint"},
	} {
		r := NewReader(unhex(t, tc.in))
		tc.read(r)
		err := r.End()
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want ErrMalformed with %q", tc.name, err, tc.want)
		}
		if err != r.Err() {
			t.Errorf("%s: End = %v, Err = %v", tc.name, err, r.Err())
		}
	}
}

// TestReaderAfterError: after the first error every read returns a zero
// value and the offset stays put, so a decoder may read on and check once.
func TestReaderAfterError(t *testing.T) {
	r := NewReader(unhex(t, "02 01 01 0100000000000000 016b 01 00 00 00"))
	r.Bool()
	off := r.Offset()
	if r.Byte() != 0 || r.Bool() || r.Uvarint() != 0 || r.Varint() != 0 || r.U64() != 0 ||
		r.Bytes("x", 9) != nil || r.Count("x", 1, 9) != 0 || !r.Version().IsZero() || r.Record().Key != nil {
		t.Error("a read after an error returned something")
	}
	if r.Offset() != off {
		t.Errorf("offset moved from %d to %d", off, r.Offset())
	}
}

// TestRecordAllocs: decoding a record allocates nothing (its slices alias
// the message), nor does encoding one into a buffer of RecordSize.
func TestRecordAllocs(t *testing.T) {
	rec := goldenRecords[3].rec
	b := AppendRecord(nil, &rec)
	if n := testing.AllocsPerRun(100, func() {
		r := NewReader(b)
		r.Record()
		if r.End() != nil {
			t.Fatal(r.Err())
		}
	}); n != 0 {
		t.Errorf("decoding a record: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		_ = AppendRecord(make([]byte, 0, RecordSize(&rec)), &rec)
	}); n > 1 {
		t.Errorf("encoding a record: %v allocations", n)
	}
}

// FuzzRecord checks that Record never panics, that its errors wrap
// ErrMalformed, and that a record it accepts encodes in RecordLen bytes
// and decodes again to the same record.
func FuzzRecord(f *testing.F) {
	for _, g := range goldenRecords {
		f.Add(unhex(f, g.want))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(b)
		rec := r.Record()
		if err := r.End(); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again := AppendRecord(nil, &rec)
		if len(again) != RecordLen(&rec) || len(again) > RecordSize(&rec) {
			t.Fatalf("%+v: encoding %d bytes, RecordLen %d, RecordSize %d", rec, len(again), RecordLen(&rec), RecordSize(&rec))
		}
		r = NewReader(again)
		if rec2 := r.Record(); r.End() != nil || !sameRecord(rec, rec2) {
			t.Fatalf("re-encoding %+v: %+v, %v", rec, rec2, r.Err())
		}
	})
}
