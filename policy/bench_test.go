package policy_test

import (
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/policy"
)

// benchPolicy is a plausible production policy: a few dozen list entries
// and rules, none of which names the benchmark's domain except a wildcard
// rule, so the lookup walks every suffix.
func benchPolicy(b testing.TB) *policy.Policy {
	c := config.Policy{
		Default: "allow",
		Allow:   []string{"partner.example", "*.partner.example", "example.com", "*.example.net"},
		Deny:    []string{"*.evil.example", "spam.example", "*.bad.example.org", "*.a.b.c.d.example"},
	}
	for _, d := range []string{"one", "two", "three", "four", "five", "six", "seven", "eight"} {
		c.Deny = append(c.Deny, d+".blocked.example", "*."+d+".blocked.example")
		c.Rules = append(c.Rules, config.Rule{Match: []string{d + ".limited.example"}, Kinds: []string{"message"}})
	}
	c.Rules = append(c.Rules, config.Rule{Match: []string{"*.example.org"}, MaxStanzaBytes: 65536, Rate: 1e9, Burst: 1e9})
	return mustCompile(b, c, policy.Options{MaxStanzaBytes: 262144, RequireTLS: true})
}

func BenchmarkStanzaDecision(b *testing.B) {
	p := benchPolicy(b)
	msg := policy.Stanza{Kind: policy.Message, Type: "chat", From: "juliet@chat.example.org/balcony", Size: 420}
	raw := policy.RawStanza{Kind: policy.Message, Type: []byte("chat"), From: []byte("juliet@chat.example.org/balcony"), Size: 420}
	const remote = "chat.example.org"
	if d := p.Stanza(remote, policy.In, msg); !d.Allowed {
		b.Fatalf("benchmark stanza refused: %q", d.Rule)
	}
	report := func(b *testing.B) {
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	}

	b.Run("message", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p.Stanza(remote, policy.In, msg)
		}
		report(b)
	})
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p.RawStanza(remote, policy.In, raw)
		}
		report(b)
	})
	b.Run("subscribe", func(b *testing.B) {
		sub := policy.Stanza{Kind: policy.Presence, Type: "subscribe", From: "juliet@chat.example.org", Size: 150}
		b.ReportAllocs()
		for b.Loop() {
			p.Stanza(remote, policy.In, sub)
		}
		report(b)
	})
	b.Run("denied", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p.Stanza("x.three.blocked.example", policy.In, msg)
		}
		report(b)
	})
	b.Run("with_limiter", func(b *testing.B) {
		l := policy.NewLimiter(0)
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		b.ReportAllocs()
		for b.Loop() {
			l.Limit(remote, policy.In, p.Stanza(remote, policy.In, msg), func() time.Time { return now })
		}
		report(b)
	})
}
