package node

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"slices"
	"testing"

	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node/wire"
)

var wireRecords = []lsm.Record{
	{Key: []byte("k"), Value: []byte("v"), Version: lsm.Version{Counter: 1, Node: 1}},
	{Key: []byte("k"), Value: []byte{}, Version: lsm.Version{Counter: math.MaxUint64, Node: math.MaxUint32}},
	{Key: []byte("tomb"), Version: lsm.Version{Counter: 1 << 50, Node: 7}, Tombstone: true},
	{Key: bytes.Repeat([]byte{0}, MaxKeyBytes), Value: bytes.Repeat([]byte{0xff}, 70000), Version: lsm.Version{Counter: 3}, Expiry: 1764093600000},
	{Key: []byte("neg"), Value: []byte("x"), Version: lsm.Version{Node: 9}, Expiry: -5},
}

// sameRecord compares records treating nil and empty slices alike.
func sameRecord(a, b lsm.Record) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) &&
		a.Version == b.Version && a.Tombstone == b.Tombstone && a.Expiry == b.Expiry
}

func TestWireRoundTrip(t *testing.T) {
	for _, rec := range wireRecords {
		epoch, got, err := decodePut(encodePut(77, &rec))
		if err != nil || epoch != 77 || !sameRecord(got, rec) {
			t.Errorf("put %v: got epoch %d %v, %v", rec.Version, epoch, got.Version, err)
		}
		target, got, err := decodeHint(encodeHint("node-1", &rec))
		if err != nil || target != "node-1" || !sameRecord(got, rec) {
			t.Errorf("hint %v: got %q %v, %v", rec.Version, target, got.Version, err)
		}
		got, found, err := decodeGetReply(encodeGetReply(&rec))
		if err != nil || !found || !sameRecord(got, rec) {
			t.Errorf("get reply %v: got %v %v, %v", rec.Version, got.Version, found, err)
		}
		got, err = decodeRecord(wire.AppendRecord(nil, &rec))
		if err != nil || !sameRecord(got, rec) {
			t.Errorf("record %v: got %v, %v", rec.Version, got.Version, err)
		}
		epoch, key, err := decodeGet(encodeGet(78, rec.Key))
		if err != nil || epoch != 78 || !bytes.Equal(key, rec.Key) {
			t.Errorf("get %q: got epoch %d %q, %v", rec.Key, epoch, key, err)
		}
	}
	if _, found, err := decodeGetReply(encodeGetReply(nil)); err != nil || found {
		t.Errorf("get reply none: found %v, %v", found, err)
	}
	for _, applied := range []bool{false, true} {
		v := lsm.Version{Counter: 12345678901, Node: 42}
		held, ok, err := decodeAck(encodeAck(v, applied))
		if err != nil || held != v || ok != applied {
			t.Errorf("ack: got %v %v %v", held, ok, err)
		}
	}
	if err := decodeOK(encodeOK()); err != nil {
		t.Errorf("ok: %v", err)
	}
	// An error reply decodes as a RemoteError from every reply decoder.
	er := encodeError(errors.New("disk on fire"))
	var re *RemoteError
	if _, _, err := decodeAck(er); !errors.As(err, &re) || re.Msg != "disk on fire" {
		t.Errorf("ack of an error reply: %v", err)
	}
	if _, _, err := decodeGetReply(er); !errors.As(err, &re) {
		t.Errorf("get reply of an error reply: %v", err)
	}
	if err := decodeOK(er); !errors.As(err, &re) {
		t.Errorf("ok of an error reply: %v", err)
	}
}

func TestWireRejects(t *testing.T) {
	good := encodePut(1, &wireRecords[0])
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"type only", []byte{msgPut}},
		{"wrong type", encodeGet(1, []byte("k"))},
		{"truncated", good[:len(good)-1]},
		{"trailing", append(bytes.Clone(good), 0)},
		{"empty key", encodePut(1, &lsm.Record{Version: lsm.Version{Counter: 1}})},
		{"key too long", encodePut(1, &lsm.Record{Key: make([]byte, MaxKeyBytes+1), Version: lsm.Version{Counter: 1}})},
		{"zero version", encodePut(1, &lsm.Record{Key: []byte("k")})},
		{"tombstone with value", encodePut(1, &lsm.Record{Key: []byte("k"), Value: []byte("v"), Tombstone: true, Version: lsm.Version{Counter: 1}})},
		{"unknown flags", []byte{msgPut, 1, 'k', 1, 0, 0x80, 0}},
		{"expiry flag zero", []byte{msgPut, 1, 'k', 1, 0, 2 /* has expiry */, 0, 0}},
		{"node over 32 bits", []byte{msgPut, 1, 'k', 1, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0}},
		{"bad varint", []byte{msgPut, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"value past end", []byte{msgPut, 1, 'k', 1, 0, 0, 5, 'a'}},
		{"huge length", []byte{msgPut, 1, 'k', 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}},
	} {
		if _, err := decodePutRecord(tc.b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", tc.name, err)
		}
	}
	if _, _, err := decodeAck([]byte{msgAck, 1, 1, 2}); !errors.Is(err, ErrMalformed) {
		t.Errorf("ack with bad bool: %v", err)
	}
	if _, _, err := decodeHint(encodeHint("", &wireRecords[0])); !errors.Is(err, ErrMalformed) {
		t.Errorf("hint with empty target: %v", err)
	}
	if _, _, err := decodeGetReply([]byte{msgGetReply, 1}); !errors.Is(err, ErrMalformed) {
		t.Errorf("get reply found without record: %v", err)
	}
	if _, _, err := decodeGet([]byte{msgGet, 1, 0}); !errors.Is(err, ErrMalformed) {
		t.Errorf("get with empty key: %v", err)
	}
	var se *StaleError
	if _, _, err := decodeAck(encodeStale(9)); !errors.As(err, &se) || se.Epoch != 9 || !errors.Is(err, ErrStaleEpoch) {
		t.Errorf("stale reply: %v", err)
	}
}

func seedWire(f *testing.F) {
	for _, rec := range wireRecords[:3] {
		f.Add(encodePut(3, &rec))
		f.Add(encodeHint("n2", &rec))
		f.Add(encodeGetReply(&rec))
		f.Add(wire.AppendRecord(nil, &rec))
	}
	f.Add(encodeGet(3, []byte("key")))
	f.Add(encodeStale(4))
	f.Add(encodeAck(lsm.Version{Counter: 1, Node: 2}, true))
	f.Add(encodeGetReply(nil))
	f.Add(encodeError(errors.New("boom")))
	f.Add(encodeOK())
	f.Add([]byte{})
	f.Add(encodeBatch([][]byte{encodeGet(1, []byte("k")), encodeOK()}))
	f.Add(encodeBatchReply([][]byte{encodeOK(), encodeStale(3)}))
	f.Add([]byte{msgBatch, 1, 0})
	f.Add([]byte{msgBatchRep, 2, 0, 1, msgOK})
}

// The fuzz targets check that no decoder panics and that whatever decodes
// re-encodes to a message that decodes to the same value.

func FuzzDecodePut(f *testing.F) {
	seedWire(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		epoch, rec, err := decodePut(b)
		if err != nil {
			return
		}
		e2, again, err := decodePut(encodePut(epoch, &rec))
		if err != nil || e2 != epoch || !sameRecord(rec, again) {
			t.Fatalf("re-encoding %+v: %+v, %v", rec, again, err)
		}
	})
}

func FuzzDecodeHint(f *testing.F) {
	seedWire(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		target, rec, err := decodeHint(b)
		if err != nil {
			return
		}
		t2, again, err := decodeHint(encodeHint(target, &rec))
		if err != nil || t2 != target || !sameRecord(rec, again) {
			t.Fatalf("re-encoding %q %+v: %q %+v, %v", target, rec, t2, again, err)
		}
	})
}

func FuzzDecodeGet(f *testing.F) {
	seedWire(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		epoch, key, err := decodeGet(b)
		if err != nil {
			return
		}
		e2, again, err := decodeGet(encodeGet(epoch, key))
		if err != nil || e2 != epoch || !bytes.Equal(key, again) {
			t.Fatalf("re-encoding %q: %q, %v", key, again, err)
		}
	})
}

func FuzzDecodeReplies(f *testing.F) {
	seedWire(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		if held, applied, err := decodeAck(b); err == nil {
			h2, a2, err := decodeAck(encodeAck(held, applied))
			if err != nil || h2 != held || a2 != applied {
				t.Fatalf("ack re-encoding: %v %v %v", h2, a2, err)
			}
		}
		if rec, found, err := decodeGetReply(b); err == nil {
			var p *lsm.Record
			if found {
				p = &rec
			}
			r2, f2, err := decodeGetReply(encodeGetReply(p))
			if err != nil || f2 != found || !reflect.DeepEqual(found, f2) || (found && !sameRecord(rec, r2)) {
				t.Fatalf("get reply re-encoding: %v %v", f2, err)
			}
		}
		_ = decodeOK(b)
		if rec, err := decodeRecord(b); err == nil {
			if again, err := decodeRecord(wire.AppendRecord(nil, &rec)); err != nil || !sameRecord(rec, again) {
				t.Fatalf("record re-encoding: %v", err)
			}
		}
	})
}

func decodePutRecord(b []byte) (lsm.Record, error) {
	_, rec, err := decodePut(b)
	return rec, err
}

func FuzzDecodeBatch(f *testing.F) {
	seedWire(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var re *RemoteError
		if msgs, err := decodeBatch(b); err != nil {
			// An error or stale reply decodes as the error it carries.
			if !errors.Is(err, ErrMalformed) && !errors.As(err, &re) && !errors.Is(err, ErrStaleEpoch) {
				t.Fatalf("batch error %v does not wrap ErrMalformed", err)
			}
		} else {
			again, err := decodeBatch(encodeBatch(msgs))
			if err != nil || !slices.EqualFunc(msgs, again, bytes.Equal) {
				t.Fatalf("batch re-encoding: %q, %v", again, err)
			}
		}
		for _, want := range []int{1, 2} {
			reps, err := decodeBatchReply(b, want)
			if err != nil {
				continue
			}
			again, err := decodeBatchReply(encodeBatchReply(slices.Clone(reps)), want)
			if err != nil || !slices.EqualFunc(reps, again, bytes.Equal) {
				t.Fatalf("batch reply re-encoding: %q, %v", again, err)
			}
		}
	})
}
