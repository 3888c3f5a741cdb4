package resolve

import "sync/atomic"

// Stats counts a Resolver's work, for metrics.
type Stats struct {
	// Queries counts the questions asked of the nameservers (one per name
	// and type, whatever the retries and servers it took), Failures those
	// that got no usable answer (timeouts, SERVFAIL and the like; NXDOMAIN
	// is an answer).
	Queries, Failures atomic.Int64
	// CacheHits and CacheMisses count the lookups of the answer cache
	// (SRV and address records): a miss asks the nameservers, unless a
	// query for the same question is already in flight.
	CacheHits, CacheMisses atomic.Int64
}

// Stats returns the resolver's counters.
func (r *Resolver) Stats() *Stats { return &r.stats }

// query counts a question asked and its outcome.
func (s *Stats) query(err error) {
	s.Queries.Add(1)
	if err != nil {
		s.Failures.Add(1)
	}
}
