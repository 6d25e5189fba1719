//go:build !unix

package lsm

import (
	"io"
	"os"
)

// Lock implements FS. Without flock it only creates the file: two
// processes are not kept apart on this platform.
func (OSFS) Lock(name string) (io.Closer, error) {
	return os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
}
