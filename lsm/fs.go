package lsm

import (
	"io"
	"os"
	"path/filepath"
	"sort"
)

// File is an open file of an FS. Files opened by Create are written
// sequentially; files opened by Open are read with ReadAt.
type File interface {
	io.Writer
	io.ReaderAt
	io.Closer
	// Sync makes the file's data durable.
	Sync() error
	// Size returns the current length of the file.
	Size() (int64, error)
}

// FS is the file-system seam of the engine. OSFS is the default; MemFS keeps
// everything in memory and can simulate a crash; ErrorFS injects errors.
type FS interface {
	// Create creates or truncates the named file for writing.
	Create(name string) (File, error)
	// Open opens the named file for reading.
	Open(name string) (File, error)
	// Remove deletes the named file.
	Remove(name string) error
	// Rename atomically replaces newname with oldname.
	Rename(oldname, newname string) error
	// MkdirAll creates a directory and its parents.
	MkdirAll(dir string) error
	// List returns the names (not paths) of the entries of dir, sorted.
	List(dir string) ([]string, error)
	// SyncDir makes the directory's entries (creations, renames, removals)
	// durable.
	SyncDir(dir string) error
	// Lock creates the named file if needed and takes an exclusive lock on
	// it, held until the returned Closer is closed. It fails at once if
	// another holder (another process, or another DB in this one) has it.
	Lock(name string) (io.Closer, error)
}

// preallocator is implemented by files that can reserve space ahead of the
// writes: the WAL uses it so that its fdatasyncs need not grow the file.
// The reserved space reads as zeros.
type preallocator interface {
	Preallocate(size int64) error
}

// truncater is implemented by files that can be cut back: after a failed
// WAL write, the engine cuts the torn bytes off (then fsyncs) so that no
// record can ever follow them in that file. Truncate cuts the file to size
// bytes and moves the write position there. Without it, a failed WAL write
// leaves the DB read-only.
type truncater interface {
	Truncate(size int64) error
}

// OSFS is the operating system's file system.
type OSFS struct{}

type osFile struct{ *os.File }

func (f osFile) Size() (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// Truncate implements truncater: it cuts the file to size bytes and moves
// the write position there.
func (f osFile) Truncate(size int64) error {
	if err := f.File.Truncate(size); err != nil {
		return err
	}
	_, err := f.Seek(size, io.SeekStart)
	return err
}

// Create implements FS.
func (OSFS) Create(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// Open implements FS.
func (OSFS) Open(name string) (File, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// Remove implements FS.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// Rename implements FS.
func (OSFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }

// MkdirAll implements FS.
func (OSFS) MkdirAll(dir string) error { return os.MkdirAll(dir, 0o755) }

// List implements FS.
func (OSFS) List(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

// SyncDir implements FS.
func (OSFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return err
	}
	return d.Close()
}

func join(dir, name string) string { return filepath.Join(dir, name) }
