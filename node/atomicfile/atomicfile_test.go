package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteAndRemove(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	for _, data := range []string{"first", "second, longer than the first"} {
		if err := Write(path, []byte(data)); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != data {
			t.Fatalf("read back %q, %v; want %q", b, err, data)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("%d files left in the directory, want only the target", len(entries))
	}
	if err := Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := Remove(path); err != nil {
		t.Errorf("removing a missing file: %v", err)
	}
	if err := Write(filepath.Join(t.TempDir(), "no", "such", "dir"), nil); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}
