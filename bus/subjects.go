package bus

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// subjectRoot is the first token of every kvs subject.
const subjectRoot = "kvs"

// Subjects builds the subjects of one kvs cluster. It is the only place in
// the project where a subject is spelled:
//
//	kvs.<cluster>.node.<nodeID>.<op>   request/reply to one node
//	kvs.<cluster>.gossip               heartbeats
//	kvs.<cluster>.events.<...>         change feed
//
// Cluster must be a valid token (see [ValidToken]); the zero value is not
// usable. Subjects does not validate its inputs: node IDs and cluster names
// are validated once, when they enter the system ([Config.Validate]).
type Subjects struct {
	// Cluster is the cluster name, the second token of every subject.
	Cluster string
}

// Node returns the request/reply subject of operation op on node nodeID:
// kvs.<cluster>.node.<nodeID>.<op>. Passing "*" as op gives the wildcard
// that matches every operation of the node.
func (s Subjects) Node(nodeID, op string) string {
	return subjectRoot + "." + s.Cluster + ".node." + nodeID + "." + op
}

// Gossip returns the subject heartbeats are published on: kvs.<cluster>.gossip.
func (s Subjects) Gossip() string {
	return subjectRoot + "." + s.Cluster + ".gossip"
}

// Events returns the change-feed subject kvs.<cluster>.events.<parts...>.
// With no parts it returns kvs.<cluster>.events; Events(">") is the
// wildcard for the whole feed.
func (s Subjects) Events(parts ...string) string {
	base := subjectRoot + "." + s.Cluster + ".events"
	if len(parts) == 0 {
		return base
	}
	return base + "." + strings.Join(parts, ".")
}

// ErrInvalidToken is wrapped by [ValidToken] errors.
var ErrInvalidToken = errors.New("bus: invalid subject token")

// ValidToken reports whether s can be used as a single subject token, as
// node IDs and cluster names are: not empty, and no '.', '*', '>',
// whitespace or control characters. It returns nil when s is valid and an
// error wrapping [ErrInvalidToken] that quotes s otherwise.
func ValidToken(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrInvalidToken)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidToken, s)
	}
	for _, r := range s {
		switch {
		case r == '.' || r == '*' || r == '>':
			return fmt.Errorf("%w: %q contains %q", ErrInvalidToken, s, r)
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return fmt.Errorf("%w: %q contains whitespace or a control character", ErrInvalidToken, s)
		}
	}
	return nil
}
