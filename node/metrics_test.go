package node

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Three nodes register on one registry (as under `kvs dev` in one process
// would): the node label keeps them apart.
func TestMetricsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := newTestCluster(t, three, func(cfg *Config) { cfg.Registerer = reg })
	ctx := ctxT(t)
	if _, err := c.node("n1").Put(ctx, []byte("k"), []byte("v"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.node("n1").Get(ctx, []byte("missing"), ReadOptions{}); err == nil {
		t.Fatal("get of a missing key succeeded")
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, mf := range mfs {
		found[mf.GetName()] = true
		if mf.GetName() != "kvs_node_requests_total" {
			continue
		}
		var got []string
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			got = append(got, strings.Join(labels, ","))
		}
		want := "node=n1,op=get,result=not_found node=n1,op=put,result=ok"
		if strings.Join(got, " ") != want {
			t.Errorf("requests_total series = %v, want %s", got, want)
		}
	}
	for _, name := range []string{"kvs_node_requests_total", "kvs_node_request_seconds", "kvs_node_hints_pending", "kvs_node_members_alive", "kvs_node_ring_members",
		"kvs_node_hints_pending_bytes", "kvs_node_hints_dropped_total", "kvs_node_scan_requests_in_progress"} {
		if !found[name] {
			t.Errorf("metric %s not registered", name)
		}
	}
}
