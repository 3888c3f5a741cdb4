package routing_test

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/test/harness"
)

// plainServer is a server of the federation that offers no STARTTLS, only
// dialback: it answers the relay's stream header and records everything
// the relay sends after it.
type plainServer struct {
	addr string
	mu   sync.Mutex
	got  strings.Builder
}

func startPlainServer(t *testing.T, domain string) *plainServer {
	t.Helper()
	ln := harness.Listen(t)
	p := &plainServer{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c, domain)
		}
	}()
	return p
}

func (p *plainServer) serve(c net.Conn, domain string) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	// The relay's header ends at its first '>' after "<stream:stream".
	if _, err := r.ReadString('?'); err != nil { // <?xml ... ?>
		return
	}
	if _, err := r.ReadString('>'); err != nil {
		return
	}
	if _, err := r.ReadString('>'); err != nil {
		return
	}
	c.Write([]byte("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' " +
		"xmlns:db='jabber:server:dialback' from='" + domain + "' id='plain-1' version='1.0'>" +
		"<stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback></stream:features>"))
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		p.mu.Lock()
		p.got.Write(buf[:n])
		p.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (p *plainServer) received() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.got.String()
}

// TestPolicyBothWays drives each per-domain rule in each direction: the
// stream-level ones (require_tls, require_auth) refuse an inbound stream's
// pair and an outbound link alike, and the stanza-level ones (kinds,
// subscriptions, max_stanza_bytes, rate) refuse a stanza whichever way it
// goes. (Before, require_tls and require_auth were judged on inbound
// streams only: an outbound link to a domain "requiring" TLS or a verified
// certificate went out in clear text to whoever DNS named.)
func TestPolicyBothWays(t *testing.T) {
	const cfg = `
tls: {required: false}
limits: {max_streams_per_ip: 1000}
policy:
  rules:
    - {match: [tlsin.test, tlsout.test], require_tls: true}
    - {match: [auth.test], require_auth: [external]}
    - {match: [kinds.test], kinds: [message]}
    - {match: [subs.test], subscriptions: deny}
    - {match: [size.test], max_stanza_bytes: 4096}
    - {match: [rate.test], rate: 0.01, burst: 1}
`
	domains := []string{"tlsin.test", "auth.test", "kinds.test", "subs.test", "size.test", "rate.test"}
	s := harness.StartSite(t, cfg, domains...)
	plain := startPlainServer(t, "tlsout.test")
	s.DNS.SetSRV(t, "tlsout.test", plain.addr)

	in := map[string]*harness.Script{}
	out := map[string]*harness.Script{}
	fromOutside := func(d string) *harness.Script {
		if in[d] == nil {
			in[d] = s.FromOutside(t, d)
		}
		return in[d]
	}
	fromInside := func(d string) *harness.Script {
		if out[d] == nil {
			out[d] = s.FromInside(t, d)
		}
		return out[d]
	}
	// A stanza refused on its way: the sender's own server gets the error.
	refusedIn := func(t *testing.T, d, id, stanza, kind, typ, cond string) {
		fromOutside(d).Send(stanza)
		expectError(t, s.Remote, id, kind, typ, cond)
		notReceived(t, s.Internal, id)
	}
	refusedOut := func(t *testing.T, d, id, stanza, kind, typ, cond string) {
		fromInside(d).Send(stanza)
		expectError(t, s.Internal, id, kind, typ, cond)
		notReceived(t, s.Remote, id)
	}
	remote := func(d string) string { return "bob@" + d }

	for _, tc := range []struct {
		rule, dir string
		run       func(t *testing.T)
	}{
		{"require_tls", "in", func(t *testing.T) {
			sc := harness.Dial(t, s.Relay.FederationAddr)
			if err := sc.Open("tlsin.test", "a.test"); err != nil {
				t.Fatal(err)
			}
			typ, cond, err := sc.Dialback(s.Remote.Secret(), "tlsin.test", "a.test")
			if err != nil || typ != dialback.TypeError || cond != "policy-violation" {
				t.Errorf("dialback without TLS: %s %s %v, want error policy-violation", typ, cond, err)
			}
		}},
		{"require_tls", "out", func(t *testing.T) {
			fromInside("tlsout.test").Send(harness.Message("alice@a.test", "bob@tlsout.test", "tls-out", "hi"))
			st := expectError(t, s.Internal, "tls-out", "message", "wait", "remote-server-timeout")
			if _, _, text := st.StanzaError(); !strings.Contains(text, "not encrypted") {
				t.Errorf("bounce text %q, want one that says the stream is not encrypted", text)
			}
			if got := plain.received(); strings.Contains(got, "db:result") || strings.Contains(got, "tls-out") {
				t.Errorf("the relay spoke to a server it must not use: %q", got)
			}
		}},
		{"require_auth", "in", func(t *testing.T) {
			_, err := s.Remote.TryDial(t, s.Relay.FederationAddr, "auth.test", "a.test")
			if err == nil || !strings.Contains(err.Error(), "not-authorized") {
				t.Errorf("dialback-only auth.test: %v, want refused with not-authorized", err)
			}
		}},
		{"require_auth", "out", func(t *testing.T) {
			fromInside("auth.test").Send(harness.Message("alice@a.test", "bob@auth.test", "auth-out", "hi"))
			st := expectError(t, s.Internal, "auth-out", "message", "wait", "remote-server-timeout")
			if _, _, text := st.StanzaError(); !strings.Contains(text, "require_auth") {
				t.Errorf("bounce text %q, want the rule that refused", text)
			}
			notReceived(t, s.Remote, "auth-out")
		}},
		{"kinds", "in", func(t *testing.T) {
			refusedIn(t, "kinds.test", "kinds-in", harness.IQ(remote("kinds.test"), "alice@a.test", "kinds-in", "get"), "iq", "cancel", "not-allowed")
		}},
		{"kinds", "out", func(t *testing.T) {
			refusedOut(t, "kinds.test", "kinds-out", harness.IQ("alice@a.test", remote("kinds.test"), "kinds-out", "get"), "iq", "cancel", "not-allowed")
		}},
		{"subscriptions", "in", func(t *testing.T) {
			refusedIn(t, "subs.test", "subs-in", harness.Presence(remote("subs.test"), "alice@a.test", "subs-in", "subscribe"), "presence", "cancel", "not-allowed")
		}},
		{"subscriptions", "out", func(t *testing.T) {
			refusedOut(t, "subs.test", "subs-out", harness.Presence("alice@a.test", remote("subs.test"), "subs-out", "subscribe"), "presence", "cancel", "not-allowed")
		}},
		{"max_stanza_bytes", "in", func(t *testing.T) {
			refusedIn(t, "size.test", "size-in", harness.BigMessage(remote("size.test"), "alice@a.test", "size-in", 8192), "message", "modify", "policy-violation")
		}},
		{"max_stanza_bytes", "out", func(t *testing.T) {
			refusedOut(t, "size.test", "size-out", harness.BigMessage("alice@a.test", remote("size.test"), "size-out", 8192), "message", "modify", "policy-violation")
		}},
		{"rate", "in", func(t *testing.T) {
			fromOutside("rate.test").Send(harness.Message(remote("rate.test"), "alice@a.test", "rate-in-1", "hi"))
			s.Internal.WaitID(t, "rate-in-1")
			refusedIn(t, "rate.test", "rate-in-2", harness.Message(remote("rate.test"), "alice@a.test", "rate-in-2", "hi"), "message", "wait", "resource-constraint")
		}},
		{"rate", "out", func(t *testing.T) {
			fromInside("rate.test").Send(harness.Message("alice@a.test", remote("rate.test"), "rate-out-1", "hi"))
			s.Remote.WaitID(t, "rate-out-1")
			refusedOut(t, "rate.test", "rate-out-2", harness.Message("alice@a.test", remote("rate.test"), "rate-out-2", "hi"), "message", "wait", "resource-constraint")
		}},
	} {
		t.Run(tc.rule+" "+tc.dir, tc.run)
	}
	s.Relay.WaitBalanced(t)
}
