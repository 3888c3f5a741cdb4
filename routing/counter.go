package routing

import "sync/atomic"

// counterShards is how many cache lines a Counter is spread over: enough
// that the streams and links of a busy relay seldom share one.
const counterShards = 16

// Counter is a count that many streams add to at once without sharing a
// cache line: each adds to the shard of its own number (Stanza.Shard, a
// link's number), and Load sums the shards. A Counter is only read for
// metrics and tests, so the sum costs nothing on the hot path.
type Counter struct {
	shards [counterShards]struct {
		n atomic.Int64
		_ [56]byte // one shard per 64-byte cache line
	}
}

// AddAt adds n to the shard of shard.
func (c *Counter) AddAt(shard uint32, n int64) { c.shards[shard%counterShards].n.Add(n) }

// Add adds n to the first shard; for counts off the hot path.
func (c *Counter) Add(n int64) { c.shards[0].n.Add(n) }

// Load returns the count.
func (c *Counter) Load() int64 {
	var n int64
	for i := range c.shards {
		n += c.shards[i].n.Load()
	}
	return n
}
