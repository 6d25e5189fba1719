package stream

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadState(dir); !errors.Is(err, ErrNoState) {
		t.Fatalf("empty dir: err = %v, want ErrNoState", err)
	}
	st := State{Epoch: 9, Gainer: "g", Transfers: []Transfer{
		{Loser: "l", Source: "l", After: []byte{0, 1, 0xff}, Keys: 3, Bytes: 300},
		{Loser: "l", Source: "s", Done: true, Replaced: true},
		{Loser: "m", Source: "s", Done: true},
	}}
	if err := saveState(dir, &st); err != nil {
		t.Fatal(err)
	}
	got, err := LoadState(dir)
	if err != nil || !reflect.DeepEqual(got, st) {
		t.Fatalf("got %+v, %v; want %+v", got, err, st)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("dir holds %d entries, want only the state file", len(entries))
	}
	for range 2 { // removing twice is fine
		if err := removeState(dir); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := LoadState(dir); !errors.Is(err, ErrNoState) {
		t.Fatalf("after remove: err = %v, want ErrNoState", err)
	}
}

func TestLoadStateCorrupt(t *testing.T) {
	for _, tc := range []struct{ name, doc, msg string }{
		{"garbage", "\x00\x01garbage", "invalid character"},
		{"empty", "", "EOF"},
		{"truncated", `{"epoch": 3, "gainer": "g", "transf`, "unexpected EOF"},
		{"trailing", `{"epoch": 3, "gainer": "g", "transfers": []} {}`, "data after"},
		{"unknown field", `{"epoch": 3, "gainer": "g", "epoc": 4, "transfers": []}`, "unknown field"},
		{"wrong type", `{"epoch": "3", "gainer": "g", "transfers": []}`, "cannot unmarshal"},
		{"zero epoch", `{"gainer": "g", "transfers": []}`, "zero epoch"},
		{"no gainer", `{"epoch": 3, "transfers": []}`, "gainer: empty"},
		{"empty source", `{"epoch": 3, "gainer": "g", "transfers": [{"loser": "l"}]}`, "transfer 0: source: empty"},
		{"duplicate", `{"epoch": 3, "gainer": "g", "transfers": [{"loser": "l", "source": "s"}, {"loser": "l", "source": "s"}]}`, "transfer 1: a second"},
		{"replaced not done", `{"epoch": 3, "gainer": "g", "transfers": [{"loser": "l", "source": "s", "replaced": true}]}`, "replaced but not done"},
		{"long after", `{"epoch": 3, "gainer": "g", "transfers": [{"loser": "l", "source": "s", "after": "` + strings.Repeat("A", 1368) + `"}]}`, "over 1024"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, stateFile)
			if err := os.WriteFile(path, []byte(tc.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadState(dir)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %v, want ErrMalformed naming %s and saying %q", err, path, tc.msg)
			}
		})
	}
}
