package routing_test

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/test/harness"
)

// TestVerificationCaps: one stream sends 100 db:result for 100 different
// sender domains at once, whose Authoritative servers never answer. The
// relay dials at most limits.verifications_per_stream of them and looks
// up no more; the rest are answered at once with type='error'
// (resource-constraint). (Before, each unauthenticated stream kept 64
// verifications in flight: 100 such streams made 6,376 connections.)
func TestVerificationCaps(t *testing.T) {
	const n, perStream = 100, 4
	silent := harness.StartProxy(t, harness.ClosedAddr(t))
	silent.SetMode(harness.Stall)
	s := harness.StartSite(t, fmt.Sprintf("limits: {verifications_per_stream: %d}", perStream), "remote.test")
	domains := make([]string, n)
	for i := range domains {
		domains[i] = fmt.Sprintf("v%d.test", i)
		s.DNS.SetSRV(t, domains[i], silent.Addr)
	}
	in := s.FromOutside(t, "remote.test")
	var batch strings.Builder
	for _, d := range domains {
		req := dialback.Element{Kind: dialback.KindResult, From: d, To: "a.test", Key: dialback.Key(strings.Repeat("0", 64))}
		batch.Write(req.Append(nil))
	}
	in.Send(batch.String())

	// Every request refused at once comes back as an error.
	errorsSeen := 0
	deadline := time.Now().Add(10 * time.Second)
	for errorsSeen < n-perStream && time.Now().Before(deadline) {
		el, err := in.Next()
		if err != nil {
			t.Fatalf("after %d answers: %v", errorsSeen, err)
		}
		if strings.Contains(el.Raw, "type='error'") && strings.Contains(el.Raw, "resource-constraint") {
			errorsSeen++
		}
	}
	if errorsSeen < n-perStream {
		t.Errorf("%d requests answered resource-constraint, want %d", errorsSeen, n-perStream)
	}
	time.Sleep(200 * time.Millisecond)
	looked := 0
	for _, d := range domains {
		if s.DNS.Server().Count("_xmpp-server._tcp."+d+".", dns.TypeSRV) > 0 {
			looked++
		}
	}
	t.Logf("%d of %d sender domains looked up, %d connections to their servers", looked, n, silent.Accepted())
	if looked > perStream || silent.Accepted() > perStream {
		t.Errorf("%d domains looked up and %d connections for one stream, want at most limits.verifications_per_stream (%d)",
			looked, silent.Accepted(), perStream)
	}
}

// TestFaceBudgets: the federation face is full of idle connections that
// never authenticate (limits.max_streams of them), yet the organisation's
// servers still connect to the internal face, which has its own budget,
// and new federation streams still get through: each new connection closes
// the oldest one that has not authenticated. (Before, both faces shared
// one budget and a full one refused every new connection: 100 addresses
// holding 10,000 connections kept the internal servers from sending out.)
func TestFaceBudgets(t *testing.T) {
	const budget = 5
	s := harness.StartSite(t, fmt.Sprintf("limits: {max_streams: %d, max_streams_per_ip: %d}", budget, budget), "remote.test")
	idle := make([]net.Conn, budget)
	// The flood comes from an address of its own, as a flood does.
	flooder := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(harness.NextIP())}}
	for i := range idle {
		c, err := flooder.Dial("tcp", s.Relay.FederationAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle[i] = c
	}
	harness.Eventually(t, func() bool { return s.Relay.Server.Stats().InboundOpen.Load() == budget }, "the federation face full")

	// Out through the internal face: the remote server's db:verify comes
	// back to the full federation face, and gets in.
	out := s.FromInside(t, "remote.test")
	out.Send(harness.Message("alice@a.test", "bob@remote.test", "out-1", "still out?"))
	s.Remote.WaitID(t, "out-1")
	// In from the federation: a new stream gets through too.
	s.FromOutside(t, "remote.test").Send(harness.Message("bob@remote.test", "alice@a.test", "in-1", "still in?"))
	s.Internal.WaitID(t, "in-1")

	// The oldest idle connections made room.
	idle[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(idle[0]); err != nil {
		t.Errorf("the oldest idle connection: %v, want closed by the relay", err)
	}
	if n := s.Relay.Server.Stats().InboundEvicted.Load(); n == 0 {
		t.Errorf("no connection evicted")
	}
	s.Relay.WaitBalanced(t)
}

// TestConnectRate: one address may open limits.connect_burst_per_ip new
// federation connections at once, then limits.connect_rate_per_ip a
// second; beyond, a connection is closed at once, before a byte is read.
// Another address is not affected.
func TestConnectRate(t *testing.T) {
	const burst = 3
	s := harness.StartSite(t, fmt.Sprintf("limits: {connect_rate_per_ip: 0.1, connect_burst_per_ip: %d}", burst), "remote.test")
	from := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(harness.NextIP())}}
	closed := 0
	for range burst + 2 {
		c, err := from.Dial("tcp", s.Relay.FederationAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF {
			closed++
		}
	}
	if closed != 2 {
		t.Errorf("%d of %d connections closed at once, want the 2 beyond the burst of %d", closed, burst+2, burst)
	}
	// The rest of the world still gets in.
	s.FromOutside(t, "remote.test").Send(harness.Message("bob@remote.test", "alice@a.test", "ok-1", "hi"))
	s.Internal.WaitID(t, "ok-1")
}

// TestLinkCaps: outbound streams to remote domains are bounded in number
// (limits.max_links) and in how fast they start (limits.link_rate,
// link_burst): a stanza that would need one more bounces at once with
// resource-constraint, and nothing is dialled for it.
func TestLinkCaps(t *testing.T) {
	for _, tc := range []struct{ name, limits string }{
		{"max_links", "limits: {max_links: 2}"},
		{"link_rate", "limits: {link_rate: 0.001, link_burst: 2}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := harness.StartSite(t, tc.limits, "r1.test", "r2.test", "r3.test")
			for i, r := range []string{"r1.test", "r2.test", "r3.test"} {
				id := fmt.Sprintf("c-%d", i)
				s.FromInside(t, r).Send(harness.Message("alice@a.test", "bob@"+r, id, "hi"))
				if i < 2 {
					s.Remote.WaitID(t, id)
					continue
				}
				expectError(t, s.Internal, id, "message", "wait", "resource-constraint")
			}
			if n := s.Relay.Server.Stats().LinksRefused.Load(); n != 1 {
				t.Errorf("LinksRefused = %d, want 1", n)
			}
			s.Relay.WaitBalanced(t)
		})
	}
}

// TestDomainLinkRate: twenty strangers' streams each ask the relay to
// verify a key of victim.test, whose server never answers. The relay opens
// at most limits.link_burst_per_domain connections to it (and its token
// bucket refills slowly); the other requests are answered at once with
// resource-constraint. (Before, only the relay-wide caps applied: a crowd
// of streams could aim all of the relay's verifications at one victim.)
func TestDomainLinkRate(t *testing.T) {
	const streams, burst = 20, 5
	victim := harness.StartProxy(t, harness.ClosedAddr(t))
	victim.SetMode(harness.Stall)
	s := harness.StartSite(t, fmt.Sprintf("limits: {link_rate_per_domain: 0.001, link_burst_per_domain: %d, max_streams_per_ip: 1000, verifications_per_ip: 1000}", burst), "remote.test")
	s.DNS.SetSRV(t, "victim.test", victim.Addr)
	refused := make(chan bool, streams)
	for range streams {
		go func() {
			sc := harness.Dial(t, s.Relay.FederationAddr)
			if err := sc.Negotiate("victim.test", "a.test"); err != nil {
				refused <- false
				return
			}
			typ, cond, err := sc.DialbackKey("victim.test", "a.test", strings.Repeat("0", 64))
			refused <- err == nil && typ == dialback.TypeError && cond == "resource-constraint"
		}()
	}
	n := 0
	for range streams - burst {
		select {
		case r := <-refused:
			if r {
				n++
			}
		case <-time.After(10 * time.Second):
		}
	}
	if n < streams-burst {
		t.Errorf("%d requests answered resource-constraint at once, want %d", n, streams-burst)
	}
	time.Sleep(200 * time.Millisecond)
	if got := victim.Accepted(); got > burst {
		t.Errorf("%d connections to victim.test, want at most limits.link_burst_per_domain (%d)", got, burst)
	}
}

// TestPreauthTimeout: a connection to the federation face that does not
// get as far as a dialback verification within limits.preauth_timeout is
// closed, well before limits.negotiation_timeout; one whose verification
// is in flight is not. (Before, every stranger could hold a connection for
// the whole negotiation timeout, 30 s by default.)
func TestPreauthTimeout(t *testing.T) {
	silent := harness.StartProxy(t, harness.ClosedAddr(t))
	silent.SetMode(harness.Stall)
	s := harness.StartSite(t, "limits: {preauth_timeout: 1s, negotiation_timeout: 20s, connect_timeout: 20s}", "remote.test")
	s.DNS.SetSRV(t, "slow.test", silent.Addr)

	idle := harness.Dial(t, s.Relay.FederationAddr)
	if err := idle.Negotiate("remote.test", "a.test"); err != nil {
		t.Fatal(err)
	}
	verifying := harness.Dial(t, s.Relay.FederationAddr)
	if err := verifying.Negotiate("slow.test", "a.test"); err != nil {
		t.Fatal(err)
	}
	verifying.Send(string((&dialback.Element{Kind: dialback.KindResult, From: "slow.test", To: "a.test", Key: dialback.Key(strings.Repeat("0", 64))}).Append(nil)))
	harness.Eventually(t, func() bool { return silent.Accepted() > 0 }, "the verification of slow.test under way")

	start := time.Now()
	cond, _, err := idle.StreamError()
	if err != nil || cond != "connection-timeout" {
		t.Errorf("idle stranger: %q %v, want connection-timeout", cond, err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("idle stranger closed after %v, want about limits.preauth_timeout (1s)", took)
	}
	verifying.ExpectOpen(2 * time.Second)
}
