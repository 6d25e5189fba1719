//go:build unix

package main

import "syscall"

// fdLimit returns the soft and hard RLIMIT_NOFILE.
func fdLimit() (soft, hard uint64, ok bool) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, 0, false
	}
	return uint64(l.Cur), uint64(l.Max), true
}
