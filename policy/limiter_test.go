package policy_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/stanza"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/policy"
)

func TestLimit(t *testing.T) {
	p := mustCompile(t, config.Policy{
		Default: "allow",
		Rules:   []config.Rule{{Match: []string{"*.chatty.example"}, Rate: 2, Burst: 3}},
	}, policy.Options{})
	l := policy.NewLimiter(0)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	msg := policy.Stanza{Kind: policy.Message, Type: "chat", From: "a@x.chatty.example/r", Size: 100}
	result := policy.Stanza{Kind: policy.IQ, Type: "result", From: "x.chatty.example", Size: 100}
	step := func(remote string, dir policy.Direction, s policy.Stanza, at time.Duration) policy.Decision {
		return l.Limit(remote, dir, p.Stanza(remote, dir, s), func() time.Time { return t0.Add(at) })
	}
	const remote = "x.chatty.example"

	if perSecond, burst := p.Stanza(remote, policy.In, msg).Rate(); perSecond != 2 || burst != 3 {
		t.Fatalf("Rate() = %v, %v, want 2, 3", perSecond, burst)
	}
	steps := []struct {
		name    string
		remote  string
		dir     policy.Direction
		s       policy.Stanza
		at      time.Duration
		allowed bool
		send    bool
	}{
		{"burst 1", remote, policy.In, msg, 0, true, false},
		{"burst 2", remote, policy.In, msg, 0, true, false},
		{"burst 3", remote, policy.In, msg, 0, true, false},
		{"empty", remote, policy.In, msg, 0, false, true},
		{"empty, iq result dropped silently", remote, policy.In, result, 100 * time.Millisecond, false, false},
		{"other direction has its own bucket", remote, policy.Out, msg, 100 * time.Millisecond, true, false},
		{"other domain has its own bucket", "y.chatty.example", policy.In, msg, 100 * time.Millisecond, true, false},
		{"unlimited domain", "quiet.example", policy.In, msg, 100 * time.Millisecond, true, false},
		{"half a token", remote, policy.In, msg, 250 * time.Millisecond, false, true},
		{"refilled one", remote, policy.In, msg, 500 * time.Millisecond, true, false},
		{"and empty again", remote, policy.In, msg, 500 * time.Millisecond, false, true},
		{"clock going back refills nothing", remote, policy.In, msg, 100 * time.Millisecond, false, true},
		{"refill capped at burst 1", remote, policy.In, msg, time.Hour, true, false},
		{"refill capped at burst 2", remote, policy.In, msg, time.Hour, true, false},
		{"refill capped at burst 3", remote, policy.In, msg, time.Hour, true, false},
		{"refill capped at burst, then empty", remote, policy.In, msg, time.Hour, false, true},
	}
	for _, s := range steps {
		d := step(s.remote, s.dir, s.s, s.at)
		if d.Allowed != s.allowed || d.Send != s.send {
			t.Fatalf("%s: allowed %v send %v (%q), want %v %v", s.name, d.Allowed, d.Send, d.Rule, s.allowed, s.send)
		}
		if !d.Allowed && (d.Reason != policy.ReasonRate || d.Condition() != stanza.ResourceConstraint ||
			d.ErrorType() != stanza.Wait || d.Rule != "rules[0].rate") {
			t.Fatalf("%s: refusal %v %v %v %q, want rate resource-constraint wait rules[0].rate",
				s.name, d.Reason, d.Condition(), d.ErrorType(), d.Rule)
		}
	}
	if n := l.Len(); n > 3 {
		t.Errorf("Len() = %d, want buckets only for rate-limited domains (at most 3)", n)
	}

	// A refused decision takes no token and stays as it was.
	denied := policy.Decision{Allowed: false, Reason: policy.ReasonKind, Rule: "rules[9].kinds"}
	if got := l.Limit(remote, policy.In, denied, func() time.Time { return t0 }); got != denied {
		t.Errorf("Limit changed a refused decision: %+v", got)
	}
}

func TestLimiterBounded(t *testing.T) {
	l := policy.NewLimiter(4)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 100 {
		l.Allow(fmt.Sprintf("d%d.example", i), policy.In, 1, 1, t0)
		if n := l.Len(); n > 4 {
			t.Fatalf("after %d domains Len() = %d, want at most 4", i+1, n)
		}
	}
	// Idle buckets (refilled to their burst) are let go as traffic goes on.
	for i := range 10 {
		l.Allow("busy.example", policy.In, 1, 1, t0.Add(time.Hour+time.Duration(i)*time.Second))
	}
	if n := l.Len(); n != 1 {
		t.Errorf("after an hour of one busy domain Len() = %d, want 1", n)
	}
	if !l.Allow("anything", policy.In, 0, 0, t0) {
		t.Error("Allow with no rate refused")
	}
}

func TestLimiterConcurrent(t *testing.T) {
	l := policy.NewLimiter(8)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for g := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				ok := l.Allow(fmt.Sprintf("d%d.example", i%3), policy.Direction(1+g%2), 10, 100, t0)
				if ok && i%3 == 0 && g%2 == 0 {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	// d0.example in: two goroutines share one bucket of 100 at a frozen clock.
	if allowed != 100 {
		t.Errorf("allowed %d from one bucket of burst 100, want 100", allowed)
	}
}
