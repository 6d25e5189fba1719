// Command bench compares the kvs lsm engine with pebble and goleveldb on the
// same workloads, with the same durability, in one run:
//
//  1. 16 concurrent writers, 100-byte values, every write synced (group
//     commit allowed): ops/s.
//  2. Bulk load of N keys, unsynced: ops/s; then a full manual compaction
//     and the on-disk size (space amplification = size / (N * 116 bytes)).
//  3. Random point reads of present keys: ops/s.
//  4. Random point reads of absent keys: ops/s.
//  5. Time to reopen the N-key store, and Go heap held after the reopen.
//
// Usage: CGO_ENABLED=0 go run . -n 1000000 -runs 3 -dir /tmp/lsmbench
//
// It lives in its own module so that pebble and goleveldb never enter the
// main module's dependencies.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/kvs-db/kvs/lsm"
	"github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/filter"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/util"
)

type engine interface {
	open(dir string, sync bool) error
	put(k, v []byte) error
	get(k []byte) (bool, error)
	compact() error
	close() error
	extra() string
}

// --- kvs lsm ---

type kvsEngine struct {
	db  *lsm.DB
	ver atomic.Uint64
}

func (e *kvsEngine) open(dir string, sync bool) error {
	p := lsm.SyncAlways
	if !sync {
		p = lsm.SyncNone
	}
	db, err := lsm.Open(lsm.Options{Dir: dir, Sync: p})
	e.db = db
	return err
}

func (e *kvsEngine) put(k, v []byte) error {
	_, _, err := e.db.Apply(lsm.Record{Key: k, Value: v, Version: lsm.Version{Counter: e.ver.Add(1), Node: 1}})
	return err
}

func (e *kvsEngine) get(k []byte) (bool, error) {
	_, err := e.db.Get(k)
	if errors.Is(err, lsm.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (e *kvsEngine) compact() error {
	if err := e.db.Flush(); err != nil {
		return err
	}
	return e.db.Compact()
}

func (e *kvsEngine) close() error { return e.db.Close() }

func (e *kvsEngine) extra() string {
	st := e.db.Stats()
	logical := float64(e.ver.Load()) * 116
	return fmt.Sprintf("writeAmp(tables)=%.2f writeAmp(+WAL)=%.2f tables=%d flushes=%d compactions=%d walBytes=%d tableBytesWritten=%d maxStall=%v fsyncs=%d",
		float64(st.TableBytesWritten)/logical, float64(st.TableBytesWritten+st.WALBytes)/logical,
		st.Tables, st.Flushes, st.Compactions, st.WALBytes, st.TableBytesWritten, st.WriteStallMax, st.WALSyncs)
}

// --- pebble ---

type pebbleEngine struct {
	db *pebble.DB
	wo *pebble.WriteOptions
}

func (e *pebbleEngine) open(dir string, sync bool) error {
	e.wo = pebble.NoSync
	if sync {
		e.wo = pebble.Sync
	}
	opts := &pebble.Options{Logger: quietLogger{}}
	// pebble's default is no filter at all; give it the same 10 bits/key
	// bloom filter our tables carry, so that reads compare like with like.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(dir, opts)
	e.db = db
	return err
}

func (e *pebbleEngine) put(k, v []byte) error { return e.db.Set(k, v, e.wo) }

func (e *pebbleEngine) get(k []byte) (bool, error) {
	_, c, err := e.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	c.Close()
	return true, nil
}

func (e *pebbleEngine) compact() error {
	if err := e.db.Flush(); err != nil {
		return err
	}
	return e.db.Compact(context.Background(), []byte{0}, []byte{0xff, 0xff}, true)
}

func (e *pebbleEngine) close() error { return e.db.Close() }

func (e *pebbleEngine) extra() string {
	m := e.db.Metrics()
	t := m.Total()
	return fmt.Sprintf("writeAmp=%.2f", t.WriteAmp())
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...interface{})  {}
func (quietLogger) Errorf(string, ...interface{}) {}
func (quietLogger) Fatalf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

// --- goleveldb ---

type levelEngine struct {
	db *leveldb.DB
	wo *opt.WriteOptions
}

func (e *levelEngine) open(dir string, sync bool) error {
	e.wo = &opt.WriteOptions{Sync: sync}
	db, err := leveldb.OpenFile(dir, &opt.Options{Filter: filter.NewBloomFilter(10)}) // default: no filter
	e.db = db
	return err
}

func (e *levelEngine) put(k, v []byte) error { return e.db.Put(k, v, e.wo) }

func (e *levelEngine) get(k []byte) (bool, error) {
	_, err := e.db.Get(k, nil)
	if errors.Is(err, leveldb.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (e *levelEngine) compact() error { return e.db.CompactRange(util.Range{}) }

func (e *levelEngine) close() error { return e.db.Close() }

func (e *levelEngine) extra() string { return "" }

// --- workloads ---

func key(i uint64) []byte {
	// Keys in a random but reproducible order: a bijective mix of i.
	x := i * 0x9e3779b97f4a7c15
	x ^= x >> 29
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, x)
	binary.BigEndian.PutUint64(b[8:], i)
	return b
}

var valueBuf = func() []byte {
	b := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}()

func value(i uint64) []byte {
	off := (i * 104729) % uint64(len(valueBuf)-100)
	return valueBuf[off : off+100]
}

func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

type result struct {
	syncedOps, loadOps, readOps, absentOps float64
	spaceAmp                               float64
	diskMB                                 float64
	reopen                                 time.Duration
	heapMB                                 float64
	extra                                  string
}

func run(name string, mk func() engine, base string, n, syncedN, reads int) (result, error) {
	var r result
	dir := filepath.Join(base, name)
	os.RemoveAll(dir)
	defer os.RemoveAll(dir)

	// 1. Synced concurrent writers.
	e := mk()
	if err := e.open(filepath.Join(dir, "synced"), true); err != nil {
		return r, err
	}
	var next atomic.Uint64
	var wg sync.WaitGroup
	var werr atomic.Value
	start := time.Now()
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > uint64(syncedN) {
					return
				}
				if err := e.put(key(i), value(i)); err != nil {
					werr.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	r.syncedOps = float64(syncedN) / time.Since(start).Seconds()
	e.close()
	if err, _ := werr.Load().(error); err != nil {
		return r, err
	}

	// 2. Bulk load, unsynced.
	e = mk()
	ldir := filepath.Join(dir, "load")
	if err := e.open(ldir, false); err != nil {
		return r, err
	}
	start = time.Now()
	for i := uint64(0); i < uint64(n); i++ {
		if err := e.put(key(i), value(i)); err != nil {
			return r, err
		}
	}
	r.loadOps = float64(n) / time.Since(start).Seconds()
	r.extra = "after load: " + e.extra()
	if err := e.compact(); err != nil {
		return r, err
	}
	r.extra += " | after full compaction: " + e.extra()
	if err := e.close(); err != nil {
		return r, err
	}
	size := dirSize(ldir)
	r.diskMB = float64(size) / (1 << 20)
	r.spaceAmp = float64(size) / float64(n*(16+100))

	// 5. Reopen.
	e = nil
	runtime.GC()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	e = mk()
	start = time.Now()
	if err := e.open(ldir, false); err != nil {
		return r, err
	}
	r.reopen = time.Since(start)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	r.heapMB = (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / (1 << 20)

	// 3. Present keys.
	rng := rand.New(rand.NewPCG(3, 4))
	start = time.Now()
	for i := 0; i < reads; i++ {
		ok, err := e.get(key(uint64(rng.IntN(n))))
		if err != nil || !ok {
			return r, fmt.Errorf("get present: %v %v", ok, err)
		}
	}
	r.readOps = float64(reads) / time.Since(start).Seconds()
	// 4. Absent keys.
	start = time.Now()
	for i := 0; i < reads; i++ {
		ok, err := e.get(key(uint64(n + rng.IntN(n))))
		if err != nil || ok {
			return r, fmt.Errorf("get absent: %v %v", ok, err)
		}
	}
	r.absentOps = float64(reads) / time.Since(start).Seconds()
	return r, e.close()
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func main() {
	n := flag.Int("n", 1000000, "keys in the bulk load")
	syncedN := flag.Int("synced", 50000, "writes in the synced workload")
	reads := flag.Int("reads", 200000, "point reads per read workload")
	runs := flag.Int("runs", 3, "runs per engine")
	base := flag.String("dir", os.TempDir(), "scratch directory")
	only := flag.String("engines", "kvs,pebble,goleveldb", "engines to run")
	flag.Parse()
	engines := map[string]func() engine{
		"kvs":       func() engine { return &kvsEngine{} },
		"pebble":    func() engine { return &pebbleEngine{} },
		"goleveldb": func() engine { return &levelEngine{} },
	}
	names := strings.Split(*only, ",")
	all := map[string][]result{}
	for r := 0; r < *runs; r++ {
		for _, name := range names { // interleaved, so drift hits all alike
			res, err := run(name, engines[name], *base, *n, *syncedN, *reads)
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
				os.Exit(1)
			}
			fmt.Fprintf(os.Stderr, "run %d %-9s synced %.0f/s load %.0f/s read %.0f/s absent %.0f/s disk %.1fMiB reopen %v heap %.1fMiB %s\n",
				r, name, res.syncedOps, res.loadOps, res.readOps, res.absentOps, res.diskMB, res.reopen, res.heapMB, res.extra)
			all[name] = append(all[name], res)
		}
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "engine\tsynced 16w ops/s\tbulk load ops/s\tdisk MiB\tspace amp\tread ops/s\tabsent ops/s\treopen ms\theap MiB\t\n")
	for _, name := range names {
		rs := all[name]
		get := func(f func(result) float64) float64 {
			xs := make([]float64, len(rs))
			for i, r := range rs {
				xs[i] = f(r)
			}
			return median(xs)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.1f\t%.2f\t%.0f\t%.0f\t%.0f\t%.1f\t\n", name,
			get(func(r result) float64 { return r.syncedOps }),
			get(func(r result) float64 { return r.loadOps }),
			get(func(r result) float64 { return r.diskMB }),
			get(func(r result) float64 { return r.spaceAmp }),
			get(func(r result) float64 { return r.readOps }),
			get(func(r result) float64 { return r.absentOps }),
			get(func(r result) float64 { return float64(r.reopen.Milliseconds()) }),
			get(func(r result) float64 { return r.heapMB }))
	}
	tw.Flush()
}
