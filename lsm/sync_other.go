//go:build !linux

package lsm

// Sync implements File with fsync(2).
func (f osFile) Sync() error { return f.File.Sync() }
