package routing_test

import (
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/test/harness"
)

// TestPendingIQAnswerInOtherCase: an IQ request gets exactly one answer
// when the answer's addresses are written in another case than the
// request's (RFC 7622: localpart and domainpart compare case-insensitively),
// even after the link it was written on dies: the result clears the
// request, so no remote-server-timeout error follows it.
func TestPendingIQAnswerInOtherCase(t *testing.T) {
	s := harness.StartSite(t, "", "remote.test")
	out := s.FromInside(t, "remote.test")
	in := s.FromOutside(t, "remote.test")

	// The request names its addressee in mixed case, the answer comes from
	// the lower-case form; the second answer is addressed to the requester
	// in another case than it wrote.
	out.Send(harness.IQ("alice@a.test/phone", "Bob@Remote.TEST/laptop", "case-1", "get"))
	out.Send(harness.IQ("Alice@A.test/phone", "bob@remote.test/laptop", "case-2", "set"))
	s.Remote.WaitID(t, "case-1")
	s.Remote.WaitID(t, "case-2")
	in.Send(harness.IQ("bob@remote.test/laptop", "alice@a.test/phone", "case-1", "result"))
	in.Send(harness.IQ("bob@remote.test/laptop", "alice@A.TEST/phone", "case-2", "result"))
	for _, id := range []string{"case-1", "case-2"} {
		s.Internal.Wait(t, "the answer to "+id, func(st harness.Stanza) bool { return st.ID == id && st.Type == "result" })
	}

	// A request left unanswered when the link dies witnesses that the
	// relay has handled the link's death: its error comes from the same
	// pass over the link's pending requests as any error for case-1 or
	// case-2 would.
	out.Send(harness.IQ("alice@a.test/phone", "bob@remote.test/laptop", "witness", "get"))
	s.Remote.WaitID(t, "witness")
	s.Remote.Close()
	expectError(t, s.Internal, "witness", "iq", "wait", "remote-server-timeout")
	s.Relay.WaitBalanced(t)

	// The errors of one pass are routed one after the other, in no set
	// order; one for case-1 or case-2 routed after the witness's would
	// reach a.test within moments.
	deadline := time.Now().Add(500 * time.Millisecond)
	for {
		for _, id := range []string{"case-1", "case-2"} {
			if n := s.Internal.Count(func(st harness.Stanza) bool { return st.ID == id }); n != 1 {
				t.Fatalf("a.test received %d stanzas for %s, want only its result:\n%v", n, id, s.Internal.Stanzas())
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := s.Relay.Router.Stats().PendingIQErrors.Load(); n != 1 {
		t.Errorf("PendingIQErrors = %d, want 1 (the witness)", n)
	}
}
