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
	b := newBreaker("down.example", cfg)

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
	b := newBreaker("back.example", config.Breaker{Failures: 1, OpenFor: time.Hour, MaxOpenFor: time.Hour})
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
