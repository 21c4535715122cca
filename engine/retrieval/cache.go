package retrieval

import (
	"crypto/sha256"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Key identifies an input by its kind ("text", "image", "audio") and the SHA-256 of its bytes.
type Key [sha256.Size]byte

// KeyOf hashes an input's kind and content.
func KeyOf(kind string, content []byte) Key {
	h := sha256.New()
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write(content)
	var k Key
	h.Sum(k[:0])
	return k
}

// EmbeddingCache is an LRU cache of embeddings of query texts, images and audio clips, keyed by
// content hash, with hit and miss counts. It is safe for concurrent use. Cached slices must not
// be modified.
type EmbeddingCache struct {
	lru          *lru.Cache[Key, []float32]
	hits, misses atomic.Uint64
}

// NewEmbeddingCache holds up to size embeddings (size <= 0 disables caching).
func NewEmbeddingCache(size int) *EmbeddingCache {
	c := &EmbeddingCache{}
	if size > 0 {
		c.lru, _ = lru.New[Key, []float32](size) // only fails for size <= 0
	}
	return c
}

// Get returns the cached embedding for k and counts a hit or a miss.
func (c *EmbeddingCache) Get(k Key) ([]float32, bool) {
	if c.lru != nil {
		if v, ok := c.lru.Get(k); ok {
			c.hits.Add(1)
			return v, true
		}
	}
	c.misses.Add(1)
	return nil, false
}

// Add stores an embedding.
func (c *EmbeddingCache) Add(k Key, v []float32) {
	if c.lru != nil {
		c.lru.Add(k, v)
	}
}

// Stats returns the hits and misses so far.
func (c *EmbeddingCache) Stats() (hits, misses uint64) { return c.hits.Load(), c.misses.Load() }

// Len is the number of cached embeddings.
func (c *EmbeddingCache) Len() int {
	if c.lru == nil {
		return 0
	}
	return c.lru.Len()
}
