package federation_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/s2s/wire"
	"github.com/fedrelay/fedrelay/test/harness"
)

// Negative cases against a relay's federation face: a peer that breaks
// S2S rules gets the exact stream error RFC 6120 §4.9 (and XEP-0220)
// prescribe, and nothing it sends reaches the internal server.

// secured opens a stream from remote.test to a.test on the federation face
// and negotiates STARTTLS, without authenticating.
func secured(t *testing.T, s *harness.Site) *harness.Script {
	t.Helper()
	sc := harness.Dial(t, s.Relay.FederationAddr)
	if err := sc.Negotiate("remote.test", "a.test"); err != nil {
		t.Fatalf("negotiate: %v", err)
	}
	if !sc.TLS {
		t.Fatalf("the federation face offered no STARTTLS: %s", sc.Features.Raw)
	}
	return sc
}

// nothingDelivered fails if the internal server received anything.
func nothingDelivered(t *testing.T, s *harness.Site) {
	t.Helper()
	if got := s.Internal.Stanzas(); len(got) > 0 {
		t.Errorf("the internal server received %d stanzas from a refused stream: %v", len(got), got)
	}
}

func TestStanzaBeforeAuthentication(t *testing.T) {
	s := harness.StartSite(t, "", "remote.test")
	t.Run("after TLS", func(t *testing.T) {
		sc := secured(t, s)
		sc.Send(harness.Message("eve@remote.test", "alice@a.test", "early-1", "hi"))
		sc.ExpectStreamError("not-authorized")
	})
	t.Run("before TLS", func(t *testing.T) {
		sc := harness.Dial(t, s.Relay.FederationAddr)
		if err := sc.Open("remote.test", "a.test"); err != nil {
			t.Fatal(err)
		}
		sc.Send(harness.Message("eve@remote.test", "alice@a.test", "early-2", "hi"))
		sc.ExpectStreamError("not-authorized")
	})
	nothingDelivered(t, s)
	s.Relay.WaitBalanced(t)
}

// TestForgedFrom: on a stream authenticated for remote.test, a stanza from
// another domain is closed with invalid-from (RFC 6120 §8.1.2.2), after
// the stanzas from the authenticated domain went through.
func TestForgedFrom(t *testing.T) {
	s := harness.StartSite(t, "", "remote.test")
	sc := s.FromOutside(t, "remote.test")
	sc.Send(harness.Message("bob@remote.test", "alice@a.test", "honest", "hi"))
	s.Internal.WaitID(t, "honest")
	sc.Send(harness.Message("mallory@forged.test", "alice@a.test", "forged", "hi"))
	sc.ExpectStreamError("invalid-from")
	if n := s.Internal.Count(func(st harness.Stanza) bool { return st.ID == "forged" }); n != 0 {
		t.Errorf("the forged stanza was delivered")
	}
	s.Relay.WaitBalanced(t)
}

// TestUnsolicitedDialbackResult: typed db:result elements that answer no
// request of the relay are dropped (XEP-0220 §3.1) and authorize nothing:
// the next stanza still gets not-authorized.
func TestUnsolicitedDialbackResult(t *testing.T) {
	s := harness.StartSite(t, "", "remote.test")
	sc := secured(t, s)
	before := s.Relay.Server.Stats().DialbackIgnored.Load()
	sc.Send("<db:result from='remote.test' to='a.test' type='valid'/>")
	sc.Send("<db:result from='a.test' to='remote.test' type='valid'/>")
	harness.Eventually(t, func() bool { return s.Relay.Server.Stats().DialbackIgnored.Load() >= before+2 },
		"the relay to count both unsolicited results as ignored")
	sc.Send(harness.Message("eve@remote.test", "alice@a.test", "after-spoof", "hi"))
	if got := sc.ExpectStreamError("not-authorized"); len(got) > 0 {
		t.Errorf("the relay answered unsolicited results: %v", got)
	}
	nothingDelivered(t, s)
	s.Relay.WaitBalanced(t)
}

// TestDialbackVerify: the relay is the Authoritative server of its internal
// domains on the federation face: it answers db:verify valid for its own
// keys, invalid for others, and item-not-found (type='error', the stream
// stays open) for a domain it does not serve there (XEP-0220 §2.2.2).
func TestDialbackVerify(t *testing.T) {
	s := harness.StartSite(t, "", "remote.test")
	secret, err := dialback.NewSecret(s.Relay.Config.Dialback.Secret.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	sc := secured(t, s)
	// A key the relay made for a.test → remote.test on some other stream.
	good := secret.Key("remote.test", "a.test", "stream-1")
	cases := []struct {
		name, verify, wantType, wantCond string
	}{
		{"own key", "<db:verify from='remote.test' to='a.test' id='stream-1'>" + string(good) + "</db:verify>", "valid", ""},
		{"wrong key", "<db:verify from='remote.test' to='a.test' id='stream-1'>" + strings.Repeat("0", 64) + "</db:verify>", "invalid", ""},
		{"key for another stream", "<db:verify from='remote.test' to='a.test' id='stream-2'>" + string(good) + "</db:verify>", "invalid", ""},
		{"domain not served", "<db:verify from='remote.test' to='other.test' id='stream-1'>" + string(good) + "</db:verify>", "error", "item-not-found"},
		{"remote domain", "<db:verify from='remote.test' to='remote2.test' id='stream-1'>" + string(good) + "</db:verify>", "error", "item-not-found"},
	}
	for _, c := range cases {
		sc.Send(c.verify)
		el, err := sc.Next()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		e, err := dialback.Parse([]byte(el.Raw))
		if err != nil || el.Kind != wire.DialbackVerify {
			t.Fatalf("%s: answer %s (%v)", c.name, el.Raw, err)
		}
		if e.Type.String() != c.wantType || string(e.Condition) != c.wantCond {
			t.Errorf("%s: answer %s, want type %s %s", c.name, el.Raw, c.wantType, c.wantCond)
		}
		if e.ID != "stream-1" && e.ID != "stream-2" {
			t.Errorf("%s: answer without the request's id: %s", c.name, el.Raw)
		}
	}
	// Error answers leave the stream open for other pairs.
	sc.ExpectOpen(200 * time.Millisecond)
	s.Relay.WaitBalanced(t)
}

// TestWrongDialbackKey: a db:result whose key the Authoritative server
// (the remote fake, found in DNS) calls invalid is answered
// type='invalid' and the stream closed with not-authorized.
func TestWrongDialbackKey(t *testing.T) {
	s := harness.StartSite(t, "", "remote.test")
	sc := secured(t, s)
	typ, cond, err := sc.DialbackKey("remote.test", "a.test", strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	if typ != dialback.TypeInvalid {
		t.Errorf("dialback answer %s %s, want invalid", typ, cond)
	}
	sc.ExpectStreamError("not-authorized")
	s.Relay.Logs.Wait(t, "stream closed with an error", "condition", "not-authorized")
	nothingDelivered(t, s)
	s.Relay.WaitBalanced(t)
}

// TestTLSRequired: with tls.required (the default) the features demand
// STARTTLS and offer no dialback, and dialback attempted in the clear is
// refused with policy-violation.
func TestTLSRequired(t *testing.T) {
	s := harness.StartSite(t, "", "remote.test")
	sc := harness.Dial(t, s.Relay.FederationAddr)
	if err := sc.Open("remote.test", "a.test"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sc.Features.Raw, "<required/>") || sc.Offers("dialback") {
		t.Errorf("features %s: want STARTTLS required and no dialback", sc.Features.Raw)
	}
	key := s.Remote.Secret().Key("a.test", "remote.test", sc.ID())
	sc.Send("<db:result from='remote.test' to='a.test'>" + string(key) + "</db:result>")
	sc.ExpectStreamError("policy-violation")
	nothingDelivered(t, s)
	s.Relay.WaitBalanced(t)
}

// TestOversizeStanza: an element over limits.max_preauth_bytes before
// authentication closes the stream with policy-violation. After it, a
// stanza over limits.max_stanza_bytes is skipped without being kept and
// bounced to its sender with policy-violation (modify), and the stream goes
// on (before, the whole stream was closed and the sender never learnt why);
// a peer that keeps sending them has its stream closed after 16.
func TestOversizeStanza(t *testing.T) {
	s := harness.StartSite(t, "limits: {max_preauth_bytes: 2048, max_stanza_bytes: 10000}", "remote.test")
	t.Run("before auth", func(t *testing.T) {
		sc := secured(t, s)
		sc.Send(harness.BigMessage("eve@remote.test", "alice@a.test", "big-pre", 3000))
		sc.ExpectStreamError("policy-violation")
	})
	t.Run("after auth", func(t *testing.T) {
		sc := s.FromOutside(t, "remote.test")
		// A small stanza first: the first one after dialback is bounded
		// by the pre-auth limit (TestFirstStanzaAfterDialback).
		sc.Send(harness.Message("bob@remote.test", "alice@a.test", "small", "hi"))
		s.Internal.WaitID(t, "small")
		sc.Send(harness.BigMessage("bob@remote.test", "alice@a.test", "big-ok", 9000))
		s.Internal.WaitID(t, "big-ok")
		sc.Send(harness.BigMessage("bob@remote.test", "alice@a.test", "big-post", 400000))
		st := s.Remote.Wait(t, "the bounce of big-post", func(st harness.Stanza) bool { return st.ID == "big-post" })
		if typ, cond, text := st.StanzaError(); st.Type != "error" || typ != "modify" || cond != "policy-violation" || !strings.Contains(text, "larger than the relay of a.test accepts") {
			t.Errorf("big-post came back as %s", st.Raw)
		}
		sc.Send(harness.Message("bob@remote.test", "alice@a.test", "after", "still there?"))
		s.Internal.WaitID(t, "after")
	})
	t.Run("repeated", func(t *testing.T) {
		sc := s.FromOutside(t, "remote.test")
		for i := range 17 {
			sc.Write(harness.BigMessage("bob@remote.test", "alice@a.test", fmt.Sprintf("big-%d", i), 11000))
		}
		sc.ExpectStreamError("policy-violation")
	})
	if n := s.Internal.Count(func(st harness.Stanza) bool { return st.ID != "big-ok" && st.ID != "small" && st.ID != "after" }); n != 0 {
		t.Errorf("%d oversized stanzas were delivered", n)
	}
	s.Relay.WaitBalanced(t)
}

// TestFirstStanzaAfterDialback: the first stanza after the dialback answer
// may use the whole of limits.max_stanza_bytes, like every later one: the
// stream is authenticated once the relay has said valid.
//
// A regression test: dialback concludes on a verification goroutine while
// the stream's owner is already blocked in the read that returns the peer's
// next element, so raising the limit only before each read left that first
// stanza under limits.max_preauth_bytes (policy-violation); fixed in
// 332ee76.
func TestFirstStanzaAfterDialback(t *testing.T) {
	s := harness.StartSite(t, "limits: {max_preauth_bytes: 2048, max_stanza_bytes: 10000}", "remote.test")
	sc := s.FromOutside(t, "remote.test")
	sc.Send(harness.BigMessage("bob@remote.test", "alice@a.test", "first-big", 5000))
	waitDelivered(t, s.Internal, "first-big", s.Relay)
	sc.Send(harness.BigMessage("bob@remote.test", "alice@a.test", "second-big", 5000))
	waitDelivered(t, s.Internal, "second-big", s.Relay)
	s.Relay.WaitBalanced(t)
}

// TestVersionlessHeader: a header without version (a pre-1.0 peer) cannot
// negotiate TLS, so with tls.required it is refused with policy-violation;
// without, the peer goes straight to dialback (no features) and its
// stanzas are delivered.
func TestVersionlessHeader(t *testing.T) {
	t.Run("tls required", func(t *testing.T) {
		s := harness.StartSite(t, "", "remote.test")
		sc := harness.Dial(t, s.Relay.FederationAddr)
		err := sc.OpenLegacy("remote.test", "a.test")
		var se *harness.StreamError
		switch {
		case errors.As(err, &se):
			// The relay answered version 1.0, so the error came where
			// features would.
			if se.Condition != "policy-violation" {
				t.Errorf("stream error %s, want policy-violation", se.Condition)
			}
		case err != nil:
			t.Fatal(err)
		default:
			sc.ExpectStreamError("policy-violation")
		}
		// RFC 6120 §4.7.5: the response carries the lower of the two
		// versions; a header without version is "0.9", answered without
		// one (protocol digest §1.1).
		if sc.Header == nil || sc.Header.Version != "" {
			t.Errorf("the relay answered a header without version with %+v; want no version attribute", sc.Header)
		}
		s.Relay.WaitBalanced(t)
	})
	t.Run("tls optional", func(t *testing.T) {
		s := harness.StartSite(t, "tls: {required: false}", "remote.test")
		sc := harness.Dial(t, s.Relay.FederationAddr)
		if err := sc.OpenLegacy("remote.test", "a.test"); err != nil {
			t.Fatal(err)
		}
		if sc.Header.Version != "" || sc.Header.ID == "" {
			t.Errorf("answer header version %q id %q: want no version, an id", sc.Header.Version, sc.Header.ID)
		}
		typ, cond, err := sc.Dialback(s.Remote.Secret(), "remote.test", "a.test")
		if err != nil || typ != dialback.TypeValid {
			t.Fatalf("dialback: %v %s %v", typ, cond, err)
		}
		sc.Send(harness.Message("bob@remote.test", "alice@a.test", "legacy", "hi"))
		s.Internal.WaitID(t, "legacy")
		s.Relay.WaitBalanced(t)
	})
}

// TestGarbageHeader: bytes that are not XML where the header belongs get
// a header and not-well-formed.
func TestGarbageHeader(t *testing.T) {
	s := harness.StartSite(t, "", "remote.test")
	for _, garbage := range []string{"hello relay\r\n", "<<<>>>", "\x00\x01\x02\x03"} {
		sc := harness.Dial(t, s.Relay.FederationAddr)
		sc.Send(garbage)
		cond, _, err := sc.StreamError()
		if err != nil {
			var se *harness.StreamError
			if !errors.As(err, &se) {
				t.Fatalf("%q: %v", garbage, err)
			}
			cond = se.Condition
		}
		if cond != "not-well-formed" {
			t.Errorf("%q: stream error %s, want not-well-formed", garbage, cond)
		}
	}
	s.Relay.WaitBalanced(t)
}

// waitDelivered waits until fake has received the stanza id, and fails at
// once, with the reason, if one of the relays closes an inbound stream with
// a stream error meanwhile.
func waitDelivered(t *testing.T, fake *harness.FakeServer, id string, relays ...*harness.Relay) {
	t.Helper()
	var closed []harness.Record
	harness.Eventually(t, func() bool {
		if fake.Count(func(st harness.Stanza) bool { return st.ID == id }) > 0 {
			return true
		}
		for _, r := range relays {
			closed = append(closed, r.Logs.Find("stream closed with an error")...)
		}
		return len(closed) > 0
	}, "stanza %s at %s", id, fake.Name)
	for _, rec := range closed {
		t.Fatalf("stanza %s not delivered: a relay closed a stream: %s", id, rec)
	}
}
