package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// readFlagFile reads the file at path, given with flag, refusing one larger
// than max bytes (a wrong path, such as a log or a device, fails at once
// instead of being read whole). Errors name the flag and the file, never
// what it holds.
func readFlagFile(flag, path string, max int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, path, err)
	}
	if len(b) > max {
		return nil, fmt.Errorf("%s %s: larger than %s; is it the right file?", flag, path, byteSize(max))
	}
	return b, nil
}

// readFlagFileLine reads a one-value file (a secret, a password, a token)
// with readFlagFile: the whole file with one trailing newline (LF or CRLF)
// dropped, and not empty. It does not check what it read.
func readFlagFileLine(flag, path string, max int) (string, error) {
	b, err := readFlagFile(flag, path, max)
	if err != nil {
		return "", err
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", fmt.Errorf("%s %s: empty", flag, path)
	}
	return s, nil
}

// byteSize writes n bytes as MiB or KiB when it is a whole number of them.
func byteSize(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
