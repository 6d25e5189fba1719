//go:build linux

package lsm

import "syscall"

// Sync uses fdatasync(2): it flushes the data and the metadata needed to
// read it back (the file size), but not the modification time, which saves
// a journal commit per WAL sync on most file systems.
func (f osFile) Sync() error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}

// Preallocate reserves size bytes for the file with fallocate(2), so that
// the appends and fdatasyncs that follow do not have to grow it.
func (f osFile) Preallocate(size int64) error {
	return syscall.Fallocate(int(f.Fd()), 0, 0, size)
}
