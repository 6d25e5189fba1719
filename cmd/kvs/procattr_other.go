//go:build !linux

package main

import "os/exec"

// detach leaves the child in this process group: only Linux offers a
// parent-death signal.
func detach(*exec.Cmd) {}
