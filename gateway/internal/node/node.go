// Package node is a temporary stand-in for github.com/kvs-db/kvs/node that
// mirrors the public API the gateway uses, so the gateway compiles and is
// tested while the real package is being written. It is deleted, and the
// gateway's imports switched to the real package, once node builds.
package node

import (
	"errors"
	"time"
)

// MaxKeyBytes is the longest key accepted.
const MaxKeyBytes = 1024

// WriteOptions overrides the write quorum for one request; 0 means default.
type WriteOptions struct{ W int }

// ReadOptions overrides the read quorum for one request; 0 means default.
type ReadOptions struct{ R int }

// ClusterStatus is a snapshot of the node's view of the cluster.
type ClusterStatus struct {
	Self, Cluster string
	N, W, R       int
	Ready         bool
	Members       []MemberStatus
}

// MemberStatus describes one ring member.
type MemberStatus struct {
	ID, HTTPAddr string
	Alive        bool
	LastSeen     time.Time
	Ownership    float64
	HintsPending int
}

// Sentinel errors.
var (
	ErrNotFound      = errors.New("node: not found")
	ErrQuorum        = errors.New("node: quorum not reached")
	ErrNotReady      = errors.New("node: not ready")
	ErrInvalidKey    = errors.New("node: invalid key")
	ErrValueTooLarge = errors.New("node: value too large")
	ErrInvalidQuorum = errors.New("node: invalid quorum")
)
