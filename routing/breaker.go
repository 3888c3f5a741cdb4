package routing

import (
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
	"mellium.im/xmpp/stanza"

	"github.com/fedrelay/fedrelay/config"
)

// breaker is the circuit breaker of one destination domain. It wraps a
// gobreaker.TwoStepCircuitBreaker: breaker.failures consecutive connection
// or authentication failures open it; after the open period one probe is
// let through (gobreaker's half-open state admits one request). gobreaker's
// open period is fixed per breaker, so a failed probe replaces it with a
// breaker whose period is twice as long (up to the cap, with jitter) and
// trips that one at once; a success goes back to the base period.
type breaker struct {
	domain string
	// settings returns the settings the breaker should run with now: a
	// reload may change them, or make the domain internal or remote.
	settings func() breakerSettings

	mu      sync.Mutex
	cur     breakerSettings // what cb was made with
	cb      *gobreaker.TwoStepCircuitBreaker[struct{}]
	level   int // failed probes in a row
	openFor time.Duration
	until   time.Time // when the current open period ends (zero when closed)
	lastErr string    // the last failure reported, for operators
	failed  uint32    // consecutive failures reported, for operators (gobreaker clears its count when it opens)
	lastAt  time.Time // when
}

// breakerSettings are what one breaker runs with: breaker.failures, and the
// open period and its cap for the domain's kind.
type breakerSettings struct {
	failures            int
	openFor, maxOpenFor time.Duration
}

// settingsFor picks from cfg the settings of the breaker of an internal
// domain or a remote one. An internal domain is the organisation's own
// server at its configured route: its outages are restarts, over in
// seconds, so its breaker reopens after breaker.internal_open_for rather
// than open_for, lest what is addressed to it bounce long after it is back.
// Zero internal periods (a hand-built config.Breaker) mean the remote ones.
func settingsFor(cfg *config.Breaker, internal bool) breakerSettings {
	s := breakerSettings{failures: cfg.Failures, openFor: cfg.OpenFor, maxOpenFor: cfg.MaxOpenFor}
	if internal && cfg.InternalOpenFor > 0 {
		s.openFor, s.maxOpenFor = cfg.InternalOpenFor, max(cfg.InternalMaxOpenFor, cfg.InternalOpenFor)
	}
	return s
}

// errTrip is the failure fed to a fresh breaker to open it at once.
var errTrip = errors.New("trip")

func newBreaker(domain string, settings func() breakerSettings) *breaker {
	b := &breaker{domain: domain, settings: settings}
	b.reset(0)
	return b
}

// reset replaces the gobreaker, made with the current settings, with a
// closed one whose open period corresponds to level; with level > 0 it trips
// it open at once.
func (b *breaker) reset(level int) {
	b.cur = b.settings()
	b.level = level
	b.openFor = b.cur.openFor
	for i := 0; i < level && b.openFor < b.cur.maxOpenFor; i++ {
		b.openFor *= 2
	}
	if b.openFor > b.cur.maxOpenFor {
		b.openFor = b.cur.maxOpenFor
	}
	if level > 0 {
		// Up to 10% jitter so that relays restarted together do not probe
		// a domain in lockstep.
		b.openFor += time.Duration(rand.Int64N(int64(b.openFor)/10 + 1))
	}
	failures := uint32(b.cur.failures)
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:    b.domain,
		Timeout: b.openFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= failures
		},
	})
	b.until = time.Time{}
	if level > 0 {
		b.fail(failures)
		b.until = time.Now().Add(b.openFor)
	}
}

// fail feeds n failures to the gobreaker.
func (b *breaker) fail(n uint32) {
	for i := uint32(0); i < n; i++ {
		if done, err := b.cb.Allow(); err == nil {
			done(errTrip)
		}
	}
}

// renew makes a closed breaker whose settings changed (a reload) run with
// the new ones from now on, keeping its count of consecutive failures,
// which may open it at once if breaker.failures went down. An open breaker
// keeps its period; the new settings apply from its next reset.
func (b *breaker) renew() {
	if b.cb.State() != gobreaker.StateClosed || b.settings() == b.cur {
		return
	}
	failed := b.cb.Counts().ConsecutiveFailures
	b.reset(0)
	b.fail(failed)
	if b.cb.State() == gobreaker.StateOpen {
		b.until = time.Now().Add(b.openFor)
	}
}

// allow asks whether a connection attempt may start. On success it returns
// the callback to report the attempt's outcome with (nil for success).
// Otherwise it returns a delivery error naming the domain and when it will
// be retried.
func (b *breaker) allow() (func(error), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.renew()
	cb := b.cb
	done, err := cb.Allow()
	if err != nil {
		until := b.until
		if until.IsZero() {
			until = time.Now().Add(b.openFor)
		}
		return nil, &DeliveryError{Condition: stanza.RemoteServerTimeout,
			Err: &OpenError{Domain: b.domain, Until: until}}
	}
	halfOpen := cb.State() == gobreaker.StateHalfOpen
	return func(err error) {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.cb != cb {
			return // replaced meanwhile (closed by an inbound stream, reload)
		}
		done(err)
		if err != nil {
			b.lastErr, b.lastAt = err.Error(), time.Now()
			b.failed++
		} else {
			b.failed = 0
		}
		switch {
		case err == nil && b.level > 0:
			b.reset(0)
		case err == nil:
			b.until = time.Time{}
		case halfOpen:
			b.reset(b.level + 1)
		case cb.State() == gobreaker.StateOpen && b.until.IsZero():
			b.until = time.Now().Add(b.openFor)
		}
	}, nil
}

// succeed closes the breaker: the domain is evidently reachable (an inbound
// stream from it authenticated).
func (b *breaker) succeed() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cb.State() != gobreaker.StateClosed || b.level > 0 {
		b.reset(0)
	}
	b.failed = 0
}

// state reports the breaker's state for metrics and logs.
func (b *breaker) state() gobreaker.State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cb.State()
}

// OpenError is the cause of a bounce while a domain's breaker is open.
type OpenError struct {
	Domain string
	Until  time.Time
}

func (e *OpenError) Error() string {
	return "circuit breaker open for " + e.Domain + " after repeated connection failures; next attempt at " +
		e.Until.UTC().Format(time.RFC3339)
}
