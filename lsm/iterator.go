package lsm

import "bytes"

// iterator is a sorted source of records: a memtable or a table.
type iterator interface {
	valid() bool
	rec() Record // valid until next
	next()
}

type errIter interface{ error() error }

func (it *tableIter) error() error { return it.err }

// mergeIter merges sources ordered newest first: for a key held by several
// sources, the newest source's record is emitted and the others skipped. The
// record passed to fn aliases iterator buffers and is valid only during the
// call.
func mergeIter(srcs []iterator, fn func(Record) bool) error {
	var key []byte
	for {
		best := -1
		for i, s := range srcs {
			if !s.valid() {
				continue
			}
			if best < 0 || bytes.Compare(s.rec().Key, srcs[best].rec().Key) < 0 {
				best = i
			}
		}
		if best < 0 {
			break
		}
		if !fn(srcs[best].rec()) {
			return iterErr(srcs)
		}
		key = append(key[:0], srcs[best].rec().Key...)
		for _, s := range srcs {
			for s.valid() && bytes.Equal(s.rec().Key, key) {
				s.next()
			}
		}
	}
	return iterErr(srcs)
}

func iterErr(srcs []iterator) error {
	for _, s := range srcs {
		if e, ok := s.(errIter); ok && e.error() != nil {
			return e.error()
		}
	}
	return nil
}
