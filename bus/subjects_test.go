package bus

import (
	"errors"
	"testing"
)

func TestSubjects(t *testing.T) {
	s := Subjects{Cluster: "prod"}
	for _, tc := range []struct{ got, want string }{
		{s.Node("n1", "put"), "kvs.prod.node.n1.put"},
		{s.Node("n1", "*"), "kvs.prod.node.n1.*"},
		{s.Gossip(), "kvs.prod.gossip"},
		{s.Events(), "kvs.prod.events"},
		{s.Events("put", "n2"), "kvs.prod.events.put.n2"},
		{s.Events(">"), "kvs.prod.events.>"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestValidToken(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"node1", true},
		{"node-1_a", true},
		{"Ünïcode", true},
		{"10.0.0.1:6222", false}, // dots
		{"", false},
		{".", false},
		{"a.b", false},
		{"*", false},
		{"a*", false},
		{">", false},
		{"a>", false},
		{" ", false},
		{"a b", false},
		{"a\tb", false},
		{"a\nb", false},
		{"a\x00b", false},
		{"a\u00a0b", false}, // no-break space
		{"\xff", false},     // invalid UTF-8
	} {
		err := ValidToken(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ValidToken(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidToken) {
			t.Errorf("ValidToken(%q) = %v, does not wrap ErrInvalidToken", tc.in, err)
		}
	}
}
