package bus

import (
	"testing"

	"github.com/nats-io/nats.go"
)

// HasInterest sees a subscription on another server of the cluster, made by
// an external client, and forgets it once it is gone.
func TestHasInterestAcrossServers(t *testing.T) {
	buses := startCluster(t, 2, nil)
	n1, n2 := buses[0], buses[1]
	subj := n1.Subjects().Events("put")
	if n1.HasInterest(subj) {
		t.Fatal("interest before anyone subscribed")
	}
	nc, err := nats.Connect(n2.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync(n2.Subjects().Events(">"))
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n1 sees the subscription on n2", func() bool { return n1.HasInterest(subj) })
	if n1.HasInterest(n1.Subjects().Gossip() + ".x") {
		t.Error("interest in a subject nobody subscribes to")
	}
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n1 forgets the subscription", func() bool { return !n1.HasInterest(subj) })
}
