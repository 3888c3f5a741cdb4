package routing_test

import (
	"testing"

	"github.com/fedrelay/fedrelay/test/harness"
)

// TestPingToOurDomains: an XEP-0199 ping to a domain the relay speaks as on
// that face is answered by the relay (the ping tests the hop to it); a ping
// to a user is relayed like any IQ. Answers are not counted as accepted.
func TestPingToOurDomains(t *testing.T) {
	s := harness.StartSite(t, "", "remote.test")
	in := s.FromOutside(t, "remote.test")
	out := s.FromInside(t, "remote.test")
	const ping = "<ping xmlns='urn:xmpp:ping'/>"

	// Federation face: remote.test pings a.test.
	in.Send("<iq type='get' from='remote.test' to='a.test' id='p1'>" + ping + "</iq>")
	got := s.Remote.Wait(t, "p1", func(st harness.Stanza) bool { return st.ID == "p1" })
	if got.Raw != "<iq type='result' from='a.test' to='remote.test' id='p1'/>" {
		t.Errorf("remote.test received %s, want the relay's result", got.Raw)
	}
	// Internal face: a.test pings remote.test; the relay stands in for it.
	out.Send("<iq type='get' from='a.test' to='remote.test' id='p2'>" + ping + "</iq>")
	got = s.Internal.Wait(t, "p2", func(st harness.Stanza) bool { return st.ID == "p2" })
	if got.Raw != "<iq type='result' from='remote.test' to='a.test' id='p2'/>" {
		t.Errorf("a.test received %s, want the relay's result", got.Raw)
	}
	// A ping to a user is the user's server's business: relayed.
	userPing := "<iq type='get' from='alice@a.test/phone' to='bob@remote.test/laptop' id='p3'>" + ping + "</iq>"
	out.Send(userPing)
	if got := s.Remote.Wait(t, "p3", func(st harness.Stanza) bool { return st.ID == "p3" }); got.Raw != userPing {
		t.Errorf("remote.test received %s, want the ping relayed unchanged", got.Raw)
	}
	s.Relay.WaitBalanced(t)
	st := s.Relay.Router.Stats()
	if st.Answered.Load() != 2 || st.Accepted.Load() != 1 {
		t.Errorf("answered %d accepted %d, want 2 and 1 (%s)", st.Answered.Load(), st.Accepted.Load(), s.Relay.Stats())
	}
}
