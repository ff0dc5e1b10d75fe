package index

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// lookupCache holds decoded lookup results (and misses) in front of
// Badger, whose point read costs microseconds; crash pipelines ask for the
// same libraries' build-ids again and again. It is bounded by entry count
// and evicts at random, which for this access pattern does about as well
// as LRU without its bookkeeping.
//
// Consistency: a write bumps gen after its transaction commits and then
// drops the ids it touched; a reader only fills the cache if gen did not
// move while it read Badger, so a result read before a commit is never
// cached after it.
type lookupCache struct {
	seed   maphash.Seed
	gen    atomic.Uint64
	shards [64]cacheShard
	per    int
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[string][]Match // nil slice: known miss
}

func newLookupCache(entries int) *lookupCache {
	c := &lookupCache{seed: maphash.MakeSeed(), per: max(entries/64, 1)}
	for i := range c.shards {
		c.shards[i].m = make(map[string][]Match)
	}
	return c
}

func (c *lookupCache) shard(k string) *cacheShard {
	return &c.shards[maphash.String(c.seed, k)%uint64(len(c.shards))]
}

func (c *lookupCache) get(id BuildID) (ms []Match, ok bool) {
	s := c.shard(id.b)
	s.mu.RLock()
	ms, ok = s.m[id.b]
	s.mu.RUnlock()
	return ms, ok
}

func (c *lookupCache) put(id BuildID, ms []Match, gen uint64) {
	s := c.shard(id.b)
	s.mu.Lock()
	if c.gen.Load() == gen {
		if len(s.m) >= c.per {
			for k := range s.m { // map order is random: evict one at random
				delete(s.m, k)
				break
			}
		}
		s.m[id.b] = ms
	}
	s.mu.Unlock()
}

func (c *lookupCache) invalidate(ids []BuildID) {
	c.gen.Add(1)
	for _, id := range ids {
		s := c.shard(id.b)
		s.mu.Lock()
		delete(s.m, id.b)
		s.mu.Unlock()
	}
}

// invalidateAll forgets everything: another node wrote, and which ids it
// touched is not known here.
func (c *lookupCache) invalidateAll() {
	c.gen.Add(1)
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.m)
		s.mu.Unlock()
	}
}
