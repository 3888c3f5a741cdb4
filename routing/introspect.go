package routing

import (
	"slices"
	"strings"
	"time"

	"github.com/sony/gobreaker/v2"
)

// BreakerInfo describes the circuit breaker of one destination domain, for
// operators (the admin API).
type BreakerInfo struct {
	Domain string `json:"domain"`
	// State is "closed", "open" or "half-open" (a probe is let through).
	State string `json:"state"`
	// Failures counts the consecutive failed attempts so far.
	Failures uint32 `json:"consecutive_failures"`
	// LastError is the last failure reported, and LastErrorAt when.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// NextProbe is when an open breaker lets the next attempt through.
	NextProbe time.Time `json:"next_probe,omitzero"`
	// OpenFor is the current open period (it doubles after each failed
	// probe, up to the configured cap).
	OpenFor time.Duration `json:"open_for_ns"`
	// Internal reports an internal domain's breaker (shorter periods).
	Internal bool `json:"internal"`
}

// Breakers returns the breakers the router keeps (at most MaxBreakers, the
// most recently used), sorted by domain.
func (r *Router) Breakers() []BreakerInfo {
	r.bmu.Lock()
	all := make([]*breaker, 0, r.breakers.Len())
	for _, d := range r.breakers.Keys() {
		if b, ok := r.breakers.Peek(d); ok {
			all = append(all, b)
		}
	}
	r.bmu.Unlock()
	t := r.table.Load()
	out := make([]BreakerInfo, 0, len(all))
	for _, b := range all {
		out = append(out, b.info(t.IsInternal(b.domain)))
	}
	slices.SortFunc(out, func(a, b BreakerInfo) int { return strings.Compare(a.Domain, b.Domain) })
	return out
}

func (b *breaker) info(internal bool) BreakerInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	bi := BreakerInfo{Domain: b.domain, Failures: b.failed, LastError: b.lastErr,
		LastErrorAt: b.lastAt, OpenFor: b.openFor, Internal: internal}
	switch b.cb.State() {
	case gobreaker.StateOpen:
		bi.State, bi.NextProbe = "open", b.until
	case gobreaker.StateHalfOpen:
		bi.State = "half-open"
	default:
		bi.State = "closed"
	}
	return bi
}

// ResetBreaker closes the breaker of domain, forgetting its failures, so
// that the next stanza for it tries a connection at once. It reports
// whether the router had a breaker for domain.
func (r *Router) ResetBreaker(domain string) bool {
	r.bmu.Lock()
	b, ok := r.breakers.Peek(domain)
	r.bmu.Unlock()
	if !ok {
		return false
	}
	b.mu.Lock()
	b.reset(0)
	b.lastErr, b.lastAt, b.failed = "", time.Time{}, 0
	b.mu.Unlock()
	return true
}
