package policy

import (
	"strings"
	"sync"
	"time"
)

// DefaultMaxBuckets is the bucket count of a Limiter made with
// NewLimiter(0).
const DefaultMaxBuckets = 10000

// Limiter holds the token buckets of the rate rules: one bucket per remote
// domain and direction (so a flood one way cannot starve replies the other
// way), created on first use and only for domains whose rule sets a rate.
// It is safe for concurrent use, starts no goroutine and reads no clock:
// the caller passes the time.
//
// Memory is bounded: buckets are kept in least-recently-used order, a
// bucket that has refilled to its burst (and so is indistinguishable from a
// new one) is dropped when it reaches the old end, and when the Limiter is
// full the least recently used bucket makes room. A Limiter outlives
// reloads: each call brings the current rate and burst with the Decision.
type Limiter struct {
	mu      sync.Mutex
	max     int
	buckets map[bucketKey]*bucket
	// newest and oldest are the ends of the recency list.
	newest, oldest *bucket
}

type bucketKey struct {
	domain string
	dir    Direction
}

type bucket struct {
	key          bucketKey
	tokens       float64
	rate         float64
	burst        float64
	last         time.Time
	newer, older *bucket
}

// NewLimiter returns a Limiter holding at most maxBuckets buckets
// (DefaultMaxBuckets if maxBuckets <= 0).
func NewLimiter(maxBuckets int) *Limiter {
	if maxBuckets <= 0 {
		maxBuckets = DefaultMaxBuckets
	}
	return &Limiter{max: maxBuckets, buckets: make(map[bucketKey]*bucket)}
}

// Limit applies the remote domain's rate rule to a decision: a refused
// decision, or one for a domain without a rate, comes back unchanged;
// otherwise one token is taken from the bucket of (remote, dir) at now()
// (the clock is read only then), and if none is left the stanza is refused
// with resource-constraint, type wait (send-or-drop as for any refusal of
// that stanza).
func (l *Limiter) Limit(remote string, dir Direction, d Decision, now func() time.Time) Decision {
	if !d.Allowed || d.rule == nil || d.rule.rate <= 0 {
		return d
	}
	if l.Allow(remote, dir, d.rule.rate, d.rule.burst, now()) {
		return d
	}
	d.Allowed = false
	d.Send = d.send
	d.Reason = ReasonRate
	d.Rule = d.rule.rateLabel
	return d
}

// Allow takes one token from the bucket of (remote, dir), refilled at
// perSecond up to burst since its last use, and reports whether there was
// one. A new bucket starts full. perSecond <= 0 means unlimited. If the
// clock steps backwards the bucket simply does not refill.
func (l *Limiter) Allow(remote string, dir Direction, perSecond float64, burst int, now time.Time) bool {
	if perSecond <= 0 {
		return true
	}
	capacity := float64(max(burst, 1))
	l.mu.Lock()
	defer l.mu.Unlock()
	key := bucketKey{remote, dir}
	b, ok := l.buckets[key]
	if ok {
		if elapsed := now.Sub(b.last); elapsed > 0 {
			b.tokens += elapsed.Seconds() * perSecond
		}
		l.unlink(b)
	} else {
		if len(l.buckets) >= l.max {
			l.drop(l.oldest)
		}
		// The key may point into a large read buffer: keep a copy only.
		key.domain = strings.Clone(remote)
		b = &bucket{key: key, tokens: capacity}
		l.buckets[key] = b
	}
	if now.After(b.last) || !ok {
		b.last = now
	}
	b.rate, b.burst = perSecond, capacity
	b.tokens = min(b.tokens, capacity)
	allowed := b.tokens >= 1
	if allowed {
		b.tokens--
	}
	l.pushNewest(b)
	// Let go of one bucket that has been idle long enough to be full
	// again: it costs nothing to recreate.
	if o := l.oldest; o != b && o.tokens+now.Sub(o.last).Seconds()*o.rate >= o.burst {
		l.drop(o)
	}
	return allowed
}

// Len returns the number of buckets held.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

func (l *Limiter) drop(b *bucket) {
	l.unlink(b)
	delete(l.buckets, b.key)
}

func (l *Limiter) unlink(b *bucket) {
	if b.newer != nil {
		b.newer.older = b.older
	} else {
		l.newest = b.older
	}
	if b.older != nil {
		b.older.newer = b.newer
	} else {
		l.oldest = b.newer
	}
	b.newer, b.older = nil, nil
}

func (l *Limiter) pushNewest(b *bucket) {
	b.older = l.newest
	if l.newest != nil {
		l.newest.newer = b
	}
	l.newest = b
	if l.oldest == nil {
		l.oldest = b
	}
}
