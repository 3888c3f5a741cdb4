package routing_test

import (
	"testing"

	"github.com/fedrelay/fedrelay/test/harness"
)

// TestBothWays: messages, presence (broadcast, probe, directed) and IQs
// cross the relay in both directions, byte for byte.
func TestBothWays(t *testing.T) {
	s := harness.StartSite(t, "", "remote.test")
	out := s.FromInside(t, "remote.test")
	in := s.FromOutside(t, "remote.test")

	outbound := []string{
		harness.Message("alice@a.test/phone", "bob@remote.test", "o1", "hi bob"),
		harness.Presence("alice@a.test/phone", "bob@remote.test", "o2", ""),
		harness.Presence("alice@a.test", "bob@remote.test", "o3", "probe"),
		harness.Presence("alice@a.test/phone", "room@remote.test/alice", "o4", "unavailable"),
		harness.IQ("alice@a.test/phone", "bob@remote.test/laptop", "o5", "get"),
	}
	inbound := []string{
		harness.Message("bob@remote.test/laptop", "alice@a.test", "i1", "hi alice"),
		harness.Presence("bob@remote.test/laptop", "alice@a.test", "i2", ""),
		harness.Presence("bob@remote.test", "alice@a.test", "i3", "probe"),
		harness.IQ("bob@remote.test/laptop", "alice@a.test/phone", "o5", "result"),
	}
	for _, st := range outbound {
		out.Send(st)
	}
	for _, st := range inbound {
		in.Send(st)
	}
	for _, want := range outbound {
		el := parse(t, want)
		if got := s.Remote.Wait(t, el.ID, func(st harness.Stanza) bool { return st.ID == el.ID && st.From == el.From }); got.Raw != want {
			t.Errorf("remote.test received\n%s\nwant\n%s", got.Raw, want)
		}
	}
	for _, want := range inbound {
		el := parse(t, want)
		if got := s.Internal.Wait(t, el.ID, func(st harness.Stanza) bool { return st.ID == el.ID && st.From == el.From }); got.Raw != want {
			t.Errorf("a.test received\n%s\nwant\n%s", got.Raw, want)
		}
	}
	// Order is kept per direction (RFC 6120 §10.1).
	var order []string
	for _, st := range s.Remote.Stanzas() {
		order = append(order, st.ID)
	}
	if want := []string{"o1", "o2", "o3", "o4", "o5"}; !equal(order, want) {
		t.Errorf("remote.test received %v, want %v in order", order, want)
	}
	s.Relay.WaitBalanced(t)
	if d := s.Relay.Router.Stats().Delivered.Load(); d != int64(len(outbound)+len(inbound)) {
		t.Errorf("delivered %d, want %d (%s)", d, len(outbound)+len(inbound), s.Relay.Stats())
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
