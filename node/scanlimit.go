package node

import "fmt"

// Scan-heavy requests. A peer's anti-entropy leaves and keys requests and a
// gainer's stream pages each make this node scan its store or copy hash
// trees, and the transport runs many handlers of one operation at once. A
// node serves at most Config.MaxScanRequests of them together and refuses
// the rest at once, with an ErrOverloaded error reply, instead of queueing
// scans: a refused anti-entropy round runs again at the next interval, a
// refused stream page is asked again after the puller's backoff.

// scanSlot takes a slot for a scan-heavy request of op. It returns the
// function that frees the slot, or, when every slot is taken, the reply
// that refuses the request (counted by op).
func (n *Node) scanSlot(op string) (done func(), busy []byte) {
	if n.scans == nil {
		return func() {}, nil
	}
	select {
	case n.scans <- struct{}{}:
		return func() { <-n.scans }, nil
	default:
		n.met.scansRefused.WithLabelValues(op).Inc()
		return nil, encodeError(fmt.Errorf("%w: %d scan requests (leaves, keys, stream) in progress, the most this node serves at once; try again later",
			ErrOverloaded, cap(n.scans)))
	}
}
