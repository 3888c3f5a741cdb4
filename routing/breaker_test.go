package routing

import (
	"errors"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
	"mellium.im/xmpp/stanza"

	"github.com/fedrelay/fedrelay/config"
)

var errDial = errors.New("connection refused")

// attempt asks the breaker for a connection attempt and reports its outcome.
func attempt(t *testing.T, b *breaker, outcome error) error {
	t.Helper()
	done, err := b.allow()
	if err != nil {
		return err
	}
	done(outcome)
	return nil
}

// fixedSettings returns settings that never change, for a breaker outside
// a Router.
func fixedSettings(cfg config.Breaker, internal bool) func() breakerSettings {
	s := settingsFor(&cfg, internal)
	return func() breakerSettings { return s }
}

func waitState(t *testing.T, b *breaker, want gobreaker.State, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for b.state() != want {
		if time.Now().After(deadline) {
			t.Fatalf("breaker state %v, want %v within %v", b.state(), want, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBreaker(t *testing.T) {
	cfg := config.Breaker{Failures: 3, OpenFor: 100 * time.Millisecond, MaxOpenFor: 250 * time.Millisecond}
	b := newBreaker("down.example", fixedSettings(cfg, false))

	for i := range 3 {
		if err := attempt(t, b, errDial); err != nil {
			t.Fatalf("attempt %d refused while closed: %v", i, err)
		}
	}
	if b.state() != gobreaker.StateOpen {
		t.Fatalf("state %v after 3 failures, want open", b.state())
	}
	err := attempt(t, b, nil)
	var de *DeliveryError
	var oe *OpenError
	if !errors.As(err, &de) || de.Condition != stanza.RemoteServerTimeout || !errors.As(err, &oe) || oe.Domain != "down.example" {
		t.Fatalf("open breaker: %v, want a remote-server-timeout naming the domain", err)
	}
	if until := time.Until(oe.Until); until <= 0 || until > cfg.OpenFor {
		t.Errorf("retry time %v from now, want within open_for", until)
	}

	// Half-open after open_for: one probe. It fails: open again, for twice
	// as long (plus up to 10% jitter).
	waitState(t, b, gobreaker.StateHalfOpen, time.Second)
	done, err := b.allow()
	if err != nil {
		t.Fatalf("half-open breaker refused the probe: %v", err)
	}
	if _, err := b.allow(); err == nil {
		t.Error("half-open breaker admitted a second attempt while the probe runs")
	}
	done(errDial)
	if b.state() != gobreaker.StateOpen || b.openFor < 2*cfg.OpenFor || b.openFor > 2*cfg.OpenFor+2*cfg.OpenFor/10 {
		t.Fatalf("after a failed probe: state %v open for %v, want open for about %v", b.state(), b.openFor, 2*cfg.OpenFor)
	}
	// Another failed probe: capped at max_open_for.
	waitState(t, b, gobreaker.StateHalfOpen, time.Second)
	if err := attempt(t, b, errDial); err != nil {
		t.Fatal(err)
	}
	if b.openFor > cfg.MaxOpenFor+cfg.MaxOpenFor/10 {
		t.Errorf("open for %v, want at most max_open_for %v (+jitter)", b.openFor, cfg.MaxOpenFor)
	}
	// A successful probe closes it and resets the period.
	waitState(t, b, gobreaker.StateHalfOpen, time.Second)
	if err := attempt(t, b, nil); err != nil {
		t.Fatal(err)
	}
	if b.state() != gobreaker.StateClosed || b.openFor != cfg.OpenFor {
		t.Errorf("after a good probe: state %v open for %v, want closed and %v", b.state(), b.openFor, cfg.OpenFor)
	}
}

// TestBreakerSucceed: an inbound stream from the domain authenticating closes
// an open breaker at once.
func TestBreakerSucceed(t *testing.T) {
	b := newBreaker("back.example", fixedSettings(config.Breaker{Failures: 1, OpenFor: time.Hour, MaxOpenFor: time.Hour}, false))
	if err := attempt(t, b, errDial); err != nil {
		t.Fatal(err)
	}
	if err := attempt(t, b, nil); err == nil {
		t.Fatal("breaker not open after the failure")
	}
	b.succeed()
	if err := attempt(t, b, nil); err != nil {
		t.Errorf("breaker still refusing after succeed: %v", err)
	}
}

// newTestRouter is a Router fronting the internal domain a.example, for
// the breakers it keeps.
func newTestRouter(cfg config.Breaker, internal ...string) *Router {
	var domains []config.Domain
	for _, d := range append([]string{"a.example"}, internal...) {
		domains = append(domains, config.Domain{Name: d, Route: "10.0.0.5:5269"})
	}
	return NewRouter(Options{Table: NewTable(domains), Breaker: cfg})
}

// openUntil trips b with failures and returns how long from now it says it
// stays open.
func openUntil(t *testing.T, b *breaker, failures int) time.Duration {
	t.Helper()
	for i := range failures {
		if err := attempt(t, b, errDial); err != nil {
			t.Fatalf("attempt %d refused while closed: %v", i, err)
		}
	}
	var oe *OpenError
	if err := attempt(t, b, nil); !errors.As(err, &oe) {
		t.Fatalf("breaker of %s not open after %d failures: %v", b.domain, failures, err)
	}
	return time.Until(oe.Until)
}

// TestBreakerInternalDomain: the breaker of an internal domain (one with a
// route: the organisation's own server) opens for breaker.internal_open_for,
// doubling up to internal_max_open_for, not for open_for; a remote
// domain's still opens for open_for.
func TestBreakerInternalDomain(t *testing.T) {
	cfg := config.Breaker{Failures: 2, OpenFor: time.Hour, MaxOpenFor: 2 * time.Hour,
		InternalOpenFor: 100 * time.Millisecond, InternalMaxOpenFor: 150 * time.Millisecond}
	r := newTestRouter(cfg)

	in := r.breaker("a.example")
	if until := openUntil(t, in, 2); until <= 0 || until > cfg.InternalOpenFor {
		t.Errorf("internal domain: open for %v more, want at most internal_open_for %v", until, cfg.InternalOpenFor)
	}
	waitState(t, in, gobreaker.StateHalfOpen, time.Second)
	if err := attempt(t, in, errDial); err != nil {
		t.Fatalf("half-open breaker refused the probe: %v", err)
	}
	// Twice 100ms, capped at 150ms, plus up to 10% jitter.
	if in.state() != gobreaker.StateOpen || in.openFor < cfg.InternalMaxOpenFor || in.openFor > cfg.InternalMaxOpenFor*11/10 {
		t.Errorf("internal domain after a failed probe: state %v, open for %v, want open for internal_max_open_for %v (+jitter)",
			in.state(), in.openFor, cfg.InternalMaxOpenFor)
	}
	waitState(t, in, gobreaker.StateHalfOpen, time.Second)
	if err := attempt(t, in, nil); err != nil || in.state() != gobreaker.StateClosed || in.openFor != cfg.InternalOpenFor {
		t.Errorf("internal domain after a good probe: %v, state %v, open for %v, want closed and %v",
			err, in.state(), in.openFor, cfg.InternalOpenFor)
	}

	remote := r.breaker("example.org")
	if until := openUntil(t, remote, 2); until < cfg.OpenFor-time.Minute || until > cfg.OpenFor {
		t.Errorf("remote domain: open for %v more, want open_for %v", until, cfg.OpenFor)
	}
}

// TestBreakerReload: reloaded breaker settings, and a domain a reload makes
// internal or remote, apply to existing breakers: at once to closed ones,
// which keep their count of failures.
func TestBreakerReload(t *testing.T) {
	slow := config.Breaker{Failures: 2, OpenFor: time.Hour, MaxOpenFor: time.Hour,
		InternalOpenFor: time.Hour, InternalMaxOpenFor: time.Hour}
	r := newTestRouter(slow)
	in, moved := r.breaker("a.example"), r.breaker("b.example")
	// One failure each before the reload: the count survives it.
	for _, b := range []*breaker{in, moved} {
		if err := attempt(t, b, errDial); err != nil {
			t.Fatal(err)
		}
	}

	fast := slow
	fast.InternalOpenFor, fast.InternalMaxOpenFor = 100*time.Millisecond, 200*time.Millisecond
	r.Reload(NewTable([]config.Domain{{Name: "a.example", Route: "10.0.0.5:5269"},
		{Name: "b.example", Route: "10.0.0.6:5269"}}), nil, fast)

	for _, b := range []*breaker{in, moved} {
		if until := openUntil(t, b, 1); until <= 0 || until > fast.InternalOpenFor {
			t.Errorf("%s after the reload: open for %v more, want at most the new internal_open_for %v",
				b.domain, until, fast.InternalOpenFor)
		}
	}
}
