package routing_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/fedrelay/fedrelay/test/harness"
)

// TestSubscriptions: policy.rules subscriptions: deny bars presence
// subscription stanzas with that domain both ways (policy/doc.go):
// a subscribe is answered not-allowed (cancel) so that the user's client
// stops waiting, the other subscription types are dropped silently; other
// presence still crosses, and domains without the rule subscribe freely.
func TestSubscriptions(t *testing.T) {
	s := harness.StartSite(t, `
policy:
  rules:
    - {match: [nosubs.test], subscriptions: deny}
`, "remote.test", "nosubs.test")
	toRemote := s.FromInside(t, "remote.test")
	toNoSubs := s.FromInside(t, "nosubs.test")
	fromRemote := s.FromOutside(t, "remote.test")
	fromNoSubs := s.FromOutside(t, "nosubs.test")

	t.Run("allowed", func(t *testing.T) {
		toRemote.Send(harness.Presence("alice@a.test", "bob@remote.test", "sub-1", "subscribe"))
		s.Remote.WaitID(t, "sub-1")
		fromRemote.Send(harness.Presence("bob@remote.test", "alice@a.test", "sub-2", "subscribed"))
		s.Internal.WaitID(t, "sub-2")
		fromRemote.Send(harness.Presence("bob@remote.test", "alice@a.test", "sub-3", "subscribe"))
		s.Internal.WaitID(t, "sub-3")
		toRemote.Send(harness.Presence("alice@a.test", "bob@remote.test", "sub-4", "subscribed"))
		s.Remote.WaitID(t, "sub-4")
	})
	t.Run("denied out", func(t *testing.T) {
		toNoSubs.Send(harness.Presence("alice@a.test", "carol@nosubs.test", "deny-1", "subscribe"))
		expectError(t, s.Internal, "deny-1", "presence", "cancel", "not-allowed")
		dropped := s.Relay.Router.Stats().Dropped.Load()
		for i, typ := range []string{"subscribed", "unsubscribe", "unsubscribed"} {
			toNoSubs.Send(harness.Presence("alice@a.test", "carol@nosubs.test", fmt.Sprintf("deny-%d", i+2), typ))
		}
		harness.Eventually(t, func() bool { return s.Relay.Router.Stats().Dropped.Load() == dropped+3 },
			"three dropped subscription stanzas (%s)", s.Relay.Stats())
		// Other presence crosses.
		toNoSubs.Send(harness.Presence("alice@a.test/phone", "carol@nosubs.test", "deny-ok", ""))
		s.Remote.WaitID(t, "deny-ok")
		notReceived(t, s.Remote, "deny-1", "deny-2", "deny-3", "deny-4")
	})
	t.Run("denied in", func(t *testing.T) {
		fromNoSubs.Send(harness.Presence("carol@nosubs.test", "alice@a.test", "deny-in", "subscribe"))
		expectError(t, s.Remote, "deny-in", "presence", "cancel", "not-allowed")
		fromNoSubs.Send(harness.Presence("carol@nosubs.test/pc", "alice@a.test", "deny-in-ok", ""))
		s.Internal.WaitID(t, "deny-in-ok")
		notReceived(t, s.Internal, "deny-in")
	})
	t.Run("full JID", func(t *testing.T) {
		// RFC 6121 §3: the sending server stamps the bare JID; a full one
		// is refused with bad-request (modify), whatever the rule.
		toRemote.Send(harness.Presence("alice@a.test/phone", "bob@remote.test", "full-1", "subscribe"))
		expectError(t, s.Internal, "full-1", "presence", "modify", "bad-request")
		notReceived(t, s.Remote, "full-1")
	})
	s.Relay.WaitBalanced(t)
}

// TestDenyListAtStreamSetup: a domain on policy.deny is refused when its
// stream opens, with policy-violation right after the header, before TLS
// or dialback cost anything (no features, no DNS lookup of the domain),
// on both faces.
func TestDenyListAtStreamSetup(t *testing.T) {
	s := harness.StartSite(t, "policy: {deny: [evil.test]}", "remote.test", "evil.test")
	t.Run("federation face", func(t *testing.T) {
		sc := harness.Dial(t, s.Relay.FederationAddr)
		err := sc.Open("evil.test", "a.test")
		var se *harness.StreamError
		if !errors.As(err, &se) || se.Condition != "policy-violation" {
			t.Fatalf("stream from evil.test: %v (features %s), want policy-violation instead of features", err, sc.Features.Raw)
		}
		if n := s.DNS.Server().Count("_xmpp-server._tcp.evil.test.", dns.TypeSRV); n != 0 {
			t.Errorf("the relay looked evil.test up %d times: dialback was attempted", n)
		}
	})
	t.Run("internal face", func(t *testing.T) {
		sc := harness.Dial(t, s.Relay.InternalAddr)
		err := sc.Open("a.test", "evil.test")
		var se *harness.StreamError
		if !errors.As(err, &se) || se.Condition != "policy-violation" {
			t.Fatalf("stream to evil.test: %v (features %s), want policy-violation instead of features", err, sc.Features.Raw)
		}
	})
	t.Run("allowed domain", func(t *testing.T) {
		s.FromOutside(t, "remote.test").Send(harness.Message("bob@remote.test", "alice@a.test", "ok", "hi"))
		s.Internal.WaitID(t, "ok")
	})
	s.Relay.Logs.Wait(t, "stream closed with an error", "condition", "policy-violation", "face", "federation")
	s.Relay.WaitBalanced(t)
}

// TestWildcardRules: "*.bad.test" in policy.deny refuses every subdomain
// at any depth but not bad.test itself; a rule matching "*.limited.test"
// with kinds [message] lets only messages cross: an IQ get is answered
// not-allowed, presence is dropped silently.
func TestWildcardRules(t *testing.T) {
	s := harness.StartSite(t, `
policy:
  deny: ["*.bad.test"]
  rules:
    - {match: ["*.limited.test"], kinds: [message]}
`, "x.bad.test", "a.b.bad.test", "bad.test", "y.limited.test", "limited.test")
	for _, d := range []string{"x.bad.test", "a.b.bad.test"} {
		sc := harness.Dial(t, s.Relay.FederationAddr)
		var se *harness.StreamError
		if err := sc.Open(d, "a.test"); !errors.As(err, &se) || se.Condition != "policy-violation" {
			t.Errorf("stream from %s: %v, want policy-violation", d, err)
		}
	}
	s.FromOutside(t, "bad.test").Send(harness.Message("u@bad.test", "alice@a.test", "apex", "hi"))
	s.Internal.WaitID(t, "apex")

	out := s.FromInside(t, "y.limited.test")
	out.Send(harness.Message("alice@a.test", "u@y.limited.test", "lim-msg", "hi"))
	out.Send(harness.IQ("alice@a.test/phone", "u@y.limited.test", "lim-iq", "get"))
	out.Send(harness.Presence("alice@a.test/phone", "u@y.limited.test", "lim-pres", ""))
	s.Remote.WaitID(t, "lim-msg")
	expectError(t, s.Internal, "lim-iq", "iq", "cancel", "not-allowed")
	// The rule does not match limited.test itself: everything crosses.
	apex := s.FromInside(t, "limited.test")
	apex.Send(harness.Presence("alice@a.test/phone", "u@limited.test", "apex-pres", ""))
	s.Remote.WaitID(t, "apex-pres")
	harness.Eventually(t, func() bool { return s.Relay.Router.Stats().Dropped.Load() == 1 },
		"the presence to y.limited.test dropped (%s)", s.Relay.Stats())
	notReceived(t, s.Remote, "lim-iq", "lim-pres")
	s.Relay.WaitBalanced(t)
}

// TestRateLimit: a rule's rate and burst make a token bucket per remote
// domain and direction; stanzas beyond it are answered
// resource-constraint (wait).
func TestRateLimit(t *testing.T) {
	s := harness.StartSite(t, `
policy:
  rules:
    - {match: [remote.test], rate: 0.01, burst: 2}
`, "remote.test")
	in := s.FromOutside(t, "remote.test")
	for i := range 5 {
		in.Send(harness.Message("bob@remote.test", "alice@a.test", fmt.Sprintf("r%d", i), "hi"))
	}
	s.Internal.WaitID(t, "r0")
	s.Internal.WaitID(t, "r1")
	for _, id := range []string{"r2", "r3", "r4"} {
		expectError(t, s.Remote, id, "message", "wait", "resource-constraint")
	}
	notReceived(t, s.Internal, "r2", "r3", "r4")

	// The other direction has a bucket of its own.
	out := s.FromInside(t, "remote.test")
	out.Send(harness.Message("alice@a.test", "bob@remote.test", "o0", "hi"))
	out.Send(harness.Message("alice@a.test", "bob@remote.test", "o1", "hi"))
	out.Send(harness.Message("alice@a.test", "bob@remote.test", "o2", "hi"))
	s.Remote.WaitID(t, "o0")
	s.Remote.WaitID(t, "o1")
	expectError(t, s.Internal, "o2", "message", "wait", "resource-constraint")
	s.Relay.WaitBalanced(t)
}

// TestStanzaRefusals: the other refusals of policy.Stanza, with the
// condition and type of policy/doc.go's table: a rule's lower size limit
// (policy-violation, modify), an invalid IQ or presence type (bad-request,
// modify); refused stanzas that must not be answered (a headline, an IQ
// result, an error) are dropped.
func TestStanzaRefusals(t *testing.T) {
	s := harness.StartSite(t, `
policy:
  rules:
    - {match: [small.test], max_stanza_bytes: 1000}
`, "small.test")
	out := s.FromInside(t, "small.test")
	out.Send(harness.BigMessage("alice@a.test", "bob@small.test", "size-ok", 500))
	out.Send(harness.BigMessage("alice@a.test", "bob@small.test", "size-big", 2000))
	out.Send("<iq from='alice@a.test/phone' to='bob@small.test' id='bad-iq' type='bogus'><query xmlns='jabber:iq:version'/></iq>")
	out.Send("<presence from='alice@a.test/phone' to='bob@small.test' id='bad-pres' type='bogus'/>")
	dropped := []string{
		"<message from='alice@a.test' to='bob@small.test' id='big-headline' type='headline'><body>" + strings.Repeat("x", 2000) + "</body></message>",
		"<iq from='alice@a.test/phone' to='bob@small.test' id='big-result' type='result'><query xmlns='jabber:iq:version'><name>" + strings.Repeat("x", 2000) + "</name></query></iq>",
		"<message from='alice@a.test' to='bob@small.test' id='big-error' type='error'><body>" + strings.Repeat("x", 2000) + "</body><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
	}
	for _, st := range dropped {
		out.Send(st)
	}
	s.Remote.WaitID(t, "size-ok")
	expectError(t, s.Internal, "size-big", "message", "modify", "policy-violation")
	expectError(t, s.Internal, "bad-iq", "iq", "modify", "bad-request")
	expectError(t, s.Internal, "bad-pres", "presence", "modify", "bad-request")
	harness.Eventually(t, func() bool { return s.Relay.Router.Stats().Dropped.Load() == int64(len(dropped)) },
		"the refused headline, IQ result and error dropped (%s)", s.Relay.Stats())
	notReceived(t, s.Remote, "size-big", "bad-iq", "bad-pres", "big-headline", "big-result", "big-error")
	notReceived(t, s.Internal, "big-headline", "big-result", "big-error")
	s.Relay.WaitBalanced(t)
}
