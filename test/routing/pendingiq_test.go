package routing_test

import (
	"testing"

	"github.com/fedrelay/fedrelay/test/harness"
)

// TestPendingIQOnDeadLink: IQ requests written on a link whose stream then
// dies unanswered get a remote-server-timeout error (RFC 6120 §8.2.3: a
// request always gets a result or an error); answered ones get nothing more.
func TestPendingIQOnDeadLink(t *testing.T) {
	s := harness.StartSite(t, "", "remote.test")
	out := s.FromInside(t, "remote.test")
	in := s.FromOutside(t, "remote.test")

	out.Send(harness.IQ("alice@a.test/phone", "bob@remote.test/laptop", "q1", "get"))
	s.Remote.WaitID(t, "q1")
	in.Send(harness.IQ("bob@remote.test/laptop", "alice@a.test/phone", "q1", "result"))
	s.Internal.Wait(t, "the answer to q1", func(st harness.Stanza) bool { return st.ID == "q1" && st.Type == "result" })

	out.Send(harness.IQ("alice@a.test/phone", "bob@remote.test/laptop", "q2", "get"))
	s.Remote.WaitID(t, "q2")
	s.Remote.Close() // remote.test goes away without answering q2

	got := s.Internal.Wait(t, "an error for q2", func(st harness.Stanza) bool { return st.ID == "q2" })
	if typ, cond, _ := got.StanzaError(); got.Type != "error" || typ != "wait" || cond != "remote-server-timeout" {
		t.Errorf("a.test received %s, want a remote-server-timeout error", got.Raw)
	}
	if got.From != "bob@remote.test/laptop" || got.To != "alice@a.test/phone" {
		t.Errorf("error from %q to %q, want the request's addresses swapped", got.From, got.To)
	}
	if n := s.Internal.Count(func(st harness.Stanza) bool { return st.ID == "q1" }); n != 1 {
		t.Errorf("a.test received %d stanzas for the answered q1, want only its result", n)
	}
	s.Relay.WaitBalanced(t)
	if n := s.Relay.Router.Stats().PendingIQErrors.Load(); n != 1 {
		t.Errorf("PendingIQErrors = %d, want 1", n)
	}
}
