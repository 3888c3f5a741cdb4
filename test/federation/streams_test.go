package federation_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/test/harness"
)

// Authenticated streams get the limits and timeouts of authenticated
// streams (limits.max_stanza_bytes, limits.idle_timeout) however they
// authenticated, instead of those of negotiation (limits.max_preauth_bytes,
// limits.negotiation_timeout).

// saslWorld is two relays whose federation hops authenticate by SASL
// EXTERNAL, with the given limits on both.
func saslWorld(t *testing.T, limits string) *world {
	t.Helper()
	ca := harness.NewCA(t)
	certA, keyA := ca.Issue(t, "a.test")
	certB, keyB := ca.Issue(t, "b.test")
	cfg := func(domain, cert, key string) string {
		return fmt.Sprintf("domains: [{name: %s, route: $ROUTE, cert_file: %q, key_file: %q}]\ntls: {ca_file: %q}\n%s",
			domain, cert, key, ca.File(), limits)
	}
	return startWorld(t, cfg("a.test", certA, keyA), cfg("b.test", certB, keyB), nil)
}

// TestSASLExternalStanzaLimit: a stream authenticated by SASL EXTERNAL
// accepts stanzas up to limits.max_stanza_bytes.
//
// A regression test: a SASL-authenticated inbound stream used to keep the
// pre-auth limit for its whole life, so relay B closed relay A's stream
// with policy-violation at the first stanza over limits.max_preauth_bytes,
// and that stanza, already counted delivered by relay A, was lost; fixed
// in 332ee76.
func TestSASLExternalStanzaLimit(t *testing.T) {
	w := saslWorld(t, "limits: {max_preauth_bytes: 2048, max_stanza_bytes: 10000}")
	toB := w.FA.Dial(t, w.A.InternalAddr, "a.test", "b.test")
	// A small stanza first: the internal hop authenticates by dialback,
	// whose first stanza has a bug of its own (TestFirstStanzaAfterDialback).
	toB.Send(harness.Message("alice@a.test", "bob@b.test", "small", "hi"))
	waitDelivered(t, w.FB, "small", w.A, w.B)
	w.B.Logs.Wait(t, "peer authenticated by SASL EXTERNAL", "face", "federation", "domain", "a.test")
	toB.Send(harness.BigMessage("alice@a.test", "bob@b.test", "big", 5000))
	waitDelivered(t, w.FB, "big", w.A, w.B)
	harness.Balanced(t, w.A, w.B)
}

// TestSASLExternalStreamOutlivesNegotiation: a stream authenticated by
// SASL EXTERNAL stays open past limits.negotiation_timeout, until
// limits.idle_timeout; the next stanza uses it.
//
// A regression test: the negotiation deadline set when the connection was
// accepted used to stay in force on SASL-authenticated streams, so relay B
// closed relay A's working stream with connection-timeout
// limits.negotiation_timeout after it was opened; fixed in 332ee76.
func TestSASLExternalStreamOutlivesNegotiation(t *testing.T) {
	const negotiation = 1500 * time.Millisecond
	w := saslWorld(t, fmt.Sprintf("limits: {negotiation_timeout: %s, idle_timeout: 1m}", negotiation))
	toB := w.FA.Dial(t, w.A.InternalAddr, "a.test", "b.test")
	toB.Send(harness.Message("alice@a.test", "bob@b.test", "m1", "hi"))
	waitDelivered(t, w.FB, "m1", w.A, w.B)
	opened := time.Now()
	inbound := w.B.Server.Stats().InboundTotal.Load()

	// Nothing to observe but the absence of a close: wait past the
	// negotiation deadline.
	time.Sleep(negotiation + time.Second - time.Since(opened))
	if recs := w.B.Logs.Find("stream closed with an error"); len(recs) > 0 {
		t.Errorf("relay B closed a stream after it was authenticated: %s", recs[0])
	}
	toB.Send(harness.Message("alice@a.test", "bob@b.test", "m2", "hi"))
	w.FB.WaitID(t, "m2")
	if n := w.B.Server.Stats().InboundTotal.Load(); n != inbound {
		t.Errorf("relay B accepted %d new streams for the second message; want it on the first stream", n-inbound)
	}
	harness.Balanced(t, w.A, w.B)
}

// TestQuietAfterDialback: a stream authenticated by dialback whose peer
// says nothing for a while after the valid answer stays open past
// limits.negotiation_timeout.
//
// A regression test: the stream's owner is blocked in a read started under
// the negotiation deadline when dialback concludes on the verification
// goroutine; switching to the idle timeout for later reads only left that
// read's deadline in place, and the stream was closed with
// connection-timeout at the negotiation deadline; fixed in 332ee76.
func TestQuietAfterDialback(t *testing.T) {
	const negotiation = 1500 * time.Millisecond
	s := harness.StartSite(t, fmt.Sprintf("limits: {negotiation_timeout: %s, idle_timeout: 1m}", negotiation), "remote.test")
	opened := time.Now()
	sc := s.FromOutside(t, "remote.test")
	time.Sleep(negotiation + time.Second - time.Since(opened))
	if recs := s.Relay.Logs.Find("stream closed with an error"); len(recs) > 0 {
		t.Errorf("the relay closed a stream after it was authenticated: %s", recs[0])
	}
	sc.Send(harness.Message("bob@remote.test", "alice@a.test", "late", "hi"))
	waitDelivered(t, s.Internal, "late", s.Relay)
	s.Relay.WaitBalanced(t)
}
