package routing_test

import (
	"errors"
	"testing"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/test/harness"
)

// TestNotAnOpenRelay: the federation face carries only remote → internal,
// the internal face only internal → remote (ARCHITECTURE.md). Every other
// attempt ends with the stream error RFC 6120 §4.9.3 names: host-unknown
// for a 'to' the face does not serve, invalid-from for a 'from' that may
// not be authenticated there or is not authenticated on the stream.
func TestNotAnOpenRelay(t *testing.T) {
	s := harness.StartSite(t, "", "remote.test", "remote2.test")
	header := func(t *testing.T, addr, from, to, want string) {
		t.Helper()
		sc := harness.Dial(t, addr)
		err := sc.Open(from, to)
		var se *harness.StreamError
		if !errors.As(err, &se) || se.Condition != want {
			t.Errorf("header %s→%s: %v (features %s), want %s", from, to, err, sc.Features.Raw, want)
		}
	}
	t.Run("federation: header to a remote domain", func(t *testing.T) {
		header(t, s.Relay.FederationAddr, "remote.test", "remote2.test", "host-unknown")
	})
	t.Run("federation: header from an internal domain", func(t *testing.T) {
		header(t, s.Relay.FederationAddr, "a.test", "a.test", "invalid-from")
	})
	t.Run("federation: stanza to a remote domain", func(t *testing.T) {
		sc := s.FromOutside(t, "remote.test")
		sc.Send(harness.Message("bob@remote.test", "carol@remote2.test", "relay-1", "hi"))
		sc.ExpectStreamError("host-unknown")
	})
	t.Run("federation: dialback for a remote target", func(t *testing.T) {
		sc := s.FromOutside(t, "remote.test")
		typ, cond, err := sc.Dialback(s.Remote.Secret(), "remote.test", "remote2.test")
		if err != nil || typ != dialback.TypeError || cond != "item-not-found" {
			t.Errorf("db:result remote.test→remote2.test: %s %s %v, want error item-not-found", typ, cond, err)
		}
	})
	t.Run("internal: header from a remote domain", func(t *testing.T) {
		header(t, s.Relay.InternalAddr, "remote.test", "remote2.test", "invalid-from")
	})
	t.Run("internal: header to an internal domain", func(t *testing.T) {
		header(t, s.Relay.InternalAddr, "a.test", "a.test", "host-unknown")
	})
	t.Run("internal: stanza from a remote domain", func(t *testing.T) {
		sc := s.FromInside(t, "remote.test")
		sc.Send(harness.Message("carol@remote2.test", "bob@remote.test", "relay-2", "hi"))
		sc.ExpectStreamError("invalid-from")
	})
	t.Run("internal: stanza to an internal domain", func(t *testing.T) {
		sc := s.FromInside(t, "remote.test")
		sc.Send(harness.Message("alice@a.test", "alice@a.test", "relay-3", "hi"))
		sc.ExpectStreamError("host-unknown")
	})
	notReceived(t, s.Remote, "relay-1", "relay-2", "relay-3")
	notReceived(t, s.Internal, "relay-1", "relay-2", "relay-3")
	if a := s.Relay.Router.Stats().Accepted.Load(); a != 0 {
		t.Errorf("the router accepted %d stanzas from refused streams", a)
	}
	s.Relay.WaitBalanced(t)
}
