package routing_test

import (
	"strings"
	"testing"

	"github.com/fedrelay/fedrelay/test/harness"
)

// TestStreamLimits (XEP-0478): the relay advertises its limits in its
// stream features — as max-bytes the size beyond which it closes a stream
// (16 MiB), not limits.max_stanza_bytes, since below it a larger stanza is
// bounced with an error and the stream goes on — and honours a peer's: a stanza larger than the
// max-bytes remote.test's server advertised is not sent (the peer would
// close the whole stream) but bounced to its sender with policy-violation
// (modify) naming both sizes, whether it was queued before the link came up
// or after; smaller ones pass, on the same link.
func TestStreamLimits(t *testing.T) {
	s := harness.StartSite(t, "limits: {max_stanza_bytes: 300000}", "remote.test")
	s.Remote.SetMaxBytes(10000)

	sc := harness.Dial(t, s.Relay.FederationAddr)
	if err := sc.Negotiate("remote.test", "a.test"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sc.Features.Raw, "<limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>16777216</max-bytes><idle-seconds>60</idle-seconds></limits>") {
		t.Errorf("features without the stream limits: %s", sc.Features.Raw)
	}

	out := s.FromInside(t, "remote.test")
	// Queued before the link is up: the big one among small ones.
	out.Send(harness.Message("alice@a.test", "bob@remote.test", "small-1", "hi") +
		harness.BigMessage("alice@a.test", "bob@remote.test", "big-1", 20000) +
		harness.Message("alice@a.test", "bob@remote.test", "small-2", "hi"))
	st := expectError(t, s.Internal, "big-1", "message", "modify", "policy-violation")
	if _, _, text := st.StanzaError(); !strings.Contains(text, "accepts at most 10000") {
		t.Errorf("bounce text %q, want the sizes", text)
	}
	s.Remote.WaitID(t, "small-1")
	s.Remote.WaitID(t, "small-2")
	// Once the link is up.
	out.Send(harness.BigMessage("alice@a.test", "bob@remote.test", "big-2", 20000))
	expectError(t, s.Internal, "big-2", "message", "modify", "policy-violation")
	out.Send(harness.Message("alice@a.test", "bob@remote.test", "small-3", "hi"))
	s.Remote.WaitID(t, "small-3")
	notReceived(t, s.Remote, "big-1", "big-2")
	if n := len(s.Remote.StreamErrors()); n != 0 {
		t.Errorf("the remote server closed streams: %v", s.Remote.StreamErrors())
	}
	s.Relay.WaitBalanced(t)
}
