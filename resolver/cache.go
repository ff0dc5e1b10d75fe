package resolver

import (
	"hash/maphash"
	"sync"
)

// cache is a map bounded by a cost budget, in shards to keep readers off
// each other's locks. When a shard goes over its share of the budget it
// drops entries at random (map order) down to three quarters of it.
type cache[K comparable, V any] struct {
	seed   maphash.Seed
	per    int64
	shards []cacheShard[K, V]
}

type cacheShard[K comparable, V any] struct {
	mu   sync.RWMutex
	m    map[K]cached[V]
	cost int64
}

type cached[V any] struct {
	v    V
	cost int64
}

// newCache returns a cache of the given budget in n shards; one entry may
// cost at most a shard's share, budget/n.
func newCache[K comparable, V any](budget int64, n int) *cache[K, V] {
	c := &cache[K, V]{seed: maphash.MakeSeed(), shards: make([]cacheShard[K, V], n)}
	c.per = max(budget/int64(n), 1)
	for i := range c.shards {
		c.shards[i].m = map[K]cached[V]{}
	}
	return c
}

func (c *cache[K, V]) shard(k K) *cacheShard[K, V] {
	return &c.shards[maphash.Comparable(c.seed, k)%uint64(len(c.shards))]
}

func (c *cache[K, V]) get(k K) (V, bool) {
	s := c.shard(k)
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	return e.v, ok
}

// put stores v under k unless k is already there, and returns what is.
func (c *cache[K, V]) put(k K, v V, cost int64) V {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[k]; ok {
		return e.v
	}
	if s.cost+cost > c.per {
		for k2, e := range s.m {
			if s.cost+cost <= c.per*3/4 {
				break
			}
			delete(s.m, k2)
			s.cost -= e.cost
		}
	}
	s.m[k] = cached[V]{v: v, cost: cost}
	s.cost += cost
	return v
}

func (c *cache[K, V]) drop(k K) {
	s := c.shard(k)
	s.mu.Lock()
	if e, ok := s.m[k]; ok {
		delete(s.m, k)
		s.cost -= e.cost
	}
	s.mu.Unlock()
}
