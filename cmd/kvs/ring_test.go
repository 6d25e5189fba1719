package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/kvs-db/kvs/gateway"
)

func TestPrintRing(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	r := gateway.RingJSON{Self: "node1", ClusterID: "c0ffee", Epoch: 4, Revision: 9, N: 3, VNodes: 100,
		Members: []gateway.RingMemberJSON{
			{ID: "node1", State: "normal", HTTP: "127.0.0.1:8081", Since: 1, Alive: true, Epoch: 4, Ownership: 0.3, Replicated: 0.9},
			{ID: "node2", State: "leaving", HTTP: "127.0.0.1:8082", Since: 4, Alive: false, Epoch: 3, Ownership: 0.4, Replicated: 1},
			{ID: "node3", State: "removed", Since: 2},
		},
		Change: &gateway.RingChangeJSON{Kind: "leave", Node: "node2", Epoch: 4, Gainers: []string{"node1", "node4"}, Streamed: []string{"node4"},
			Transfers: []gateway.TransferJSON{{Gainer: "node1", Loser: "node2", Share: 0.25}},
			Progress: []gateway.ProgressJSON{
				{Node: "node1", Transfers: 2, Done: 1, Keys: 1500, Bytes: 3 << 20, Updated: now.Add(-2 * time.Second)},
				{Node: "node4", Transfers: 1, Done: 1, Keys: 10, Bytes: 900, Updated: now},
			}},
	}
	var b bytes.Buffer
	if err := printRing(&b, r, now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"cluster c0ffee at epoch 4 (store revision 9), seen from node1; N=3, 100 vnodes",
		"node2   leaving  4      NO     3      40.0%  100.0%      127.0.0.1:8082",
		"node3   removed  2      -      -",
		"pending: leave of node2, begun at epoch 4; gainers streamed 1 of 2",
		"transfers: node1 <- node2 25.0%",
		"node1: 1 of 2 streams done, 1500 keys, 3.0 MiB, updated 2s ago",
		"node4: streamed (10 keys, 900 B)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	r.Change = nil
	b.Reset()
	_ = printRing(&b, r, now)
	if !strings.Contains(b.String(), "no change pending") {
		t.Errorf("output without a change:\n%s", b.String())
	}
}
