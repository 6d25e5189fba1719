package lsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// The manifest names the live tables, newest first, and the oldest WAL that
// still holds records not in a table. It is rewritten whole on every change:
// written to MANIFEST.tmp, fsynced, renamed over MANIFEST, and the directory
// fsynced, so a crash leaves either the old or the new one.
//
//	magic u64 | formatVersion u32 | nextFileNum u64 | logNum u64 | count u32 |
//	(fileNum u64 | size u64) * count | crc32c(everything before) u32
const (
	manifestName    = "MANIFEST"
	manifestMagic   = 0x74736566696e616d // "manifest" little-endian
	manifestVersion = 1
	lockName        = "LOCK"
)

type manifestTable struct {
	num  uint64
	size uint64
}

type manifest struct {
	nextFileNum uint64
	logNum      uint64
	tables      []manifestTable // newest first
}

func (m *manifest) encode() []byte {
	le := binary.LittleEndian
	b := le.AppendUint64(nil, manifestMagic)
	b = le.AppendUint32(b, manifestVersion)
	b = le.AppendUint64(b, m.nextFileNum)
	b = le.AppendUint64(b, m.logNum)
	b = le.AppendUint32(b, uint32(len(m.tables)))
	for _, t := range m.tables {
		b = le.AppendUint64(b, t.num)
		b = le.AppendUint64(b, t.size)
	}
	return le.AppendUint32(b, checksum(b))
}

func decodeManifest(b []byte) (manifest, error) {
	var m manifest
	le := binary.LittleEndian
	const head = 8 + 4 + 8 + 8 + 4
	if len(b) < head+4 {
		return m, corruptf(manifestName, int64(len(b)), "manifest truncated")
	}
	if le.Uint64(b) != manifestMagic {
		return m, corruptf(manifestName, 0, "bad manifest magic")
	}
	if checksum(b[:len(b)-4]) != le.Uint32(b[len(b)-4:]) {
		return m, corruptf(manifestName, int64(len(b)-4), "manifest checksum mismatch")
	}
	if v := le.Uint32(b[8:]); v != manifestVersion {
		return m, fmt.Errorf("%w: manifest format version %d, this code reads %d", ErrUnsupported, v, manifestVersion)
	}
	m.nextFileNum = le.Uint64(b[12:])
	m.logNum = le.Uint64(b[20:])
	n := le.Uint32(b[28:])
	if uint64(len(b)) != head+4+uint64(n)*16 {
		return m, corruptf(manifestName, 28, "manifest table count %d does not match its length", n)
	}
	for i := 0; i < int(n); i++ {
		p := b[head+16*i:]
		m.tables = append(m.tables, manifestTable{le.Uint64(p), le.Uint64(p[8:])})
	}
	return m, nil
}

// replaceFile writes data to dir/name via a synced temporary file and a
// rename; the caller syncs the directory. On failure the temporary file is
// removed and dir/name is as it was.
func replaceFile(fsys FS, dir, name string, data []byte) error {
	tmp := join(dir, name+".tmp")
	f, err := fsys.Create(tmp)
	if err != nil {
		return fmt.Errorf("lsm: create %s.tmp: %w", name, err)
	}
	fail := func(err error) error {
		f.Close()
		fsys.Remove(tmp)
		return err
	}
	if _, err := f.Write(data); err != nil {
		return fail(fmt.Errorf("lsm: write %s.tmp: %w", name, err))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("lsm: sync %s.tmp: %w", name, &syncError{err}))
	}
	if err := f.Close(); err != nil {
		fsys.Remove(tmp)
		return fmt.Errorf("lsm: close %s.tmp: %w", name, err)
	}
	if err := fsys.Rename(tmp, join(dir, name)); err != nil {
		fsys.Remove(tmp)
		return fmt.Errorf("lsm: rename %s.tmp: %w", name, err)
	}
	return nil
}

func readManifest(fsys FS, dir string) (manifest, bool, error) {
	f, err := fsys.Open(join(dir, manifestName))
	if errors.Is(err, fs.ErrNotExist) {
		return manifest{}, false, nil
	}
	if err != nil {
		return manifest{}, false, fmt.Errorf("lsm: open manifest: %w", err)
	}
	defer f.Close()
	b, err := readAll(f)
	if err != nil {
		return manifest{}, false, fmt.Errorf("lsm: read manifest: %w", err)
	}
	m, err := decodeManifest(b)
	return m, true, err
}

// File names: NNNNNN.log for WAL files, NNNNNN.sst for tables.
func logName(num uint64) string   { return fmt.Sprintf("%06d.log", num) }
func tableName(num uint64) string { return fmt.Sprintf("%06d.sst", num) }

// parseName returns the number and kind ("log", "sst") of an engine file.
func parseName(name string) (uint64, string, bool) {
	i := strings.IndexByte(name, '.')
	if i <= 0 {
		return 0, "", false
	}
	kind := name[i+1:]
	if kind != "log" && kind != "sst" {
		return 0, "", false
	}
	n, err := strconv.ParseUint(name[:i], 10, 64)
	if err != nil {
		return 0, "", false
	}
	return n, kind, true
}
