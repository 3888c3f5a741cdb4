package routing_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/fedrelay/fedrelay/s2s"
	"github.com/fedrelay/fedrelay/test/harness"
)

// TestStreamManagementOutbound: on an outbound link whose peer offers
// XEP-0198, a stanza counts as delivered once the peer acknowledges it,
// and what a stream that dies leaves unacknowledged is sent again over a
// new stream: every stanza arrives, once.
//
// The peer first acknowledges 50 messages; then its connection stops
// getting anything through (Lose: what arrives is lost, requests go
// unanswered) while 50 more are written to it, and either the connection
// is cut or the relay gives up waiting for the acknowledgement
// (limits.ack_timeout). Without stream management the 50 would be counted
// delivered, and lost.
func TestStreamManagementOutbound(t *testing.T) {
	for _, tc := range []struct {
		name string
		cut  bool
	}{
		{"connection cut", true},
		{"acknowledgements stop", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := harness.StartSite(t, "limits: {ack_timeout: 1s}", "remote.test")
			s.Remote.SetStreamManagement(true)
			out := s.FromInside(t, "remote.test")
			send := func(from, to int) {
				var b strings.Builder
				for i := from; i < to; i++ {
					b.WriteString(harness.Message("alice@a.test", "bob@remote.test", fmt.Sprintf("m%d", i), "hi"))
				}
				out.Send(b.String())
			}
			stats := s.Relay.Router.Stats()
			send(0, 50)
			waitFor(t, "the first 50 acknowledged", func() bool { return stats.Acknowledged.Load() == 50 })
			if d := stats.Delivered.Load(); d != 50 {
				t.Errorf("delivered %d after 50 acknowledgements, want 50", d)
			}
			link := outboundLink(t, s.Relay, "remote.test")
			if !link.StreamManagement || link.Acknowledged != 50 {
				t.Errorf("the link says stream management %v, %d acknowledged; want true, 50", link.StreamManagement, link.Acknowledged)
			}

			s.Remote.Lose()
			send(50, 100)
			waitFor(t, "the next 50 written", func() bool { return outboundLink(t, s.Relay, "remote.test").StanzasOut == 100 })
			if a, d := stats.Acknowledged.Load(), stats.Delivered.Load(); a != 50 || d != 50 {
				t.Errorf("acknowledged %d, delivered %d with 50 written to a lost connection; want 50, 50", a, d)
			}
			if tc.cut {
				s.Remote.Cut()
			}
			for i := range 100 {
				s.Remote.WaitID(t, fmt.Sprintf("m%d", i))
			}
			waitFor(t, "all 100 acknowledged", func() bool { return stats.Acknowledged.Load() == 100 })
			for i := range 100 {
				id := fmt.Sprintf("m%d", i)
				if n := s.Remote.Count(func(st harness.Stanza) bool { return st.ID == id }); n != 1 {
					t.Errorf("%s received %d times, want once", id, n)
				}
			}
			if b := stats.Bounced.Load(); b != 0 {
				t.Errorf("%d bounced, want none", b)
			}
			s.Relay.WaitBalanced(t)
		})
	}
}

// outboundLink returns the relay's outbound link to remote.
func outboundLink(t *testing.T, r *harness.Relay, remote string) s2s.StreamInfo {
	t.Helper()
	for _, si := range r.Server.Streams() {
		if si.Direction == "out" && len(si.Remote) == 1 && si.Remote[0] == remote {
			return si
		}
	}
	return s2s.StreamInfo{}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !pollFor(harness.WaitTimeout, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// TestStreamManagementInbound: an inbound stream lets its peer enable
// XEP-0198 once authenticated and answers each acknowledgement request with
// the number of stanzas the relay has taken charge of; before authentication <enable/> fails, and a last count comes
// before the relay's closing tag.
func TestStreamManagementInbound(t *testing.T) {
	s := harness.StartSite(t, "", "remote.test")
	sc := harness.Dial(t, s.Relay.FederationAddr)
	if err := sc.Negotiate("remote.test", "a.test"); err != nil {
		t.Fatal(err)
	}
	expect := func(what, want string) {
		t.Helper()
		el, err := sc.Next()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !strings.Contains(el.Raw, want) {
			t.Fatalf("%s: got %s, want %s", what, el.Raw, want)
		}
	}
	sc.Send("<enable xmlns='urn:xmpp:sm:3'/>")
	expect("enable before authentication", "<failed xmlns='urn:xmpp:sm:3'><feature-not-implemented")
	if typ, _, err := sc.Dialback(s.Remote.Secret(), "remote.test", "a.test"); err != nil || typ.String() != "valid" {
		t.Fatalf("dialback: %v %v", typ, err)
	}
	sc.Send("<enable xmlns='urn:xmpp:sm:3'/>")
	expect("enable", "<enabled xmlns='urn:xmpp:sm:3'/>")
	sc.Send(harness.Message("bob@remote.test", "alice@a.test", "in-1", "hi") +
		harness.Message("bob@remote.test", "alice@a.test", "in-2", "hi") +
		harness.Message("bob@remote.test", "alice@a.test", "in-3", "hi") +
		"<r xmlns='urn:xmpp:sm:3'/>")
	expect("the count", "<a xmlns='urn:xmpp:sm:3' h='3'/>")
	s.Internal.WaitID(t, "in-1")
	s.Internal.WaitID(t, "in-2")
	s.Internal.WaitID(t, "in-3")
	sc.Send("<enable xmlns='urn:xmpp:sm:3'/>")
	expect("a second enable", "<failed xmlns='urn:xmpp:sm:3'><unexpected-request")
	sc.Send(harness.Message("bob@remote.test", "alice@a.test", "in-4", "hi") + "</stream:stream>")
	expect("the last count before the end", "<a xmlns='urn:xmpp:sm:3' h='4'/>")
	s.Internal.WaitID(t, "in-4")
	s.Relay.WaitBalanced(t)
}
