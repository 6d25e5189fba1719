package lsm

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
)

// Op names an FS operation for ErrorFS.
type Op int

// The operations ErrorFS can fail.
const (
	OpCreate Op = iota
	OpOpen
	OpRemove
	OpRename
	OpMkdirAll
	OpList
	OpSyncDir
	OpWrite
	OpRead
	OpSync
	OpSize
	OpClose
	OpLock
	OpTruncate
)

var opNames = [...]string{"create", "open", "remove", "rename", "mkdirall", "list", "syncdir", "write", "read", "sync", "size", "close", "lock", "truncate"}

// String returns the operation's name.
func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return "op?"
}

// Injected errors, as the OS would report them.
var (
	// EIO is an I/O error.
	EIO error = syscall.EIO
	// ENOSPC is a full disk.
	ENOSPC error = syscall.ENOSPC
	// EMFILE is a process out of file descriptors.
	EMFILE error = syscall.EMFILE
	// errKilled is returned for every operation once ErrorFS.Kill was called.
	errKilled = errors.New("lsm: file system killed (simulated process death)")
)

// ErrorFS wraps an FS and fails the operations its hook chooses. A failed
// Write is a short write: half of the buffer reaches the inner file before
// the error is returned, as when a disk fills up mid-write. Kill makes every
// later operation fail, which simulates the death of the process: together
// with MemFS.Crash it gives a power cut at an exact point.
type ErrorFS struct {
	inner FS

	mu     sync.RWMutex // held shared by every operation, exclusively by Kill
	hook   func(op Op, name string) error
	killed bool
	ops    atomic.Int64
}

// NewErrorFS wraps inner. hook is called before every operation with its
// kind and file name; a non-nil result fails the operation. hook may be nil
// and may be replaced with SetHook; it must not call back into the ErrorFS.
func NewErrorFS(inner FS, hook func(op Op, name string) error) *ErrorFS {
	return &ErrorFS{inner: inner, hook: hook}
}

// SetHook replaces the hook.
func (e *ErrorFS) SetHook(hook func(op Op, name string) error) {
	e.mu.Lock()
	e.hook = hook
	e.mu.Unlock()
}

// Kill waits for operations in flight and fails every later one.
func (e *ErrorFS) Kill() {
	e.mu.Lock()
	e.killed = true
	e.mu.Unlock()
}

// Ops returns the number of operations attempted so far.
func (e *ErrorFS) Ops() int64 {
	return e.ops.Load()
}

// begin takes the shared lock and returns the injected error, if any. The
// caller must call e.mu.RUnlock.
func (e *ErrorFS) begin(op Op, name string) error {
	e.mu.RLock()
	if e.killed {
		return errKilled
	}
	e.ops.Add(1)
	if e.hook != nil {
		return e.hook(op, name)
	}
	return nil
}

// Lock implements FS. Releasing the lock always reaches the inner FS, even
// after Kill: a dead process holds no locks.
func (e *ErrorFS) Lock(name string) (io.Closer, error) {
	defer e.mu.RUnlock()
	if err := e.begin(OpLock, name); err != nil {
		return nil, err
	}
	return e.inner.Lock(name)
}

type errFile struct {
	fs   *ErrorFS
	name string
	f    File
}

// Create implements FS.
func (e *ErrorFS) Create(name string) (File, error) {
	defer e.mu.RUnlock()
	if err := e.begin(OpCreate, name); err != nil {
		return nil, err
	}
	f, err := e.inner.Create(name)
	if err != nil {
		return nil, err
	}
	return &errFile{fs: e, name: name, f: f}, nil
}

// Open implements FS.
func (e *ErrorFS) Open(name string) (File, error) {
	defer e.mu.RUnlock()
	if err := e.begin(OpOpen, name); err != nil {
		return nil, err
	}
	f, err := e.inner.Open(name)
	if err != nil {
		return nil, err
	}
	return &errFile{fs: e, name: name, f: f}, nil
}

// Remove implements FS.
func (e *ErrorFS) Remove(name string) error {
	defer e.mu.RUnlock()
	if err := e.begin(OpRemove, name); err != nil {
		return err
	}
	return e.inner.Remove(name)
}

// Rename implements FS.
func (e *ErrorFS) Rename(oldname, newname string) error {
	defer e.mu.RUnlock()
	if err := e.begin(OpRename, newname); err != nil {
		return err
	}
	return e.inner.Rename(oldname, newname)
}

// MkdirAll implements FS.
func (e *ErrorFS) MkdirAll(dir string) error {
	defer e.mu.RUnlock()
	if err := e.begin(OpMkdirAll, dir); err != nil {
		return err
	}
	return e.inner.MkdirAll(dir)
}

// List implements FS.
func (e *ErrorFS) List(dir string) ([]string, error) {
	defer e.mu.RUnlock()
	if err := e.begin(OpList, dir); err != nil {
		return nil, err
	}
	return e.inner.List(dir)
}

// SyncDir implements FS.
func (e *ErrorFS) SyncDir(dir string) error {
	defer e.mu.RUnlock()
	if err := e.begin(OpSyncDir, dir); err != nil {
		return err
	}
	return e.inner.SyncDir(dir)
}

func (f *errFile) Write(p []byte) (int, error) {
	defer f.fs.mu.RUnlock()
	if err := f.fs.begin(OpWrite, f.name); err != nil {
		if err == errKilled {
			return 0, err
		}
		n, _ := f.f.Write(p[:len(p)/2])
		return n, err
	}
	return f.f.Write(p)
}

func (f *errFile) ReadAt(p []byte, off int64) (int, error) {
	defer f.fs.mu.RUnlock()
	if err := f.fs.begin(OpRead, f.name); err != nil {
		return 0, err
	}
	return f.f.ReadAt(p, off)
}

func (f *errFile) Preallocate(size int64) error {
	defer f.fs.mu.RUnlock()
	if err := f.fs.begin(OpWrite, f.name); err != nil {
		return err
	}
	if p, ok := f.f.(preallocator); ok {
		return p.Preallocate(size)
	}
	return nil
}

func (f *errFile) Truncate(size int64) error {
	defer f.fs.mu.RUnlock()
	if err := f.fs.begin(OpTruncate, f.name); err != nil {
		return err
	}
	t, ok := f.f.(truncater)
	if !ok {
		return fmt.Errorf("%s: the inner file system cannot truncate", f.name)
	}
	return t.Truncate(size)
}

func (f *errFile) Sync() error {
	defer f.fs.mu.RUnlock()
	if err := f.fs.begin(OpSync, f.name); err != nil {
		return err
	}
	return f.f.Sync()
}

func (f *errFile) Size() (int64, error) {
	defer f.fs.mu.RUnlock()
	if err := f.fs.begin(OpSize, f.name); err != nil {
		return 0, err
	}
	return f.f.Size()
}

func (f *errFile) Close() error {
	defer f.fs.mu.RUnlock()
	if err := f.fs.begin(OpClose, f.name); err != nil {
		f.f.Close()
		return err
	}
	return f.f.Close()
}
