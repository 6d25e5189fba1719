package main

import (
	"os/exec"
	"syscall"
)

// detach puts a child in its own process group, so that a Ctrl-C on the
// terminal reaches only `kvs dev`, which stops the children in order, and
// has the kernel send the child SIGTERM if `kvs dev` dies without doing so.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
