package stream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kvs-db/kvs/node/atomicfile"
	"github.com/kvs-db/kvs/node/wire"
)

// stateFile is the name of the state file in Config.Dir.
const stateFile = "stream.json"

// maxStateBytes bounds the state file: a few hundred transfers with
// 1 KiB keys fit with room to spare.
const maxStateBytes = 4 << 20

// ErrNoState is returned by LoadState when Dir holds no state file.
var ErrNoState = errors.New("stream: no saved state")

// Transfer is one stream of a gainer: the keys it receives in place of
// Loser, pulled from Source.
type Transfer struct {
	// Loser is the member whose ranges the keys are.
	Loser string `json:"loser"`
	// Source is the member the keys are pulled from.
	Source string `json:"source"`
	// After is the resume point: every key up to it has been applied
	// (nil: none yet).
	After []byte `json:"after,omitempty"`
	// Done means the transfer is complete (or Replaced).
	Done bool `json:"done,omitempty"`
	// Replaced means Source stayed unreachable and other sources took
	// over the transfer; it is Done too, so a restart does not redo it.
	Replaced bool `json:"replaced,omitempty"`
	// Keys and Bytes count the records and page bytes received so far.
	Keys  uint64 `json:"keys"`
	Bytes uint64 `json:"bytes"`
}

// State is a gainer's streaming state for one change. The puller persists
// it in Config.Dir (JSON, written atomically: temp file, fsync, rename,
// directory fsync) after every page it applies, so a restarted gainer
// resumes.
type State struct {
	// Epoch is the epoch the change began at.
	Epoch uint64 `json:"epoch"`
	// Gainer is the member that receives the keys: this node.
	Gainer string `json:"gainer"`
	// Transfers are the gainer's streams, in the order they were added.
	Transfers []Transfer `json:"transfers"`
}

// LoadState reads the state saved in dir. It returns an error wrapping
// ErrNoState when there is none, and one wrapping ErrMalformed, naming
// the file, when the file does not hold a valid state.
func LoadState(dir string) (State, error) {
	path := filepath.Join(dir, stateFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, fmt.Errorf("%w in %s", ErrNoState, dir)
	}
	if err != nil {
		return State{}, fmt.Errorf("stream: load state: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStateBytes+1))
	if err != nil {
		return State{}, fmt.Errorf("stream: load state: %w", err)
	}
	if len(b) > maxStateBytes {
		return State{}, fmt.Errorf("%w: %s: over %d bytes", ErrMalformed, path, maxStateBytes)
	}
	st, err := decodeState(b)
	if err != nil {
		return State{}, fmt.Errorf("%w: %s: %w", ErrMalformed, path, err)
	}
	return st, nil
}

// decodeState parses a state document strictly: no unknown fields, no
// trailing data, and a valid state.
func decodeState(b []byte) (State, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var st State
	if err := dec.Decode(&st); err != nil {
		return State{}, err
	}
	if dec.More() {
		return State{}, errors.New("data after the state document")
	}
	return st, st.validate()
}

// validate reports the first inconsistency in s.
func (s *State) validate() error {
	if s.Epoch == 0 {
		return errors.New("zero epoch")
	}
	if err := validID(s.Gainer); err != nil {
		return fmt.Errorf("gainer: %w", err)
	}
	seen := make(map[[2]string]bool, len(s.Transfers))
	for i, t := range s.Transfers {
		if err := t.validate(); err != nil {
			return fmt.Errorf("transfer %d: %w", i, err)
		}
		k := [2]string{t.Loser, t.Source}
		if seen[k] {
			return fmt.Errorf("transfer %d: a second transfer of %q from %q", i, t.Loser, t.Source)
		}
		seen[k] = true
	}
	return nil
}

func (t *Transfer) validate() error {
	if err := validID(t.Loser); err != nil {
		return fmt.Errorf("loser: %w", err)
	}
	if err := validID(t.Source); err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if len(t.After) > wire.MaxKeyBytes {
		return fmt.Errorf("resume key of %d bytes, over %d", len(t.After), wire.MaxKeyBytes)
	}
	if t.Replaced && !t.Done {
		return errors.New("replaced but not done")
	}
	return nil
}

// validID checks what this package needs of a node ID: 1 to 255 bytes.
// (The node checks the rest, topology.ValidID, when it builds transfers.)
func validID(id string) error {
	if id == "" {
		return errors.New("empty node id")
	}
	if len(id) > maxIDBytes {
		return fmt.Errorf("node id of %d bytes, over %d", len(id), maxIDBytes)
	}
	return nil
}

// saveState writes s to dir atomically.
func saveState(dir string, s *State) error {
	b, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return fmt.Errorf("stream: save state: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, stateFile), append(b, '\n')); err != nil {
		return fmt.Errorf("stream: save state: %w", err)
	}
	return nil
}

// removeState deletes the state file of dir, if any, durably.
func removeState(dir string) error {
	if err := atomicfile.Remove(filepath.Join(dir, stateFile)); err != nil {
		return fmt.Errorf("stream: clear state: %w", err)
	}
	return nil
}
