package stream

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node/wire"
)

func v(c uint64) lsm.Version { return lsm.Version{Counter: c, Node: 1} }

var wireRecords = []lsm.Record{
	{Key: []byte("a"), Value: []byte("v"), Version: lsm.Version{Counter: 1, Node: 1}},
	{Key: []byte("b"), Value: []byte{}, Version: lsm.Version{Counter: math.MaxUint64, Node: math.MaxUint32}},
	{Key: []byte("c"), Version: lsm.Version{Counter: 1 << 50, Node: 7}, Tombstone: true},
	{Key: []byte("d"), Value: []byte("x"), Version: lsm.Version{Node: 9}, Expiry: -5},
	{Key: []byte("e"), Version: v(3), Tombstone: true, Expiry: 1764093600000},
	{Key: bytes.Repeat([]byte{0xff}, wire.MaxKeyBytes), Value: bytes.Repeat([]byte{0}, 70000), Version: v(3), Expiry: math.MinInt64},
}

var wireRequests = []Request{
	{Epoch: 1, Gainer: "g", Loser: "l"},
	{Epoch: math.MaxUint64, Gainer: strings.Repeat("g", maxIDBytes), Loser: "node-2",
		After: bytes.Repeat([]byte{0}, wire.MaxKeyBytes), MaxBytes: math.MaxInt32},
	{Epoch: 7, Gainer: "n4", Loser: "n1", After: []byte("k0042"), MaxBytes: 512 << 10},
}

var wirePages = []Page{
	{Done: true},
	{Next: []byte("k")},
	{Records: wireRecords[:1], Next: []byte("a")},
	{Records: wireRecords[:1], Next: []byte("zz"), Done: true},
	{Records: wireRecords, Next: wireRecords[len(wireRecords)-1].Key},
}

// sameRecord compares records treating nil and empty slices alike.
func sameRecord(a, b lsm.Record) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) &&
		a.Version == b.Version && a.Tombstone == b.Tombstone && a.Expiry == b.Expiry
}

func sameRequest(a, b Request) bool {
	return a.Epoch == b.Epoch && a.Gainer == b.Gainer && a.Loser == b.Loser &&
		bytes.Equal(a.After, b.After) && (a.After == nil) == (b.After == nil) && a.MaxBytes == b.MaxBytes
}

func samePage(a, b Page) bool {
	return a.Done == b.Done && bytes.Equal(a.Next, b.Next) && (a.Next == nil) == (b.Next == nil) &&
		slices.EqualFunc(a.Records, b.Records, sameRecord)
}

func TestRequestRoundTrip(t *testing.T) {
	for _, r := range wireRequests {
		got, err := DecodeRequest(r.Encode())
		if err != nil || !sameRequest(got, r) {
			t.Errorf("%+v: got %+v, %v", r, got, err)
		}
	}
	// A negative MaxBytes travels as zero: both mean the source's cap.
	got, err := DecodeRequest((&Request{Epoch: 1, Gainer: "g", Loser: "l", MaxBytes: -3}).Encode())
	if err != nil || got.MaxBytes != 0 {
		t.Errorf("negative max bytes: got %d, %v", got.MaxBytes, err)
	}
}

func TestPageRoundTrip(t *testing.T) {
	for i, p := range wirePages {
		b := p.Encode()
		got, err := DecodePage(b)
		if err != nil || !samePage(got, p) {
			t.Errorf("page %d: got %+v, %v", i, got, err)
		}
	}
}

// TestWireGolden pins the encodings to the byte: gainer and source may
// run different builds during a rolling upgrade.
func TestWireGolden(t *testing.T) {
	rec := lsm.Record{Key: []byte("k"), Value: []byte("v"), Version: lsm.Version{Counter: 300, Node: 2}}
	tomb := lsm.Record{Key: []byte("tomb"), Version: lsm.Version{Counter: 1, Node: 1}, Tombstone: true, Expiry: -1}
	for _, tc := range []struct {
		name string
		got  []byte
		want string // type, then the fields in order
	}{
		{"request", (&Request{Epoch: 7, Gainer: "n4", Loser: "n1", After: []byte("k0"), MaxBytes: 512 << 10}).Encode(),
			"06 07 026e34 026e31 026b30 808020"},
		{"first request", (&Request{Epoch: 1, Gainer: "g", Loser: "l"}).Encode(), "06 01 0167 016c 00 00"},
		{"page", (&Page{Records: []lsm.Record{rec, tomb}, Next: []byte("u")}).Encode(),
			"86 00 0175 02 016b ac02 02 00 0176 04746f6d62 01 01 03 01 00"},
		{"last page", (&Page{Done: true}).Encode(), "86 01 00 00"},
	} {
		want, err := hex.DecodeString(strings.ReplaceAll(tc.want, " ", ""))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !bytes.Equal(tc.got, want) {
			t.Errorf("%s:\n got %x\nwant %x", tc.name, tc.got, want)
		}
	}
}

// TestDecodersRejectTruncation cuts every valid message at every length.
func TestDecodersRejectTruncation(t *testing.T) {
	for _, r := range wireRequests {
		b := r.Encode()
		for n := range len(b) {
			if _, err := DecodeRequest(b[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("request %+v cut at %d of %d: err = %v", r, n, len(b), err)
			}
		}
	}
	for i, p := range wirePages {
		b := p.Encode()
		for n := range len(b) {
			if _, err := DecodePage(b[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("page %d cut at %d of %d: err = %v", i, n, len(b), err)
			}
		}
	}
}

func TestDecodeRequestRejects(t *testing.T) {
	good := wireRequests[2].Encode()
	enc := func(r Request) []byte { return r.Encode() }
	for _, tc := range []struct {
		name, msg string // msg: a part of the error message
		b         []byte
	}{
		{"empty", "offset 0: truncated", nil},
		{"wrong type", "offset 0: message type 0x86", wirePages[0].Encode()},
		{"trailing", "trailing", append(bytes.Clone(good), 0)},
		{"zero epoch", "zero epoch", enc(Request{Gainer: "g", Loser: "l"})},
		{"empty gainer", "offset 2: empty gainer", enc(Request{Epoch: 1, Loser: "l"})},
		{"empty loser", "offset 4: empty loser", enc(Request{Epoch: 1, Gainer: "g"})},
		{"long gainer", "gainer length 256 over 255", enc(Request{Epoch: 1, Gainer: strings.Repeat("g", 256), Loser: "l"})},
		{"long after", "after length 1025 over 1024", enc(Request{Epoch: 1, Gainer: "g", Loser: "l", After: make([]byte, 1025)})},
		{"after past end", "after length 9 past end", []byte{msgRequest, 1, 1, 'g', 1, 'l', 9, 'k', 0}},
		{"bad uvarint", "offset 1: bad uvarint", []byte{msgRequest, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"max bytes over int32", "max bytes", []byte{msgRequest, 1, 1, 'g', 1, 'l', 0, 0x80, 0x80, 0x80, 0x80, 0x08}},
	} {
		_, err := DecodeRequest(tc.b)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: err = %v, want ErrMalformed with %q", tc.name, err, tc.msg)
		}
	}
}

func TestDecodePageRejects(t *testing.T) {
	rec := func(key, val string, tomb bool) lsm.Record {
		return lsm.Record{Key: []byte(key), Value: []byte(val), Version: v(1), Tombstone: tomb}
	}
	enc := func(next string, done bool, recs ...lsm.Record) []byte {
		p := Page{Records: recs, Done: done}
		if next != "" {
			p.Next = []byte(next)
		}
		return p.Encode()
	}
	good := enc("b", false, rec("a", "1", false), rec("b", "2", false))
	for _, tc := range []struct {
		name, msg string
		b         []byte
	}{
		{"empty", "truncated", nil},
		{"wrong type", "message type 0x6", wireRequests[0].Encode()},
		{"trailing", "trailing", append(bytes.Clone(good), 0)},
		{"bad done", "offset 1: bad bool 2", []byte{msgPage, 2, 0, 0}},
		{"not done without next", "no resume key", enc("", false)},
		{"unordered", "record key \"a\" not after \"b\"", enc("b", false, rec("b", "", false), rec("a", "", false))},
		{"duplicate key", "not after", enc("a", false, rec("a", "1", false), rec("a", "2", false))},
		{"next before last record", "next key \"a\" before", enc("a", false, rec("a", "", false), rec("b", "", false))},
		{"records without next", "next key \"\" before", enc("", true, rec("a", "", false))},
		{"tombstone with value", "tombstone of \"a\" with a value", enc("a", false, rec("a", "v", true))},
		{"empty key", "empty key", enc("a", false, lsm.Record{Value: []byte("x"), Version: v(1)})},
		{"zero version", "zero version", enc("a", false, lsm.Record{Key: []byte("a")})},
		{"key too long", "key length 1025 over 1024", enc("a", false, lsm.Record{Key: make([]byte, 1025), Version: v(1)})},
		{"count over bytes", "records in", []byte{msgPage, 1, 0, 100, 1, 'a', 1, 1, 0, 0}},
		{"huge count", "records in", []byte{msgPage, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"unknown flags", "unknown flags", []byte{msgPage, 1, 1, 'a', 1, 1, 'a', 1, 1, 0x80, 0}},
		{"expiry flag zero", "zero expiry", []byte{msgPage, 1, 1, 'a', 1, 1, 'a', 1, 1, 2 /* has expiry */, 0, 0}},
		{"node over 32 bits", "over 32 bits", []byte{msgPage, 1, 1, 'a', 1, 1, 'a', 1, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0}},
		{"value past end", "value length 5 past end", []byte{msgPage, 1, 1, 'a', 1, 1, 'a', 1, 1, 0, 5, 'x'}},
	} {
		_, err := DecodePage(tc.b)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "offset") {
			t.Errorf("%s: err = %v, want ErrMalformed with %q and an offset", tc.name, err, tc.msg)
		}
	}
}

func seedWire(f *testing.F) {
	for _, r := range wireRequests {
		f.Add(r.Encode())
	}
	for _, p := range wirePages[:4] {
		f.Add(p.Encode())
	}
	f.Add([]byte{})
	f.Add([]byte{msgPage, 1, 0, 0})
}

// The fuzz targets check that no decoder panics, that every error wraps
// ErrMalformed, and that whatever decodes re-encodes to a message that
// decodes to the same value.

func FuzzDecodeRequest(f *testing.F) {
	seedWire(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := DecodeRequest(r.Encode())
		if err != nil || !sameRequest(r, again) {
			t.Fatalf("re-encoding %+v: %+v, %v", r, again, err)
		}
	})
}

func FuzzDecodePage(f *testing.F) {
	seedWire(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePage(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := DecodePage(p.Encode())
		if err != nil || !samePage(p, again) {
			t.Fatalf("re-encoding %+v: %+v, %v", p, again, err)
		}
	})
}
