package lsm

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"sort"
	"sync"
)

// ErrCrashed is returned by operations on files opened before MemFS.Crash,
// and by every operation between a Crash and the next Lock.
var ErrCrashed = errors.New("lsm: file handle from before a simulated crash")

// MemFS is an in-memory FS that remembers what has been made durable. Crash
// throws away everything that was not: file data written after the file's
// last Sync, and directory entries (creations, renames, removals) made after
// the directory's last SyncDir. It is safe for concurrent use.
type MemFS struct {
	mu    sync.Mutex
	gen   int
	dirs  map[string]*memDir
	locks map[string]int // held locks, by the generation that took them
	// dead is set by Crash and cleared by the next Lock: between the two,
	// the crashed process may still be running (its DB not yet closed),
	// and nothing it does may reach the "disk".
	dead bool
}

type memNode struct {
	data      []byte // files are append-only, so the synced part is a prefix
	syncedLen int
}

type memDir struct {
	live   map[string]*memNode
	synced map[string]*memNode // the entries as of the last SyncDir
}

// NewMemFS returns an empty in-memory file system.
func NewMemFS() *MemFS { return &MemFS{dirs: map[string]*memDir{}, locks: map[string]int{}} }

type memLock struct {
	fs   *MemFS
	name string
	gen  int
}

func (l *memLock) Close() error {
	l.fs.mu.Lock()
	defer l.fs.mu.Unlock()
	if g, ok := l.fs.locks[l.name]; ok && g == l.gen {
		delete(l.fs.locks, l.name)
	}
	return nil
}

// Lock implements FS. A crash releases every lock, as the death of the
// process holding them would.
func (m *MemFS) Lock(name string) (io.Closer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = filepath.Clean(name)
	if _, held := m.locks[name]; held {
		return nil, fmt.Errorf("lock %s: %w", name, errLocked)
	}
	d, b := split(name)
	md := m.dir(d, false)
	if md == nil {
		return nil, notExist("lock", name)
	}
	if md.live[b] == nil {
		md.live[b] = &memNode{}
	}
	m.locks[name] = m.gen
	m.dead = false // a new process has started
	return &memLock{fs: m, name: name, gen: m.gen}, nil
}

var errLocked = errors.New("held by another user")

func split(name string) (string, string) {
	name = filepath.Clean(name)
	return filepath.Dir(name), filepath.Base(name)
}

func (m *MemFS) dir(d string, create bool) *memDir {
	d = filepath.Clean(d)
	md := m.dirs[d]
	if md == nil && create {
		md = &memDir{live: map[string]*memNode{}, synced: map[string]*memNode{}}
		m.dirs[d] = md
	}
	return md
}

type memFile struct {
	fs   *MemFS
	gen  int
	node *memNode
	name string
	w    bool
}

func notExist(op, name string) error {
	return &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
}

// Create implements FS.
func (m *MemFS) Create(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dead {
		return nil, fmt.Errorf("create: %w", ErrCrashed)
	}
	d, b := split(name)
	md := m.dir(d, false)
	if md == nil {
		return nil, notExist("create", name)
	}
	n := &memNode{}
	md.live[b] = n
	return &memFile{fs: m, gen: m.gen, node: n, name: name, w: true}, nil
}

// Open implements FS.
func (m *MemFS) Open(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dead {
		return nil, fmt.Errorf("open: %w", ErrCrashed)
	}
	d, b := split(name)
	md := m.dir(d, false)
	if md == nil || md.live[b] == nil {
		return nil, notExist("open", name)
	}
	return &memFile{fs: m, gen: m.gen, node: md.live[b], name: name}, nil
}

// Remove implements FS.
func (m *MemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dead {
		return fmt.Errorf("remove: %w", ErrCrashed)
	}
	d, b := split(name)
	md := m.dir(d, false)
	if md == nil || md.live[b] == nil {
		return notExist("remove", name)
	}
	delete(md.live, b)
	return nil
}

// Rename implements FS.
func (m *MemFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dead {
		return fmt.Errorf("rename: %w", ErrCrashed)
	}
	od, ob := split(oldname)
	nd, nb := split(newname)
	omd, nmd := m.dir(od, false), m.dir(nd, false)
	if omd == nil || omd.live[ob] == nil || nmd == nil {
		return notExist("rename", oldname)
	}
	nmd.live[nb] = omd.live[ob]
	delete(omd.live, ob)
	return nil
}

// MkdirAll implements FS. Directories are durable as soon as they exist.
func (m *MemFS) MkdirAll(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dir(dir, true)
	return nil
}

// List implements FS.
func (m *MemFS) List(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dead {
		return nil, fmt.Errorf("list: %w", ErrCrashed)
	}
	md := m.dir(dir, false)
	if md == nil {
		return nil, notExist("list", dir)
	}
	names := make([]string, 0, len(md.live))
	for n := range md.live {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// SyncDir implements FS.
func (m *MemFS) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dead {
		return fmt.Errorf("syncdir: %w", ErrCrashed)
	}
	md := m.dir(dir, false)
	if md == nil {
		return notExist("syncdir", dir)
	}
	md.synced = make(map[string]*memNode, len(md.live))
	for k, v := range md.live {
		md.synced[k] = v
	}
	return nil
}

// Crash simulates a power cut: every directory goes back to its entries as
// of its last SyncDir and every file to its contents as of its last Sync,
// and every lock is released. Files opened before the crash fail with
// ErrCrashed from then on, and so does every other operation (but MkdirAll)
// until the next Lock — the first thing Open does — so that a DB of the
// dead process that is still running cannot write to the "disk" after the
// cut. Close that DB before opening a new one.
func (m *MemFS) Crash() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	m.dead = true
	clear(m.locks)
	for _, md := range m.dirs {
		md.live = make(map[string]*memNode, len(md.synced))
		for k, n := range md.synced {
			n.data = n.data[:n.syncedLen:n.syncedLen]
			md.live[k] = n
		}
	}
}

// ReadFile returns a copy of the named file's current contents.
func (m *MemFS) ReadFile(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, b := split(name)
	md := m.dir(d, false)
	if md == nil || md.live[b] == nil {
		return nil, notExist("read", name)
	}
	return append([]byte(nil), md.live[b].data...), nil
}

// WriteFile replaces the named file's contents, durably (tests use it to
// plant corruption).
func (m *MemFS) WriteFile(name string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, b := split(name)
	md := m.dir(d, false)
	if md == nil {
		return notExist("write", name)
	}
	n := md.live[b]
	if n == nil {
		n = &memNode{}
		md.live[b] = n
		md.synced[b] = n
	}
	n.data = append([]byte(nil), data...)
	n.syncedLen = len(data)
	return nil
}

func (f *memFile) check() error {
	if f.gen != f.fs.gen {
		return fmt.Errorf("%s: %w", f.name, ErrCrashed)
	}
	return nil
}

func (f *memFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	if !f.w {
		return 0, fmt.Errorf("%s: write on read-only file", f.name)
	}
	f.node.data = append(f.node.data, p...)
	return len(p), nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("%s: negative offset", f.name)
	}
	if off >= int64(len(f.node.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.node.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	f.node.syncedLen = len(f.node.data)
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	return int64(len(f.node.data)), nil
}

// Truncate cuts the file to size bytes; later writes append from there. The
// cut is durable at the next Sync, like a write.
func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	if !f.w {
		return fmt.Errorf("%s: truncate on read-only file", f.name)
	}
	if size < 0 || size > int64(len(f.node.data)) {
		return fmt.Errorf("%s: truncate to %d of a %d-byte file", f.name, size, len(f.node.data))
	}
	f.node.data = f.node.data[:size:size]
	f.node.syncedLen = min(f.node.syncedLen, int(size))
	return nil
}

func (f *memFile) Close() error { return nil }
