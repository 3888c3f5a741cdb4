package routing_test

import (
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/test/harness"
)

// TestBidiInbound: remote.test opens a stream to the federation face and
// asks for XEP-0288 bidi; the relay then sends a.test's stanzas for
// remote.test on that stream, in order, instead of connecting to
// remote.test's server, and the stream still carries remote.test's stanzas
// the other way.
func TestBidiInbound(t *testing.T) {
	s := harness.StartSite(t, "", "remote.test")
	sc := s.Remote.DialBidi(t, s.Relay.FederationAddr, "remote.test", "a.test")
	// The relay offers the pair in its table just after its answer.
	s.Relay.Logs.Wait(t, "bidirectional stream: the relay sends over it", "pair", "a.test→remote.test")
	out := s.FromInside(t, "remote.test")
	var ids []string
	for i := range 5 {
		id := fmt.Sprintf("bi%d", i)
		ids = append(ids, id)
		out.Send(harness.Message("alice@a.test/phone", "bob@remote.test", id, "over the bidi stream"))
	}
	// A ping from inside to remote.test's users goes over it too.
	out.Send(harness.IQ("alice@a.test/phone", "bob@remote.test/laptop", "bi-iq", "get"))
	ids = append(ids, "bi-iq")
	var got []string
	for len(got) < len(ids) {
		el, err := sc.Next()
		if err != nil {
			t.Fatalf("reading the bidi stream after %v: %v", got, err)
		}
		if el.Name == "message" || el.Name == "iq" {
			if el.From != "alice@a.test/phone" {
				t.Errorf("stanza from %q on the bidi stream", el.From)
			}
			got = append(got, el.ID)
		}
	}
	if !equal(got, ids) {
		t.Errorf("the bidi stream carried %v, want %v in order", got, ids)
	}
	if n := s.Remote.Count(func(harness.Stanza) bool { return true }); n != 0 {
		t.Errorf("remote.test's server received %d stanzas on a stream of the relay's: bidi not used", n)
	}
	if n := s.Relay.Server.Stats().OutboundTotal.Load(); n != 0 {
		t.Errorf("the relay opened %d outbound streams, want none (internal a.test's link rides no stream either: nothing went to a.test yet)", n)
	}
	// The other direction, on the same stream.
	reply := harness.IQ("bob@remote.test/laptop", "alice@a.test/phone", "bi-iq", "result")
	sc.Send(reply)
	if got := s.Internal.WaitID(t, "bi-iq"); got.Raw != reply {
		t.Errorf("a.test received %s, want %s", got.Raw, reply)
	}
	var bidiIn, bidiOut int
	for _, si := range s.Relay.Server.Streams() {
		if si.Face == "federation" && si.Bidi {
			if si.Direction == "in" {
				bidiIn++
			} else {
				bidiOut++
			}
		}
	}
	if bidiIn != 1 || bidiOut != 1 {
		t.Errorf("admin API: %d bidi inbound streams and %d links riding one, want 1 and 1", bidiIn, bidiOut)
	}
	s.Relay.WaitBalanced(t)
}

// TestBidiOffer: bidi is offered only once TLS is up, and not at all with
// federation.bidi off, when a request is ignored and the relay opens its
// own stream to the peer.
func TestBidiOffer(t *testing.T) {
	t.Run("on", func(t *testing.T) {
		s := harness.StartSite(t, "", "remote.test")
		sc := harness.Dial(t, s.Relay.FederationAddr)
		if err := sc.Open("remote.test", "a.test"); err != nil {
			t.Fatal(err)
		}
		if sc.Offers("bidi") {
			t.Errorf("bidi offered before TLS: %s", sc.Features.Raw)
		}
		if err := sc.StartTLS("remote.test", "a.test"); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(sc.Features.Raw, "<bidi xmlns='urn:xmpp:features:bidi'/>") ||
			!strings.Contains(sc.Features.Raw, "<bidi xmlns='urn:xmpp:bidi'/>") {
			t.Errorf("after TLS, features %s; want bidi in both namespaces (ejabberd #4300)", sc.Features.Raw)
		}
	})
	t.Run("off", func(t *testing.T) {
		s := harness.StartSite(t, "federation: {bidi: false}", "remote.test")
		sc := s.Remote.Dial(t, s.Relay.FederationAddr, "remote.test", "a.test")
		if sc.Offers("bidi") {
			t.Errorf("bidi offered with federation.bidi off: %s", sc.Features.Raw)
		}
		sc.Send("<bidi xmlns='urn:xmpp:bidi'/>") // ignored: the stream stays one-way
		s.FromInside(t, "remote.test").Send(harness.Message("alice@a.test/phone", "bob@remote.test", "nobidi", "x"))
		s.Remote.WaitID(t, "nobidi")
		s.Relay.WaitBalanced(t)
	})
}

// TestBidiInboundDies: the peer of a bidi stream stops reading, so the
// relay's writes to it stall; after limits.write_timeout the relay closes
// the stream, and what its link still held goes to remote.test over a new
// stream of the relay's. Every stanza ends up somewhere: read by the peer
// before the stream died, delivered over the new stream, or bounced to its
// sender (the batch being written when the write failed), none lost.
func TestBidiInboundDies(t *testing.T) {
	s := harness.StartSite(t, "limits: {write_timeout: 2s, stall_timeout: 2s, stall_budget: 60s}", "remote.test")
	sc := s.Remote.DialBidi(t, s.Relay.FederationAddr, "remote.test", "a.test")
	// The relay offers the pair in its table just after its answer.
	s.Relay.Logs.Wait(t, "bidirectional stream: the relay sends over it", "pair", "a.test→remote.test")
	out := s.FromInside(t, "remote.test")
	// Far more than the socket buffers of a loopback connection hold.
	const n, size = 48, 400 << 10
	var ids []string
	sent := make(chan error, 1)
	for i := range n {
		ids = append(ids, fmt.Sprintf("die%02d", i))
	}
	go func() {
		for _, id := range ids {
			if err := out.Write(bigMessage("alice@a.test/phone", "bob@remote.test", id, size)); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	// The relay gives up on the stream it could not write to.
	s.Relay.Logs.Wait(t, "write to the bidirectional stream failed; closing it")
	if err := <-sent; err != nil {
		t.Fatalf("sending from inside: %v", err)
	}
	// What the peer can still read of its stream.
	read := map[string]bool{}
	for {
		el, err := sc.Next()
		if err != nil {
			break
		}
		if el.Name == "message" {
			read[el.ID] = true
		}
	}
	// The last ones may still be on their way from inside: wait until
	// every stanza has met its fate, or the wait's end.
	fate := func(id string) (r, b bool) {
		r = s.Remote.Count(func(st harness.Stanza) bool { return st.ID == id }) > 0
		b = s.Internal.Count(func(st harness.Stanza) bool { return st.ID == id && st.Type == "error" }) > 0
		return r, b
	}
	pollFor(harness.WaitTimeout, func() bool {
		for _, id := range ids {
			if r, b := fate(id); !r && !b && !read[id] {
				return false
			}
		}
		return true
	})
	s.Relay.WaitBalanced(t)
	rerouted, bounced := 0, 0
	for _, id := range ids {
		r, b := fate(id)
		switch {
		case r && (b || read[id]):
			t.Errorf("%s delivered over the new stream and also bounced or read on the dead one", id)
		case r:
			rerouted++
		case b:
			bounced++
		case !read[id]:
			t.Errorf("%s lost: not read on the bidi stream, not delivered, not bounced", id)
		}
	}
	t.Logf("%d read on the bidi stream before it died, %d rerouted over a new stream, %d bounced", len(read), rerouted, bounced)
	if rerouted == 0 {
		t.Errorf("nothing was rerouted over a new stream")
	}
	if n := s.Relay.Server.Stats().OutboundTotal.Load(); n < 1 {
		t.Errorf("no new outbound stream was opened")
	}
}

// TestBidiLinkGoesIdle: a link riding a bidi stream that goes idle leaves the
// table; the next stanza makes a new one on the same stream.
func TestBidiLinkGoesIdle(t *testing.T) {
	s := harness.StartSite(t, "limits: {idle_timeout: 1s}", "remote.test")
	sc := s.Remote.DialBidi(t, s.Relay.FederationAddr, "remote.test", "a.test")
	// The relay offers the pair in its table just after its answer.
	s.Relay.Logs.Wait(t, "bidirectional stream: the relay sends over it", "pair", "a.test→remote.test")
	out := s.FromInside(t, "remote.test")
	for i := range 2 {
		id := fmt.Sprintf("idle%d", i)
		out.Send(harness.Message("alice@a.test/phone", "bob@remote.test", id, "x"))
		for {
			el, err := sc.Next()
			if err != nil {
				t.Fatalf("reading %s: %v", id, err)
			}
			if el.ID == id {
				break
			}
		}
		// The peers keep their streams alive; the relay's link idles.
		for range 6 {
			time.Sleep(250 * time.Millisecond)
			sc.Send(" ")
			out.Send(" ")
		}
	}
	if n := len(s.Relay.Logs.Find("outbound stream closed", "reason", "idle", "to", "remote.test")); n < 2 {
		t.Errorf("the link riding the bidi stream went idle %d times, want 2", n)
	}
	if n := s.Relay.Server.Stats().OutboundTotal.Load(); n != 0 {
		t.Errorf("the relay opened %d outbound streams, want none", n)
	}
	s.Relay.WaitBalanced(t)
}

// TestBidiOutbound: the relay's stream to partner.test asks for bidi when
// partner.test offers it and proved by its certificate that it is
// partner.test; partner.test's stanzas then come back on that stream and are
// routed like an inbound stream's, and one for a pair the stream does not
// carry closes it. Without bidi (not offered, or a server known by DNS
// alone, whose identity nothing verified), stanzas on the relay's stream
// are refused: not-authorized, and they reach nobody.
func TestBidiOutbound(t *testing.T) {
	c := newCerts(t)
	for _, tc := range []struct {
		name     string
		cert     *tls.Certificate
		offer    bool
		wantBidi bool
	}{
		{"offered, certificate valid", &c.valid, true, true},
		{"not offered", &c.valid, false, false},
		{"offered, identity by DNS only", &c.selfSigned, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := harness.StartSiteCert(t, fmt.Sprintf("tls: {ca_file: %q}", c.caFile), tc.cert, "partner.test")
			s.Remote.SetBidi(tc.offer)
			out := s.FromInside(t, "partner.test")
			out.Send(harness.Message("alice@a.test/phone", "bob@partner.test", "ob1", "x"))
			s.Remote.WaitID(t, "ob1")
			in := s.Remote.InboundFor("a.test", "partner.test")
			if in == nil {
				t.Fatal("no stream from the relay at partner.test")
			}
			if in.Bidi() != tc.wantBidi {
				t.Fatalf("the relay asked for bidi: %v, want %v", in.Bidi(), tc.wantBidi)
			}
			if !tc.wantBidi {
				in.WriteRaw([]byte(harness.Message("bob@partner.test/x", "alice@a.test", "refused", "x")))
				s.Remote.WaitStreamError(t, "not-authorized")
				if n := s.Relay.Server.Stats().ReverseRefused.Load(); n != 1 {
					t.Errorf("ReverseRefused %d, want 1", n)
				}
				time.Sleep(100 * time.Millisecond)
				notReceived(t, s.Internal, "refused")
				s.Relay.WaitBalanced(t)
				return
			}
			reply := harness.Message("bob@partner.test/x", "alice@a.test", "ob2", "back on the relay's stream")
			in.WriteRaw([]byte(reply))
			if got := s.Internal.WaitID(t, "ob2"); got.Raw != reply {
				t.Errorf("a.test received %s, want %s", got.Raw, reply)
			}
			// A ping to a.test itself is answered by the relay, on the same
			// stream.
			in.WriteRaw([]byte(`<iq type='get' from='partner.test' to='a.test' id='ping1'><ping xmlns='urn:xmpp:ping'/></iq>`))
			if got := s.Remote.WaitID(t, "ping1"); got.Type != "result" {
				t.Errorf("ping answered with %s", got.Raw)
			}
			var outs, ins int
			for _, si := range s.Relay.Server.Streams() {
				if si.Face != "federation" {
					continue
				}
				if si.Direction == "in" {
					ins++
				} else if outs++; !si.Bidi || si.StanzasIn != 2 {
					t.Errorf("the link to partner.test: %+v, want bidi with 2 stanzas read", si)
				}
			}
			if outs != 1 || ins != 0 {
				t.Errorf("%d federation links and %d inbound federation streams, want 1 and 0", outs, ins)
			}
			// From a domain the stream does not carry: invalid-from.
			in.WriteRaw([]byte(harness.Message("eve@other.test/x", "alice@a.test", "spoof", "x")))
			s.Remote.WaitStreamError(t, "invalid-from")
			if n := s.Relay.Server.Stats().ReverseRefused.Load(); n != 1 {
				t.Errorf("ReverseRefused %d, want 1", n)
			}
			time.Sleep(100 * time.Millisecond)
			notReceived(t, s.Internal, "spoof")
			s.Relay.WaitBalanced(t)
		})
	}
}

// TestBidiOutboundInternal: on the internal face the relay asks the
// internal server (its route) for bidi, and the internal server's stanzas
// for the remote domain come back on the relay's stream to it.
func TestBidiOutboundInternal(t *testing.T) {
	s := harness.StartSite(t, "", "remote.test")
	s.Internal.SetBidi(true)
	s.FromOutside(t, "remote.test").Send(harness.Message("bob@remote.test/x", "alice@a.test", "ib1", "x"))
	s.Internal.WaitID(t, "ib1")
	in := s.Internal.InboundFor("remote.test", "a.test")
	if in == nil || !in.Bidi() {
		t.Fatalf("the relay's stream to a.test's route: %v, want bidi", in)
	}
	msg := harness.Message("alice@a.test/phone", "bob@remote.test", "ib2", "on the relay's stream")
	in.WriteRaw([]byte(msg))
	if got := s.Remote.WaitID(t, "ib2"); got.Raw != msg {
		t.Errorf("remote.test received %s, want %s", got.Raw, msg)
	}
	for _, si := range s.Relay.Server.Streams() {
		if si.Face == "internal" && si.Direction == "in" {
			t.Errorf("an inbound stream from the internal server: %+v", si)
		}
	}
	s.Relay.WaitBalanced(t)
}

// TestBidiInboundInternal: on the internal face, a.test's server asks for
// bidi on its stream to remote.test; the relay then delivers remote.test's
// stanzas for a.test on that stream instead of connecting to the route.
func TestBidiInboundInternal(t *testing.T) {
	s := harness.StartSite(t, "", "remote.test")
	sc := s.Internal.DialBidi(t, s.Relay.InternalAddr, "a.test", "remote.test")
	s.Relay.Logs.Wait(t, "bidirectional stream: the relay sends over it", "pair", "remote.test→a.test")
	msg := harness.Message("bob@remote.test/x", "alice@a.test", "ii1", "to the internal server over its own stream")
	s.FromOutside(t, "remote.test").Send(msg)
	for {
		el, err := sc.Next()
		if err != nil {
			t.Fatalf("reading the bidi stream: %v", err)
		}
		if el.ID == "ii1" {
			if el.Raw != msg {
				t.Errorf("a.test's stream carried %s, want %s", el.Raw, msg)
			}
			break
		}
	}
	if n := s.Internal.Count(func(harness.Stanza) bool { return true }); n != 0 {
		t.Errorf("a.test's server received %d stanzas on a stream of the relay's: bidi not used", n)
	}
	if n := s.Relay.Server.Stats().OutboundTotal.Load(); n != 0 {
		t.Errorf("the relay opened %d outbound streams, want none", n)
	}
	s.Relay.WaitBalanced(t)
}

// TestBidiWritesDoNotInterleave: while the relay's link writes a stream of
// stanzas on a bidi stream, the stream's owner answers a dialback request
// for another pair on it: each element arrives whole (the peer's framer
// would refuse interleaved bytes), the answer among the stanzas, and the new
// pair's reverse is offered too. (crypto/tls serialises Write calls by
// itself, so this would pass without bidiConn's lock too: the lock is what
// orders the links' writes against the owner's closing tag and deadlines.)
func TestBidiWritesDoNotInterleave(t *testing.T) {
	s := harness.StartSite(t, "", "remote.test", "other.test")
	sc := s.Remote.DialBidi(t, s.Relay.FederationAddr, "remote.test", "a.test")
	s.Relay.Logs.Wait(t, "bidirectional stream: the relay sends over it", "pair", "a.test→remote.test")
	out := s.FromInside(t, "remote.test")
	const n = 300
	sent := make(chan error, 1)
	go func() {
		for i := range n {
			if err := out.Write(harness.Message("alice@a.test/phone", "bob@remote.test", fmt.Sprintf("w%03d", i), strings.Repeat("y", 2000))); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	messages, answered := 0, false
	for messages < n || !answered {
		el, err := sc.Next()
		if err != nil {
			t.Fatalf("after %d messages (dialback answered: %v): %v", messages, answered, err)
		}
		switch {
		case el.Name == "message":
			if messages++; messages == 20 {
				// Mid-stream: ask for a second pair on the same stream.
				key := s.Remote.Secret().Key("a.test", "other.test", sc.ID())
				sc.Send(string(dialback.Element{Kind: dialback.KindResult, From: "other.test", To: "a.test", Key: key}.Append(nil)))
			}
		case el.Name == "result":
			if !strings.Contains(el.Raw, "valid") || !strings.Contains(el.Raw, "other.test") {
				t.Fatalf("dialback answer %s", el.Raw)
			}
			answered = true
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	// The second pair's reverse rides the stream too.
	s.Relay.Logs.Wait(t, "bidirectional stream: the relay sends over it", "pair", "a.test→other.test")
	s.Relay.WaitBalanced(t)
}

// TestBidiLastStanzaBeforeClose: the remote server's last stanza on the
// relay's bidi stream comes in the same read as its closing tag. The relay
// hands it to the link towards the internal server without waking that
// link's writer (the wake-up waits for the stream's next read, which never
// comes): the stream's end must wake it, or the stanza waits for the
// link's next timer (2 s or more).
func TestBidiLastStanzaBeforeClose(t *testing.T) {
	c := newCerts(t)
	s := harness.StartSiteCert(t, fmt.Sprintf("tls: {ca_file: %q}", c.caFile), &c.valid, "partner.test")
	s.Remote.SetBidi(true)
	out := s.FromInside(t, "partner.test")
	out.Send(harness.Message("alice@a.test/phone", "bob@partner.test", "lb1", "x"))
	s.Remote.WaitID(t, "lb1")
	in := s.Remote.InboundFor("a.test", "partner.test")
	if in == nil || !in.Bidi() {
		t.Fatal("no bidi stream from the relay at partner.test")
	}
	// The link towards a.test comes up, writes, and its writer goes to
	// sleep.
	in.WriteRaw([]byte(harness.Message("bob@partner.test/x", "alice@a.test", "lb2", "first")))
	s.Internal.WaitID(t, "lb2")
	time.Sleep(200 * time.Millisecond)
	sent := time.Now()
	in.WriteRaw([]byte(harness.Message("bob@partner.test/x", "alice@a.test", "lb3", "last") + "</stream:stream>"))
	s.Internal.WaitID(t, "lb3")
	// Without the wake-up it came with the writer's next timer: idleGrace
	// (2 s) after its last write.
	if took := time.Since(sent); took > time.Second {
		t.Errorf("the last stanza reached a.test %v after it was sent: its link was not woken", took.Round(time.Millisecond))
	}
	s.Relay.WaitBalanced(t)
}
