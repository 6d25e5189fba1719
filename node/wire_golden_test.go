package node

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node/aae"
	"github.com/kvs-db/kvs/node/wire"
)

// unhex decodes hex written with spaces between the fields.
func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// TestWireGolden pins every message's encoding to the byte: the wire
// format is shared by the nodes of a cluster, which may run different
// builds during a rolling upgrade.
func TestWireGolden(t *testing.T) {
	rec := lsm.Record{Key: []byte("k"), Value: []byte("v"), Version: lsm.Version{Counter: 300, Node: 2}}
	tomb := lsm.Record{Key: []byte("tomb"), Version: lsm.Version{Counter: 1, Node: 1}, Tombstone: true, Expiry: -1}
	exp := lsm.Record{Key: []byte("e"), Value: []byte("x"), Version: lsm.Version{Counter: 1<<64 - 1, Node: 1<<32 - 1}, Expiry: 1764093600000}
	cells := cellSet{}
	cells.add(3, 0)
	cells.add(3, 1023)
	leaves := [][]uint64{make([]uint64, aae.Segments), make([]uint64, aae.Segments)}
	leaves[1][0] = 0x0102030405060708
	entries := []aeEntry{{key: []byte("a"), v: lsm.Version{Counter: 1, Node: 2}}, {key: []byte("b"), v: lsm.Version{Counter: 300}}}
	for _, tc := range []struct {
		name string
		got  []byte
		want string // type, then the fields in order
	}{
		{"put", encodePut(5, &rec), "01 05 016b ac02 02 00 0176"},
		{"put tombstone with expiry", encodePut(1, &tomb), "01 01 04746f6d62 01 01 03 01 00"},
		{"put max version", encodePut(2, &exp), "01 02 0165 ffffffffffffffffff01 ffffffff0f 02 8084e1c2d766 0178"},
		{"get", encodeGet(5, []byte("key")), "02 05 036b6579"},
		{"hint", encodeHint("n2", &rec), "03 026e32 016b ac02 02 00 0176"},
		{"ack applied", encodeAck(rec.Version, true), "81 ac02 02 01"},
		{"ack held", encodeAck(lsm.Version{Counter: 1}, false), "81 01 00 00"},
		{"get reply", encodeGetReply(&rec), "82 01 016b ac02 02 00 0176"},
		{"get reply none", encodeGetReply(nil), "82 00"},
		{"ok", encodeOK(), "83"},
		{"stale", encodeStale(300), "87 ac02"},
		{"error", encodeError(errors.New("boom")), "ff 04626f6f6d"},
		{"roots", encodeRoots(5, "n1", []uint64{3, 1 << 63}, []uint64{7, 0x0102030405060708}),
			"04 05 026e31 02 0300000000000000 0700000000000000 0000000000000080 0807060504030201"},
		{"roots reply", encodeRootsReply([]uint64{3}), "84 01 0300000000000000"},
		{"leaves", encodeLeaves(6, "n2", []uint64{9}), "05 06 026e32 01 0900000000000000"},
		{"leaves reply", encodeLeavesReply(leaves),
			"85 02" + strings.Repeat("00", 8*1024) + "0807060504030201" + strings.Repeat("00", 8*1023)},
		{"keys", encodeKeys(7, "n3", []byte("k1"), cells),
			"08 07 026e33 026b31 01 0300000000000000 01" + strings.Repeat("00", 126) + "80"},
		{"keys reply", encodeKeysReply(entries, []byte("c"), true), "88 01 0163 02 0161 01 02 0162 ac02 00"},
		{"keys reply last", encodeKeysReply(nil, nil, false), "88 00 00 00"},
		{"record", wire.AppendRecord(nil, &rec), "016b ac02 02 00 0176"},
		{"batch", encodeBatch([][]byte{encodeGet(5, []byte("key")), encodePut(5, &rec)}),
			"09 02 06 02 05 036b6579 0a 01 05 016b ac02 02 00 0176"},
		{"batch reply", encodeBatchReply([][]byte{encodeAck(rec.Version, true), encodeStale(300), encodeError(errors.New("boom"))}),
			"89 03 05 81 ac02 02 01 03 87 ac02 06 ff 04626f6f6d"},
		{"batch reply, second not sent", encodeBatchReply([][]byte{encodeOK(), make([]byte, maxBatchReplyBytes)}),
			"89 02 01 83 00"},
	} {
		if want := unhex(t, tc.want); !bytes.Equal(tc.got, want) {
			t.Errorf("%s:\n got %x\nwant %x", tc.name, tc.got, want)
		}
	}
}
