package node

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node/topology"
)

// TestStoreWritable runs a node's store out of file descriptors when its
// full memtable needs a new WAL: StoreWritable, and a local write, say so
// in words without the data path, and StoreWritable turns nil by itself
// once files can be created again.
func TestStoreWritable(t *testing.T) {
	var armed atomic.Bool
	efs := lsm.NewErrorFS(lsm.NewMemFS(), func(op lsm.Op, name string) error {
		if armed.Load() && op == lsm.OpCreate && strings.HasSuffix(name, ".log") {
			return lsm.EMFILE
		}
		return nil
	})
	const dir = "/secret/data/path/store"
	db, err := lsm.Open(lsm.Options{Dir: dir, FS: efs, MemtableBytes: 1024,
		RetryBackoff: time.Millisecond, RetryBackoffMax: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n, err := New(Config{ID: "n1", DataDir: t.TempDir(), Store: db, Transport: NewMemNetwork().Transport("n1"),
		Topology: topology.NewMemStore()})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.StoreWritable(); err != nil {
		t.Fatalf("StoreWritable = %v", err)
	}
	armed.Store(true)
	var applyErr error
	for i := uint64(1); applyErr == nil; i++ {
		if i > 1000 {
			t.Fatal("the memtable never rotated")
		}
		_, _, applyErr = n.LocalApply(lsm.Record{Key: []byte(fmt.Sprint("k", i)), Value: make([]byte, 100), Version: lsm.Version{Counter: i, Node: 1}})
	}
	if !errors.Is(applyErr, ErrStoreUnwritable) || !errors.Is(applyErr, lsm.ErrTransient) {
		t.Fatalf("LocalApply = %v, want ErrStoreUnwritable wrapping lsm.ErrTransient", applyErr)
	}
	err = n.StoreWritable()
	if !errors.Is(err, ErrStoreUnwritable) || err.Error() != "node: store cannot write: too many open files" {
		t.Fatalf("StoreWritable = %v", err)
	}
	armed.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for n.StoreWritable() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("store still unwritable: %v", n.StoreWritable())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestStoreCause(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{errors.Join(lsm.ErrTransient, errors.New("create /d/000001.log"), lsm.ENOSPC), "no space left on device"},
		{errors.Join(lsm.ErrReadOnly, errors.New("sync /d/000001.log"), lsm.EIO), "input/output error (read-only until restarted)"},
		{errors.Join(lsm.ErrReadOnly, lsm.ErrCorrupt), "corrupt data (read-only until restarted)"},
		{errors.Join(lsm.ErrReadOnly, errors.New("/d/x: something")), "I/O error (read-only until restarted)"},
		{lsm.ErrClosed, "closed"},
	} {
		if got := storeCause(tt.err); got != tt.want {
			t.Errorf("storeCause(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
