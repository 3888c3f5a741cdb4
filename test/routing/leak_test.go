package routing_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/test/harness"
)

// TestNothingInternalInBounces: when a.test's internal server cannot be
// reached, a sender in the federation gets remote-server-timeout with a
// text that names nothing inside the organisation (before, it carried the
// internal route: "connect a.test: 127.…:5269 (starttls): dial tcp …:
// connection refused"); the relay's own record of the bounce (logs,
// OnBounce) keeps the detail.
func TestNothingInternalInBounces(t *testing.T) {
	route := harness.ClosedAddr(t)
	s := harness.StartSite(t, fmt.Sprintf("domains: [{name: a.test, route: %q}]\nlimits: {route_retry: 0s}", route), "remote.test")
	in := s.FromOutside(t, "remote.test")
	in.Send(harness.Message("bob@remote.test", "alice@a.test", "in-1", "hi"))
	st := expectError(t, s.Remote, "in-1", "message", "wait", "remote-server-timeout")
	_, _, text := st.StanzaError()
	host, port, _ := strings.Cut(route, ":")
	for _, secret := range []string{route, host, ":" + port, "dial", "connect", "refused"} {
		if strings.Contains(st.Raw, secret) {
			t.Errorf("the bounce to the federation names %q: %s", secret, st.Raw)
		}
	}
	if !strings.Contains(text, "a.test") {
		t.Errorf("bounce text %q, want one that says a.test's server cannot be reached", text)
	}
	if b := s.Relay.WaitBounce(t, "in-1"); !strings.Contains(b.Text, host) {
		t.Errorf("the relay's own record of the bounce lost the detail: %q", b.Text)
	}
	s.Relay.WaitBalanced(t)
}

// TestRefusalNamesNoRule: a stream refused by policy learns its condition;
// a peer in the federation is not told which rule refused it (the audit
// trail is), the organisation's own server is.
func TestRefusalNamesNoRule(t *testing.T) {
	s := harness.StartSite(t, "policy: {deny: [evil.test]}", "remote.test", "evil.test")
	for _, face := range []struct {
		name, addr, from, to string
		wantRule             bool
	}{
		{"federation", s.Relay.FederationAddr, "evil.test", "a.test", false},
		{"internal", s.Relay.InternalAddr, "a.test", "evil.test", true},
	} {
		sc := harness.Dial(t, face.addr)
		var se *harness.StreamError
		if err := sc.Open(face.from, face.to); !errors.As(err, &se) || se.Condition != "policy-violation" {
			t.Fatalf("%s face: %v, want policy-violation", face.name, err)
		}
		if got := strings.Contains(se.Raw, "deny["); got != face.wantRule {
			t.Errorf("%s face: the stream error names the rule: %v, want %v (%s)", face.name, got, face.wantRule, se.Raw)
		}
	}
	s.Relay.WaitBalanced(t)
}

// TestNoIPLiteralDomains: a db:result from an IP-literal domain is refused
// at once, and a stream from inside to an IP-literal domain is refused,
// without the relay resolving or connecting anywhere (before, it looked
// the address up and dialled it: a stranger's db:result could make it
// connect to a service inside the organisation's network).
func TestNoIPLiteralDomains(t *testing.T) {
	const ip = "127.0.10.9"
	s := harness.StartSite(t, "", "remote.test")
	in := s.FromOutside(t, "remote.test")
	if typ, cond, err := in.DialbackKey(ip, "a.test", strings.Repeat("0", 64)); err != nil || typ != dialback.TypeError {
		t.Errorf("db:result from %s: %v %s %v, want type error", ip, typ, cond, err)
	}
	if !s.Relay.Logs.Has("dialback refused: sender domain not accepted on this face", "sender", ip) {
		t.Errorf("the db:result from %s was not refused as such (was its key sent for verification?)", ip)
	}
	if _, err := s.Internal.TryDial(t, s.Relay.InternalAddr, "a.test", ip); err == nil {
		t.Errorf("a stream from inside to %s was accepted", ip)
	}
	time.Sleep(200 * time.Millisecond)
	for _, name := range []string{"_xmpp-server._tcp." + ip + ".", "_xmpps-server._tcp." + ip + "."} {
		if n := s.DNS.Server().Count(name, dns.TypeSRV); n != 0 {
			t.Errorf("the relay looked %s up %d times", name, n)
		}
	}
	s.Relay.WaitBalanced(t)
}

// TestNoPrivateAddressesFromDNS: a remote domain whose SRV record (public
// DNS) points at a loopback address is not dialled: its stanzas bounce
// with remote-server-timeout (before, the relay connected wherever DNS
// said: a public record could send it into the organisation's network).
// dns.allow_private lets an operator name the prefixes that are fine.
func TestNoPrivateAddressesFromDNS(t *testing.T) {
	target := harness.StartProxy(t, harness.ClosedAddr(t))
	s := harness.StartSite(t, "dns: {allow_private: []}", "remote.test")
	s.DNS.SetSRV(t, "sneaky.test", target.Addr)
	out := s.FromInside(t, "sneaky.test")
	out.Send(harness.Message("alice@a.test", "x@sneaky.test", "p-1", "hi"))
	st := expectError(t, s.Internal, "p-1", "message", "wait", "remote-server-timeout")
	if n := target.Accepted(); n != 0 {
		t.Errorf("the relay connected %d times to %s, a loopback address from DNS", n, target.Addr)
	}
	if _, _, text := st.StanzaError(); !strings.Contains(text, "allow_private") {
		t.Errorf("bounce text %q does not say why (dns.allow_private)", text)
	}
	s.Relay.WaitBalanced(t)
}

// TestInternalFaceNeedsTheRoute: on the internal face a certificate for the
// internal domain a.test, from a CA the relay trusts, is not enough: SASL
// EXTERNAL is neither offered nor accepted, and the peer must use dialback,
// which the relay checks with a.test's configured route. (Before, any
// CA-valid certificate for a.test passed, and its stanzas went out.)
func TestInternalFaceNeedsTheRoute(t *testing.T) {
	ca := harness.NewCA(t)
	certFile, keyFile := ca.Issue(t, "a.test")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	s := harness.StartSite(t, fmt.Sprintf("tls: {ca_file: %q}", ca.File()), "remote.test")
	sc := harness.Dial(t, s.Relay.InternalAddr)
	if err := sc.Open("a.test", "remote.test"); err != nil {
		t.Fatal(err)
	}
	if err := sc.StartTLSWith("a.test", "remote.test", &cert); err != nil {
		t.Fatal(err)
	}
	if sc.Offers("mechanisms") && strings.Contains(sc.Features.Raw, "EXTERNAL") {
		t.Errorf("SASL EXTERNAL offered on the internal face for a CA-valid certificate: %s", sc.Features.Raw)
	}
	sc.Send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>YS50ZXN0</auth>")
	el, err := sc.Next()
	if err != nil {
		t.Fatalf("after <auth/>: %v", err)
	}
	if el.Name == "success" {
		t.Fatalf("SASL EXTERNAL accepted on the internal face for a.test: %s", el.Raw)
	}
	s.Relay.WaitBalanced(t)
}

// TestExplain: policy.explain decides what a refusal tells the federation:
// the condition alone (none), a sentence without the rule (brief, the
// default), or the sentence and the rule (full); the organisation's own
// senders get the rule whatever it says.
func TestExplain(t *testing.T) {
	for _, tc := range []struct {
		explain        string
		text, wantRule bool
	}{{"none", false, false}, {"brief", true, false}, {"full", true, true}} {
		t.Run(tc.explain, func(t *testing.T) {
			s := harness.StartSite(t, fmt.Sprintf("policy: {explain: %s, deny: [evil.test], rules: [{match: [remote.test], kinds: [message]}]}", tc.explain),
				"remote.test", "evil.test")
			sc := harness.Dial(t, s.Relay.FederationAddr)
			var se *harness.StreamError
			if err := sc.Open("evil.test", "a.test"); !errors.As(err, &se) || se.Condition != "policy-violation" {
				t.Fatalf("%v, want policy-violation", err)
			}
			if got := strings.Contains(se.Raw, "<text"); got != tc.text {
				t.Errorf("stream error has a text: %v, want %v (%s)", got, tc.text, se.Raw)
			}
			if got := strings.Contains(se.Raw, "deny[0]"); got != tc.wantRule {
				t.Errorf("stream error names the rule: %v, want %v (%s)", got, tc.wantRule, se.Raw)
			}
			in := s.FromOutside(t, "remote.test")
			in.Send(harness.IQ("bob@remote.test", "alice@a.test", "iq-1", "get"))
			st := expectError(t, s.Remote, "iq-1", "iq", "cancel", "not-allowed")
			_, _, text := st.StanzaError()
			if (text != "") != tc.text || strings.Contains(text, "rules[0]") != tc.wantRule {
				t.Errorf("bounce text %q with explain %s", text, tc.explain)
			}
			out := s.FromInside(t, "remote.test")
			out.Send(harness.IQ("alice@a.test", "bob@remote.test", "iq-2", "get"))
			st = expectError(t, s.Internal, "iq-2", "iq", "cancel", "not-allowed")
			if _, _, text := st.StanzaError(); !strings.Contains(text, "rules[0].kinds") {
				t.Errorf("bounce text to the internal sender %q, want the rule", text)
			}
			s.Relay.WaitBalanced(t)
		})
	}
}
