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

// breaker is the circuit breaker of one remote domain. It wraps a
// gobreaker.TwoStepCircuitBreaker: cfg.Failures consecutive connection or
// authentication failures open it; after the open period one probe is let
// through (gobreaker's half-open state admits one request). gobreaker's open
// period is fixed per breaker, so a failed probe replaces it with a breaker
// whose period is twice as long (up to MaxOpenFor, with jitter) and trips
// that one at once; a success goes back to the base period.
type breaker struct {
	domain string
	cfg    config.Breaker

	mu      sync.Mutex
	cb      *gobreaker.TwoStepCircuitBreaker[struct{}]
	level   int // failed probes in a row
	openFor time.Duration
	until   time.Time // when the current open period ends (zero when closed)
}

// errTrip is the failure fed to a fresh breaker to open it at once.
var errTrip = errors.New("trip")

func newBreaker(domain string, cfg config.Breaker) *breaker {
	b := &breaker{domain: domain, cfg: cfg}
	b.reset(0)
	return b
}

// reset replaces the gobreaker with a closed one whose open period
// corresponds to level; with level > 0 it trips it open at once.
func (b *breaker) reset(level int) {
	b.level = level
	b.openFor = b.cfg.OpenFor
	for i := 0; i < level && b.openFor < b.cfg.MaxOpenFor; i++ {
		b.openFor *= 2
	}
	if b.openFor > b.cfg.MaxOpenFor {
		b.openFor = b.cfg.MaxOpenFor
	}
	if level > 0 {
		// Up to 10% jitter so that relays restarted together do not probe
		// a domain in lockstep.
		b.openFor += time.Duration(rand.Int64N(int64(b.openFor)/10 + 1))
	}
	failures := uint32(b.cfg.Failures)
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:    b.domain,
		Timeout: b.openFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= failures
		},
	})
	b.until = time.Time{}
	if level > 0 {
		for i := uint32(0); i < failures; i++ {
			if done, err := b.cb.Allow(); err == nil {
				done(errTrip)
			}
		}
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
