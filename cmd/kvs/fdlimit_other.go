//go:build !unix

package main

// fdLimit reports no limit where RLIMIT_NOFILE does not exist.
func fdLimit() (soft, hard uint64, ok bool) { return 0, 0, false }
