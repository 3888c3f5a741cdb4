package routing_test

import (
	"fmt"
	"testing"

	"github.com/fedrelay/fedrelay/test/harness"
)

// TestHotReload: Relay.Reload with a policy that now denies remote.test
// closes every stream with it (inbound on both faces, the outbound links
// both ways)
// with policy-violation, and leaves the streams with keep.test open and
// working; new streams with remote.test are refused.
func TestHotReload(t *testing.T) {
	s := harness.StartSite(t, "", "remote.test", "keep.test")
	inRemote := s.FromOutside(t, "remote.test")
	inKeep := s.FromOutside(t, "keep.test")
	outRemote := s.FromInside(t, "remote.test")
	outKeep := s.FromInside(t, "keep.test")
	// Messages both ways bring up the relay's outbound links too.
	inRemote.Send(harness.Message("bob@remote.test", "alice@a.test", "r-in", "hi"))
	inKeep.Send(harness.Message("kim@keep.test", "alice@a.test", "k-in", "hi"))
	outRemote.Send(harness.Message("alice@a.test", "bob@remote.test", "r-out", "hi"))
	outKeep.Send(harness.Message("alice@a.test", "kim@keep.test", "k-out", "hi"))
	for _, id := range []string{"r-in", "k-in"} {
		s.Internal.WaitID(t, id)
	}
	for _, id := range []string{"r-out", "k-out"} {
		s.Remote.WaitID(t, id)
	}
	streams := s.Relay.Server.Stats().InboundTotal.Load()
	links := s.Relay.Server.Stats().OutboundTotal.Load()

	s.Relay.ReloadYAML(t, fmt.Sprintf("domains: [{name: a.test, route: %q}]\npolicy: {deny: [remote.test]}", s.Internal.Addr))
	s.Relay.Logs.Wait(t, "configuration reloaded")

	inRemote.ExpectStreamError("policy-violation")
	outRemote.ExpectStreamError("policy-violation")
	// The relay's links a.test → remote.test and remote.test → a.test, as
	// the remote and the internal server see them.
	s.Remote.WaitStreamError(t, "policy-violation")
	s.Internal.WaitStreamError(t, "policy-violation")

	inKeep.Send(harness.Message("kim@keep.test", "alice@a.test", "k-in-2", "hi"))
	outKeep.Send(harness.Message("alice@a.test", "kim@keep.test", "k-out-2", "hi"))
	s.Internal.WaitID(t, "k-in-2")
	s.Remote.WaitID(t, "k-out-2")
	if n := s.Relay.Server.Stats().InboundTotal.Load(); n != streams {
		t.Errorf("%d new inbound streams after the reload; keep.test's should have survived", n-streams)
	}
	if n := s.Relay.Server.Stats().OutboundTotal.Load(); n != links {
		t.Errorf("%d new outbound links after the reload; keep.test's should have survived", n-links)
	}
	for _, f := range []*harness.FakeServer{s.Remote, s.Internal} {
		if n := len(f.StreamErrors()); n != 1 {
			t.Errorf("%s's streams were closed with %v; want only the link for remote.test", f.Name, f.StreamErrors())
		}
	}

	// New streams with remote.test are refused from now on.
	sc := harness.Dial(t, s.Relay.FederationAddr)
	if err := sc.Open("remote.test", "a.test"); err == nil {
		t.Errorf("a new stream from remote.test was accepted after the reload: %s", sc.Features.Raw)
	}
	rec := s.Relay.Logs.Wait(t, "configuration reloaded")
	if rec.Attrs["closed_streams"] != "4" {
		t.Errorf("reload closed %s streams, want 4 (two inbound, two links)", rec.Attrs["closed_streams"])
	}
	s.Relay.WaitBalanced(t)
}
