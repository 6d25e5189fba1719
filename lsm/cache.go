package lsm

import (
	"container/list"
	"sync"
	"sync/atomic"
)

// blockCache is an LRU cache of checked, parsed data blocks, bounded by
// bytes. Keys are (table file number, block offset); file numbers are never
// reused by a DB, so a deleted table's blocks simply age out.
type blockCache struct {
	mu       sync.Mutex
	capacity int64
	size     int64
	ll       *list.List
	m        map[cacheKey]*list.Element

	hits, misses atomic.Uint64
}

type cacheKey struct{ file, off uint64 }

type cacheEntry struct {
	key cacheKey
	blk *block
	n   int64
}

func newBlockCache(capacity int64) *blockCache {
	if capacity <= 0 {
		return nil
	}
	return &blockCache{capacity: capacity, ll: list.New(), m: map[cacheKey]*list.Element{}}
}

func (c *blockCache) get(k cacheKey) *block {
	c.mu.Lock()
	e, ok := c.m[k]
	if ok {
		c.ll.MoveToFront(e)
	}
	c.mu.Unlock()
	if !ok {
		c.misses.Add(1)
		return nil
	}
	c.hits.Add(1)
	return e.Value.(*cacheEntry).blk
}

func (c *blockCache) put(k cacheKey, blk *block) {
	n := int64(len(blk.data)+len(blk.restarts)) + 64
	if n > c.capacity/4 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; ok {
		return
	}
	c.m[k] = c.ll.PushFront(&cacheEntry{k, blk, n})
	c.size += n
	for c.size > c.capacity {
		e := c.ll.Back()
		ce := e.Value.(*cacheEntry)
		c.ll.Remove(e)
		delete(c.m, ce.key)
		c.size -= ce.n
	}
}

func (c *blockCache) bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}
