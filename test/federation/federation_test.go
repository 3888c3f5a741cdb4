package federation_test

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/fedrelay/fedrelay/test/harness"
)

// world is two organisations, each behind its own relay: a.test's internal
// server behind relay A, b.test's behind relay B, federating over loopback
// with DNS from the test.
type world struct {
	dns    *harness.DNS
	A, B   *harness.Relay
	FA, FB *harness.FakeServer
}

// startWorld starts the DNS server, both internal servers and both relays;
// extraA and extraB are laid over each relay's configuration. publish
// registers each relay in DNS (SetSRV targets); nil publishes the
// federation face's STARTTLS address.
func startWorld(t *testing.T, extraA, extraB string, publish func(w *world)) *world {
	t.Helper()
	w := &world{dns: harness.StartDNS(t)}
	w.FA = harness.NewFakeServer(t, "internal a.test", "a.test")
	w.FB = harness.NewFakeServer(t, "internal b.test", "b.test")
	w.A = harness.StartRelay(t, relayConfig("a.test", w.FA.Addr, extraA), harness.WithDNS(w.dns), harness.WithName("relay A"))
	w.B = harness.StartRelay(t, relayConfig("b.test", w.FB.Addr, extraB), harness.WithDNS(w.dns), harness.WithName("relay B"))
	// Each internal server checks the keys of every remote domain with its
	// relay's internal face, which speaks for them all.
	w.FA.SetAuthoritative(w.A.InternalAddr)
	w.FB.SetAuthoritative(w.B.InternalAddr)
	if publish == nil {
		w.dns.SetSRV(t, "a.test", w.A.FederationAddr)
		w.dns.SetSRV(t, "b.test", w.B.FederationAddr)
	} else {
		publish(w)
	}
	return w
}

// relayConfig returns extra, with $ROUTE replaced by route, and with a
// domains list fronting domain at route unless extra has its own.
func relayConfig(domain, route, extra string) string {
	extra = strings.ReplaceAll(extra, "$ROUTE", fmt.Sprintf("%q", route))
	if strings.Contains(extra, "domains:") {
		return extra
	}
	return fmt.Sprintf("domains: [{name: %s, route: %q}]\n%s", domain, route, extra)
}

// roundTrip sends a message from alice@a.test to bob@b.test and bob's reply
// back, each through both relays, and checks that they arrive unchanged.
func (w *world) roundTrip(t *testing.T, tag string) {
	t.Helper()
	toB := w.FA.Dial(t, w.A.InternalAddr, "a.test", "b.test")
	msg := harness.Message("alice@a.test/phone", "bob@b.test", tag+"-1", "hello bob")
	toB.Send(msg)
	got := w.FB.WaitID(t, tag+"-1")
	if got.Raw != msg {
		t.Errorf("b.test received\n%s\nwant the bytes alice's server sent\n%s", got.Raw, msg)
	}

	toA := w.FB.Dial(t, w.B.InternalAddr, "b.test", "a.test")
	reply := harness.Message("bob@b.test/laptop", "alice@a.test/phone", tag+"-2", "hello alice")
	toA.Send(reply)
	if got := w.FA.WaitID(t, tag+"-2"); got.Raw != reply {
		t.Errorf("a.test received\n%s\nwant\n%s", got.Raw, reply)
	}
}

// TestTwoRelaysDialback: with self-signed certificates on both sides every
// hop authenticates by dialback, and each relay is the Authoritative server
// its peer relay asks.
func TestTwoRelaysDialback(t *testing.T) {
	w := startWorld(t, "", "", nil)
	w.roundTrip(t, "db")

	// B authenticated A's stream by dialback, asking A (found through DNS)
	// to verify the key; and the other way round.
	w.B.Logs.Wait(t, "peer authenticated by dialback", "face", "federation", "pair", "a.test→b.test")
	w.A.Logs.Wait(t, "peer authenticated by dialback", "face", "federation", "pair", "b.test→a.test")
	for _, r := range []*harness.Relay{w.A, w.B} {
		if r.Logs.Has("peer authenticated by SASL EXTERNAL") {
			t.Errorf("%s: SASL EXTERNAL with self-signed certificates", r.Name)
		}
	}
	harness.Balanced(t, w.A, w.B)
}

// TestTwoRelaysSASLExternal: with certificates from a CA both relays trust,
// the federation hops authenticate by SASL EXTERNAL (XEP-0178). Bidi is off:
// each direction has its stream (TestTwoRelaysBidi has them share one).
func TestTwoRelaysSASLExternal(t *testing.T) {
	ca := harness.NewCA(t)
	certA, keyA := ca.Issue(t, "a.test")
	certB, keyB := ca.Issue(t, "b.test")
	w := startWorld(t,
		fmt.Sprintf("domains: [{name: a.test, route: $ROUTE, cert_file: %q, key_file: %q}]\ntls: {ca_file: %q}\nfederation: {bidi: false}", certA, keyA, ca.File()),
		fmt.Sprintf("domains: [{name: b.test, route: $ROUTE, cert_file: %q, key_file: %q}]\ntls: {ca_file: %q}\nfederation: {bidi: false}", certB, keyB, ca.File()),
		nil)
	w.roundTrip(t, "sasl")
	w.B.Logs.Wait(t, "peer authenticated by SASL EXTERNAL", "face", "federation", "domain", "a.test")
	w.A.Logs.Wait(t, "peer authenticated by SASL EXTERNAL", "face", "federation", "domain", "b.test")
	for _, r := range []*harness.Relay{w.A, w.B} {
		if r.Logs.Has("peer authenticated by dialback", "face", "federation") {
			t.Errorf("%s: a federation peer authenticated by dialback although its certificate verifies", r.Name)
		}
	}
	harness.Balanced(t, w.A, w.B)
}

// TestTwoRelaysDirectTLS: the relays listen for direct TLS only
// (federation.listen_tls) and publish _xmpps-server records (XEP-0368), so
// every federation connection, verify connections included, starts with
// TLS.
func TestTwoRelaysDirectTLS(t *testing.T) {
	direct := "federation: {listen: [], listen_tls: [\"$TLS_IP:0\"]}"
	w := startWorld(t, direct, direct, func(w *world) {
		w.dns.SetSRV(t, "a.test", "tls://"+w.A.FederationTLSAddr)
		w.dns.SetSRV(t, "b.test", "tls://"+w.B.FederationTLSAddr)
	})
	if w.A.FederationAddr != "" || w.B.FederationAddr != "" {
		t.Fatalf("STARTTLS listeners although none configured: %q %q", w.A.FederationAddr, w.B.FederationAddr)
	}
	w.roundTrip(t, "dtls")
	_, portB, _ := net.SplitHostPort(w.B.FederationTLSAddr)
	rec := w.A.Logs.Wait(t, "outbound stream up", "face", "federation", "to", "b.test")
	if !strings.HasSuffix(rec.Attrs["addr"], ":"+portB) {
		t.Errorf("relay A reached b.test at %s, want B's direct TLS port %s", rec.Attrs["addr"], portB)
	}
	w.B.Logs.Wait(t, "peer authenticated by dialback", "face", "federation", "pair", "a.test→b.test")
	harness.Balanced(t, w.A, w.B)
}
