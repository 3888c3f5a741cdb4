package dialback_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/fedrelay/fedrelay/dialback"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"
)

// serves returns a Config.Serves for a fixed set of domains.
func serves(domains ...string) func(string) bool {
	return func(d string) bool { return slices.Contains(domains, d) }
}

// testSecret is capulet's secret from XEP-0220.
const testSecret = "s3cr3tf0rd14lb4ck"

// outbound is the relay's stream to montague.example as capulet.example and
// rooms.capulet.example, with montague's stream ID from XEP-0220.
func outbound(t *testing.T, mod ...func(*dialback.Config)) *dialback.Stream {
	t.Helper()
	c := dialback.Config{
		ID:       "D60000229F",
		Outbound: true,
		Secret:   mustSecret(t, testSecret),
		Serves:   serves("capulet.example", "rooms.capulet.example"),
	}
	for _, m := range mod {
		m(&c)
	}
	return dialback.NewStream(c)
}

// inbound is a stream montague.example opened to the relay, which is
// capulet.example and rooms.capulet.example here.
func inbound(t *testing.T, mod ...func(*dialback.Config)) *dialback.Stream {
	t.Helper()
	c := dialback.Config{
		ID:     "417GAF25",
		Secret: mustSecret(t, testSecret),
		Serves: serves("capulet.example", "rooms.capulet.example"),
	}
	for _, m := range mod {
		m(&c)
	}
	return dialback.NewStream(c)
}

func bidi(c *dialback.Config) { c.Bidi = true }

// parse parses raw or fails the test.
func parse(t *testing.T, raw string) dialback.Element {
	t.Helper()
	e, err := dialback.Parse([]byte(raw))
	if err != nil {
		t.Fatalf("Parse(%s): %v", raw, err)
	}
	return e
}

// wire returns what Append writes for e.
func wire(e dialback.Element) string { return string(e.Append(nil)) }

func wantIgnore(t *testing.T, d dialback.Decision, reason error) {
	t.Helper()
	if d.Action != dialback.Ignore || !errors.Is(d.Reason, reason) {
		t.Fatalf("decision = %v (%v), want ignore (%v)", d.Action, d.Reason, reason)
	}
}

func wantReply(t *testing.T, d dialback.Decision, raw string) {
	t.Helper()
	if d.Action != dialback.Reply {
		t.Fatalf("decision = %v (%v), want reply %s", d.Action, d.Reason, raw)
	}
	if got := wire(d.Reply); got != raw {
		t.Fatalf("reply =\n %s\nwant\n %s", got, raw)
	}
}

// Initiating server: our db:result and what its answer means.
func TestStreamInitiating(t *testing.T) {
	const req = `<db:result from='capulet.example' to='montague.example'>b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3</db:result>`
	tests := []struct {
		name       string
		answer     string
		outcome    dialback.Outcome
		bounce     stanza.Error
		maySend    bool
		usableNext bool // SendResult for another pair works afterwards
	}{
		{
			name:    "valid",
			answer:  `<db:result from='montague.example' to='capulet.example' type='valid'/>`,
			outcome: dialback.Authorized, maySend: true, usableNext: true,
		},
		{
			name:    "valid with id and key (Prosody)",
			answer:  `<db:result from='montague.example' to='capulet.example' type='valid' id='x'>junk</db:result>`,
			outcome: dialback.Authorized, maySend: true, usableNext: true,
		},
		{
			name:    "invalid",
			answer:  `<db:result from='montague.example' to='capulet.example' type='invalid'/>`,
			outcome: dialback.Rejected,
			bounce:  stanza.Error{Type: stanza.Cancel, Condition: stanza.InternalServerError},
		},
		{
			name:    "error",
			answer:  `<db:result from='montague.example' to='capulet.example' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>`,
			outcome: dialback.Failed, usableNext: true,
			bounce: stanza.Error{Type: stanza.Wait, Condition: stanza.RemoteServerTimeout},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := outbound(t)
			el, err := s.SendResult("capulet.example", "Montague.Example")
			if err != nil {
				t.Fatal(err)
			}
			if got := wire(el); got != req {
				t.Fatalf("SendResult wrote\n %s\nwant (XEP-0220 example 1)\n %s", got, req)
			}
			if s.MaySend("capulet.example", "montague.example") {
				t.Fatal("MaySend before the answer")
			}
			if s.Pending() != 1 {
				t.Errorf("Pending = %d, want 1", s.Pending())
			}

			d := s.Handle(parse(t, tt.answer))
			want := dialback.Pair{From: "capulet.example", To: "montague.example"}
			if d.Action != dialback.Settle || d.Pair != want || d.Outcome != tt.outcome {
				t.Fatalf("decision = %v %+v %v, want settle %+v %v", d.Action, d.Pair, d.Outcome, want, tt.outcome)
			}
			bounce, ok := d.Outcome.Bounce()
			if ok != (tt.outcome != dialback.Authorized) || bounce.Type != tt.bounce.Type || bounce.Condition != tt.bounce.Condition {
				t.Errorf("Bounce = %+v, %v; want %+v", bounce, ok, tt.bounce)
			}
			if got := s.MaySend("capulet.example", "montague.example"); got != tt.maySend {
				t.Errorf("MaySend = %v, want %v", got, tt.maySend)
			}
			if s.MayReceive("montague.example", "capulet.example") {
				t.Error("MayReceive for the reverse pair without bidi")
			}
			if s.Pending() != 0 {
				t.Errorf("Pending = %d, want 0", s.Pending())
			}
			// The answer is consumed: a second copy is unsolicited.
			wantIgnore(t, s.Handle(parse(t, tt.answer)), dialback.ErrUnsolicited)

			_, err = s.SendResult("rooms.capulet.example", "montague.example")
			if (err == nil) != tt.usableNext {
				t.Errorf("SendResult for another pair: %v, want usable=%v", err, tt.usableNext)
			}
			if !tt.usableNext && !errors.Is(err, dialback.ErrRejected) {
				t.Errorf("SendResult after invalid: %v, want ErrRejected", err)
			}
		})
	}
}

func TestStreamSendResultErrors(t *testing.T) {
	tests := []struct {
		name     string
		s        func(*testing.T) *dialback.Stream
		from, to string
		want     error
	}{
		{"inbound without bidi", func(t *testing.T) *dialback.Stream { return inbound(t) }, "capulet.example", "montague.example", dialback.ErrMisdirected},
		{"no stream id", func(t *testing.T) *dialback.Stream {
			return outbound(t, func(c *dialback.Config) { c.ID = "" })
		}, "capulet.example", "montague.example", dialback.ErrNoStreamID},
		{"not our domain", func(t *testing.T) *dialback.Stream { return outbound(t) }, "evil.example", "montague.example", dialback.ErrNotServed},
		{"bad address", func(t *testing.T) *dialback.Stream { return outbound(t) }, "capulet.example", "juliet@montague.example", stream.ImproperAddressing},
		{"pending", func(t *testing.T) *dialback.Stream {
			s := outbound(t)
			if _, err := s.SendResult("capulet.example", "montague.example"); err != nil {
				t.Fatal(err)
			}
			return s
		}, "capulet.example", "montague.example", dialback.ErrPending},
		{"authorized", func(t *testing.T) *dialback.Stream {
			s := outbound(t)
			if err := s.Authorize("capulet.example", "montague.example"); err != nil {
				t.Fatal(err)
			}
			return s
		}, "capulet.example", "montague.example", dialback.ErrAuthorized},
		{"pending limit", func(t *testing.T) *dialback.Stream {
			s := outbound(t, func(c *dialback.Config) { c.MaxPending = 1 })
			if _, err := s.SendResult("capulet.example", "montague.example"); err != nil {
				t.Fatal(err)
			}
			return s
		}, "rooms.capulet.example", "montague.example", dialback.ErrPendingLimit},
		{"closed", func(t *testing.T) *dialback.Stream {
			s := outbound(t)
			s.Close()
			return s
		}, "capulet.example", "montague.example", dialback.ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			el, err := tt.s(t).SendResult(tt.from, tt.to)
			if !errors.Is(err, tt.want) {
				t.Errorf("SendResult = %v, %v; want error %v", el, err, tt.want)
			}
		})
	}
}

// Typed elements that answer nothing we sent on this stream are dropped
// (XEP-0220 §3.1).
func TestStreamUnsolicited(t *testing.T) {
	tests := []struct {
		name   string
		s      func(*testing.T) *dialback.Stream
		answer string
	}{
		{"result valid, nothing sent", func(t *testing.T) *dialback.Stream { return outbound(t) },
			`<db:result from='montague.example' to='capulet.example' type='valid'/>`},
		{"result valid for another target", sentResult,
			`<db:result from='evil.example' to='capulet.example' type='valid'/>`},
		{"result valid for another sender", sentResult,
			`<db:result from='montague.example' to='rooms.capulet.example' type='valid'/>`},
		{"result valid in the request's direction", sentResult,
			`<db:result from='capulet.example' to='montague.example' type='valid'/>`},
		{"result valid on an inbound stream", func(t *testing.T) *dialback.Stream { return inbound(t) },
			`<db:result from='montague.example' to='capulet.example' type='valid'/>`},
		{"verify valid, nothing sent", func(t *testing.T) *dialback.Stream { return outbound(t) },
			`<db:verify from='montague.example' to='capulet.example' id='417GAF25' type='valid'/>`},
		{"verify valid with wrong id", sentVerify,
			`<db:verify from='montague.example' to='capulet.example' id='417GAF26' type='valid'/>`},
		{"verify valid with wrong from", sentVerify,
			`<db:verify from='evil.example' to='capulet.example' id='417GAF25' type='valid'/>`},
		{"verify valid with wrong to", sentVerify,
			`<db:verify from='montague.example' to='rooms.capulet.example' id='417GAF25' type='valid'/>`},
		{"verify valid in the request's direction", sentVerify,
			`<db:verify from='capulet.example' to='montague.example' id='417GAF25' type='valid'/>`},
		{"verify answer for a result request", sentResult,
			`<db:verify from='montague.example' to='capulet.example' id='D60000229F' type='valid'/>`},
		{"result answer for a verify request", sentVerify,
			`<db:result from='montague.example' to='capulet.example' type='valid'/>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.s(t)
			pending := s.Pending()
			wantIgnore(t, s.Handle(parse(t, tt.answer)), dialback.ErrUnsolicited)
			if s.MaySend("capulet.example", "montague.example") || s.MayReceive("montague.example", "capulet.example") {
				t.Error("an unsolicited answer authorized a pair")
			}
			if s.Pending() != pending {
				t.Errorf("Pending = %d, want %d: the outstanding request was consumed", s.Pending(), pending)
			}
		})
	}
}

func sentResult(t *testing.T) *dialback.Stream {
	s := outbound(t)
	if _, err := s.SendResult("capulet.example", "montague.example"); err != nil {
		t.Fatal(err)
	}
	return s
}

// sentVerify is a verify-only stream to montague.example on which the
// relay asks about a key montague sent on the inbound stream 417GAF25.
func sentVerify(t *testing.T) *dialback.Stream {
	s := outbound(t, func(c *dialback.Config) { c.ID = "V1" })
	if _, err := s.SendVerify(dialback.Element{
		Kind: dialback.KindVerify, From: "capulet.example", To: "montague.example", ID: "417GAF25", Key: keyB,
	}); err != nil {
		t.Fatal(err)
	}
	return s
}

// Piggybacking: several pairs on one stream, each authorized on its own.
func TestStreamPiggyback(t *testing.T) {
	s := outbound(t)
	pairs := []dialback.Pair{
		{From: "capulet.example", To: "montague.example"},
		{From: "rooms.capulet.example", To: "montague.example"},
		{From: "capulet.example", To: "chat.montague.example"},
	}
	for _, p := range pairs {
		if _, err := s.SendResult(p.From, p.To); err != nil {
			t.Fatalf("SendResult(%+v): %v", p, err)
		}
	}
	if s.Pending() != 3 {
		t.Fatalf("Pending = %d, want 3", s.Pending())
	}
	answers := []struct {
		raw     string
		outcome dialback.Outcome
	}{
		{`<db:result from='chat.montague.example' to='capulet.example' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>`, dialback.Failed},
		{`<db:result from='montague.example' to='capulet.example' type='valid'/>`, dialback.Authorized},
		{`<db:result from='montague.example' to='rooms.capulet.example' type='valid'/>`, dialback.Authorized},
	}
	for _, a := range answers {
		d := s.Handle(parse(t, a.raw))
		if d.Action != dialback.Settle || d.Outcome != a.outcome {
			t.Fatalf("Handle(%s) = %v %v, want settle %v", a.raw, d.Action, d.Outcome, a.outcome)
		}
	}
	for _, tt := range []struct {
		p    dialback.Pair
		want bool
	}{
		{pairs[0], true},
		{pairs[1], true},
		{pairs[2], false},
		{dialback.Pair{From: "rooms.capulet.example", To: "chat.montague.example"}, false},
		{dialback.Pair{From: "montague.example", To: "capulet.example"}, false},
		{dialback.Pair{From: "CAPULET.example", To: "montague.example."}, true},
		{dialback.Pair{From: "capulet.example", To: "user@montague.example"}, false},
	} {
		t.Run(tt.p.From+"→"+tt.p.To, func(t *testing.T) {
			if got := s.MaySend(tt.p.From, tt.p.To); got != tt.want {
				t.Errorf("MaySend = %v, want %v", got, tt.want)
			}
		})
	}
}

// Receiving server: a db:result request from the peer.
func TestStreamReceiving(t *testing.T) {
	const req = `<db:result from='montague.example' to='capulet.example'>` + keyB + `</db:result>`
	t.Run("forward to the Authoritative server", func(t *testing.T) {
		s := inbound(t)
		d := s.Handle(parse(t, req))
		if d.Action != dialback.Forward {
			t.Fatalf("decision = %v (%v), want forward", d.Action, d.Reason)
		}
		// XEP-0220 example 5.
		if got, want := wire(d.Verify), `<db:verify from='capulet.example' to='montague.example' id='417GAF25'>`+keyB+`</db:verify>`; got != want {
			t.Errorf("verify =\n %s\nwant\n %s", got, want)
		}
		if s.MayReceive("montague.example", "capulet.example") {
			t.Error("MayReceive before the verdict")
		}
		// A repeat while the first is checked is dropped.
		wantIgnore(t, s.Handle(parse(t, req)), dialback.ErrPending)
	})
	t.Run("to not served", func(t *testing.T) {
		s := inbound(t)
		wantReply(t, s.Handle(parse(t, `<db:result from='montague.example' to='other.example'>k</db:result>`)),
			`<db:result from='other.example' to='montague.example' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>`)
	})
	t.Run("already authorized", func(t *testing.T) {
		s := inbound(t)
		if err := s.Authorize("montague.example", "capulet.example"); err != nil {
			t.Fatal(err)
		}
		wantReply(t, s.Handle(parse(t, req)), `<db:result from='capulet.example' to='montague.example' type='valid'/>`)
	})
	t.Run("certificate covers the sender (XEP-0344)", func(t *testing.T) {
		s := inbound(t, func(c *dialback.Config) { c.CertValid = serves("montague.example") })
		wantReply(t, s.Handle(parse(t, req)), `<db:result from='capulet.example' to='montague.example' type='valid'/>`)
		if !s.MayReceive("montague.example", "capulet.example") {
			t.Error("pair not authorized after the certificate shortcut")
		}
		// Another sender on the same stream still needs the round trip.
		d := s.Handle(parse(t, `<db:result from='chat.montague.example' to='capulet.example'>k</db:result>`))
		if d.Action != dialback.Forward {
			t.Errorf("decision for a domain the certificate does not cover = %v, want forward", d.Action)
		}
	})
	t.Run("pending limit", func(t *testing.T) {
		s := inbound(t, func(c *dialback.Config) { c.MaxPending = 1 })
		if d := s.Handle(parse(t, req)); d.Action != dialback.Forward {
			t.Fatalf("first request: %v", d.Action)
		}
		wantReply(t, s.Handle(parse(t, `<db:result from='chat.montague.example' to='capulet.example'>k</db:result>`)),
			`<db:result from='capulet.example' to='chat.montague.example' type='error'><error type='cancel'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>`)
	})
	t.Run("pair limit", func(t *testing.T) {
		s := inbound(t, func(c *dialback.Config) { c.MaxPairs = 1 })
		if err := s.Authorize("montague.example", "capulet.example"); err != nil {
			t.Fatal(err)
		}
		wantReply(t, s.Handle(parse(t, `<db:result from='chat.montague.example' to='capulet.example'>k</db:result>`)),
			`<db:result from='capulet.example' to='chat.montague.example' type='error'><error type='cancel'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>`)
	})
	t.Run("outbound stream without bidi", func(t *testing.T) {
		wantIgnore(t, outbound(t).Handle(parse(t, req)), dialback.ErrMisdirected)
	})
	t.Run("outbound stream with bidi", func(t *testing.T) {
		if d := outbound(t, bidi).Handle(parse(t, req)); d.Action != dialback.Forward {
			t.Errorf("decision = %v, want forward", d.Action)
		}
	})
}

// Receiving server: the Authoritative server's answer becomes the answer to
// the original db:result.
func TestStreamConclude(t *testing.T) {
	const (
		req          = `<db:result from='montague.example' to='capulet.example'>` + keyB + `</db:result>`
		answerPrefix = `<db:verify from='montague.example' to='capulet.example' id='417GAF25' `
	)
	tests := []struct {
		name       string
		otherPair  bool   // another pair is authorized on the stream
		answer     string // as read from the link, or made up by the owner
		failure    stanza.Condition
		reply      string
		close      error
		mayReceive bool
	}{
		{
			name:   "valid",
			answer: answerPrefix + `type='valid'/>`,
			reply:  `<db:result from='capulet.example' to='montague.example' type='valid'/>`, mayReceive: true,
		},
		{
			name:   "invalid, only pair",
			answer: answerPrefix + `type='invalid'/>`,
			reply:  `<db:result from='capulet.example' to='montague.example' type='invalid'/>`,
			close:  stream.NotAuthorized,
		},
		{
			name: "invalid, other pairs", otherPair: true,
			answer: answerPrefix + `type='invalid'/>`,
			reply:  `<db:result from='capulet.example' to='montague.example' type='error'><error type='cancel'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>`,
		},
		{
			name:   "error from the Authoritative server",
			answer: answerPrefix + `type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:verify>`,
			reply:  `<db:result from='capulet.example' to='montague.example' type='error'><error type='cancel'><remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>`,
		},
		{
			name:    "Authoritative server unreachable",
			failure: dialback.RemoteConnectionFailed,
			reply:   `<db:result from='capulet.example' to='montague.example' type='error'><error type='cancel'><remote-connection-failed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>`,
		},
		{
			name:    "Authoritative server not found",
			failure: stanza.RemoteServerNotFound,
			reply:   `<db:result from='capulet.example' to='montague.example' type='error'><error type='cancel'><remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := inbound(t)
			if tt.otherPair {
				if err := s.Authorize("montague.example", "rooms.capulet.example"); err != nil {
					t.Fatal(err)
				}
			}
			fwd := s.Handle(parse(t, req))
			if fwd.Action != dialback.Forward {
				t.Fatalf("Handle = %v, want forward", fwd.Action)
			}
			var answer dialback.Element
			if tt.failure != "" {
				answer = fwd.Verify.ErrorResponse(tt.failure)
			} else {
				answer = parse(t, tt.answer)
			}
			d := s.Conclude(answer)
			wantReply(t, d, tt.reply)
			if (d.Close == nil) != (tt.close == nil) || tt.close != nil && !errors.Is(d.Close, tt.close) {
				t.Errorf("Close = %v, want %v", d.Close, tt.close)
			}
			if got := s.MayReceive("montague.example", "capulet.example"); got != tt.mayReceive {
				t.Errorf("MayReceive = %v, want %v", got, tt.mayReceive)
			}
			if s.MaySend("capulet.example", "montague.example") {
				t.Error("MaySend for the reverse pair without bidi")
			}
			// Concluded once only.
			wantIgnore(t, s.Conclude(answer), dialback.ErrUnsolicited)
		})
	}

	t.Run("answer for another stream", func(t *testing.T) {
		s := inbound(t)
		s.Handle(parse(t, req))
		wantIgnore(t, s.Conclude(parse(t, `<db:verify from='montague.example' to='capulet.example' id='OTHER' type='valid'/>`)), dialback.ErrUnsolicited)
		if s.MayReceive("montague.example", "capulet.example") {
			t.Error("authorized by an answer for another stream")
		}
	})
	t.Run("answer for a pair not being checked", func(t *testing.T) {
		s := inbound(t)
		s.Handle(parse(t, req))
		wantIgnore(t, s.Conclude(parse(t, `<db:verify from='evil.example' to='capulet.example' id='417GAF25' type='valid'/>`)), dialback.ErrUnsolicited)
	})
	t.Run("request instead of answer", func(t *testing.T) {
		s := inbound(t)
		d := s.Handle(parse(t, req))
		wantIgnore(t, s.Conclude(d.Verify), dialback.ErrMalformed)
	})
}

// The Receiving server's side of the link to the Authoritative server.
func TestStreamVerifyLink(t *testing.T) {
	v := dialback.Element{Kind: dialback.KindVerify, From: "capulet.example", To: "montague.example", ID: "417GAF25", Key: keyB}
	t.Run("matched answer is delivered", func(t *testing.T) {
		s := sentVerify(t)
		d := s.Handle(parse(t, `<db:verify from='montague.example' to='capulet.example' id='417GAF25' type='valid'>junk</db:verify>`))
		want := dialback.Element{Kind: dialback.KindVerify, Type: dialback.TypeValid, From: "montague.example", To: "capulet.example", ID: "417GAF25"}
		if d.Action != dialback.Deliver || d.Answer != want {
			t.Fatalf("decision = %v %+v, want deliver %+v", d.Action, d.Answer, want)
		}
		if s.Pending() != 0 {
			t.Errorf("Pending = %d", s.Pending())
		}
	})
	tests := []struct {
		name string
		s    func(*testing.T) *dialback.Stream
		v    dialback.Element
		want error
	}{
		{"same stream", func(t *testing.T) *dialback.Stream {
			return outbound(t, func(c *dialback.Config) { c.ID = "417GAF25" })
		}, v, dialback.ErrSameStream},
		{"duplicate", sentVerify, v, dialback.ErrPending},
		{"pending limit", func(t *testing.T) *dialback.Stream {
			s := outbound(t, func(c *dialback.Config) { c.ID = "V1"; c.MaxPending = 1 })
			if _, err := s.SendResult("capulet.example", "montague.example"); err != nil {
				t.Fatal(err)
			}
			return s
		}, v, dialback.ErrPendingLimit},
		{"inbound without bidi", func(t *testing.T) *dialback.Stream {
			return inbound(t, func(c *dialback.Config) { c.ID = "V1" })
		}, v, dialback.ErrMisdirected},
		{"not a request", func(t *testing.T) *dialback.Stream { return outbound(t) }, v.Response(dialback.TypeValid), dialback.ErrMalformed},
		{"result instead of verify", func(t *testing.T) *dialback.Stream { return outbound(t) },
			dialback.Element{Kind: dialback.KindResult, From: "capulet.example", To: "montague.example", ID: "x", Key: "k"}, dialback.ErrMalformed},
		{"no id", func(t *testing.T) *dialback.Stream { return outbound(t) },
			dialback.Element{Kind: dialback.KindVerify, From: "capulet.example", To: "montague.example", Key: "k"}, dialback.ErrMalformed},
		{"bad address", func(t *testing.T) *dialback.Stream { return outbound(t) },
			dialback.Element{Kind: dialback.KindVerify, From: "capulet.example", To: "a@montague.example", ID: "x", Key: "k"}, stream.ImproperAddressing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.s(t).SendVerify(tt.v); !errors.Is(err, tt.want) {
				t.Errorf("SendVerify error = %v, want %v", err, tt.want)
			}
		})
	}
}

// Authoritative server: db:verify requests for keys we made.
func TestStreamAuthoritative(t *testing.T) {
	// montague (Receiving) asks capulet (the relay, Authoritative) about the
	// key capulet sent on montague's stream D60000229F.
	tests := []struct {
		name  string
		req   string
		reply string
	}{
		{
			name:  "valid",
			req:   `<db:verify from='montague.example' to='capulet.example' id='D60000229F'>` + keyA + `</db:verify>`,
			reply: `<db:verify from='capulet.example' to='montague.example' id='D60000229F' type='valid'/>`,
		},
		{
			name:  "valid, key with whitespace",
			req:   "<db:verify from='montague.example' to='capulet.example' id='D60000229F'>\n   " + keyA + "\n</db:verify>",
			reply: `<db:verify from='capulet.example' to='montague.example' id='D60000229F' type='valid'/>`,
		},
		{
			name:  "invalid: other stream id",
			req:   `<db:verify from='montague.example' to='capulet.example' id='D60000229E'>` + keyA + `</db:verify>`,
			reply: `<db:verify from='capulet.example' to='montague.example' id='D60000229E' type='invalid'/>`,
		},
		{
			name:  "invalid: other receiving domain",
			req:   `<db:verify from='chat.montague.example' to='capulet.example' id='D60000229F'>` + keyA + `</db:verify>`,
			reply: `<db:verify from='capulet.example' to='chat.montague.example' id='D60000229F' type='invalid'/>`,
		},
		{
			name:  "invalid: key for another of our domains",
			req:   `<db:verify from='montague.example' to='rooms.capulet.example' id='D60000229F'>` + keyA + `</db:verify>`,
			reply: `<db:verify from='rooms.capulet.example' to='montague.example' id='D60000229F' type='invalid'/>`,
		},
		{
			name:  "domain we do not serve",
			req:   `<db:verify from='montague.example' to='verona.example' id='D60000229F'>` + keyA + `</db:verify>`,
			reply: `<db:verify from='verona.example' to='montague.example' id='D60000229F' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:verify>`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantReply(t, inbound(t).Handle(parse(t, tt.req)), tt.reply)
		})
	}
	t.Run("on an outbound stream without bidi", func(t *testing.T) {
		wantIgnore(t, outbound(t).Handle(parse(t, tests[0].req)), dialback.ErrMisdirected)
	})
}

func TestStreamClose(t *testing.T) {
	s := outbound(t, func(c *dialback.Config) { c.ID = "V1" })
	for _, p := range []dialback.Pair{
		{From: "rooms.capulet.example", To: "montague.example"},
		{From: "capulet.example", To: "montague.example"},
	} {
		if _, err := s.SendResult(p.From, p.To); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"S2", "S1"} {
		if _, err := s.SendVerify(dialback.Element{Kind: dialback.KindVerify, From: "capulet.example", To: "montague.example", ID: id, Key: "k"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Authorize("capulet.example", "chat.montague.example"); err != nil {
		t.Fatal(err)
	}

	ds := s.Close()
	type short struct {
		action  dialback.Action
		pair    dialback.Pair
		outcome dialback.Outcome
		answer  string
	}
	var got []short
	for _, d := range ds {
		got = append(got, short{d.Action, d.Pair, d.Outcome, wire(d.Answer)})
	}
	want := []short{
		{dialback.Settle, dialback.Pair{From: "capulet.example", To: "montague.example"}, dialback.Failed,
			`<db:result from='montague.example' to='capulet.example' type='error'><error type='cancel'><remote-server-timeout xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>`},
		{dialback.Settle, dialback.Pair{From: "rooms.capulet.example", To: "montague.example"}, dialback.Failed,
			`<db:result from='montague.example' to='rooms.capulet.example' type='error'><error type='cancel'><remote-server-timeout xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>`},
		{dialback.Deliver, dialback.Pair{}, 0,
			`<db:verify from='montague.example' to='capulet.example' id='S1' type='error'><error type='cancel'><remote-server-timeout xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:verify>`},
		{dialback.Deliver, dialback.Pair{}, 0,
			`<db:verify from='montague.example' to='capulet.example' id='S2' type='error'><error type='cancel'><remote-server-timeout xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:verify>`},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Close =\n %+v\nwant\n %+v", got, want)
	}

	t.Run("delivered failure concludes the inbound stream", func(t *testing.T) {
		in := inbound(t, func(c *dialback.Config) { c.ID = "S1" })
		if d := in.Handle(parse(t, `<db:result from='montague.example' to='capulet.example'>k</db:result>`)); d.Action != dialback.Forward {
			t.Fatalf("Handle = %v", d.Action)
		}
		wantReply(t, in.Conclude(ds[2].Answer),
			`<db:result from='capulet.example' to='montague.example' type='error'><error type='cancel'><remote-server-timeout xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>`)
	})
	t.Run("everything after Close", func(t *testing.T) {
		if s.Close() != nil {
			t.Error("second Close returned decisions")
		}
		if s.Pending() != 0 {
			t.Errorf("Pending = %d", s.Pending())
		}
		if s.MaySend("capulet.example", "chat.montague.example") {
			t.Error("MaySend after Close")
		}
		wantIgnore(t, s.Handle(parse(t, `<db:result from='montague.example' to='capulet.example' type='valid'/>`)), dialback.ErrClosed)
		if _, err := s.SendResult("capulet.example", "montague.example"); !errors.Is(err, dialback.ErrClosed) {
			t.Errorf("SendResult after Close: %v", err)
		}
		if err := s.Authorize("capulet.example", "montague.example"); !errors.Is(err, dialback.ErrClosed) {
			t.Errorf("Authorize after Close: %v", err)
		}
	})
	t.Run("received requests are abandoned", func(t *testing.T) {
		in := inbound(t)
		in.Handle(parse(t, `<db:result from='montague.example' to='capulet.example'>k</db:result>`))
		if ds := in.Close(); len(ds) != 0 {
			t.Errorf("Close = %+v, want nothing", ds)
		}
	})
}

// XEP-0288: requests flow both ways and pairs authorize their reverse.
func TestStreamBidi(t *testing.T) {
	t.Run("inbound", func(t *testing.T) {
		s := inbound(t, bidi)
		d := s.Handle(parse(t, `<db:result from='montague.example' to='capulet.example'>k</db:result>`))
		d = s.Conclude(d.Verify.Response(dialback.TypeValid))
		if d.Action != dialback.Reply {
			t.Fatalf("Conclude = %v", d.Action)
		}
		if !s.MayReceive("montague.example", "capulet.example") || !s.MaySend("capulet.example", "montague.example") {
			t.Error("verified pair or its reverse not authorized")
		}
		if s.MaySend("rooms.capulet.example", "montague.example") {
			t.Error("MaySend for a pair never verified")
		}
		// The relay runs dialback for another of its domains on the
		// peer's stream.
		el, err := s.SendResult("rooms.capulet.example", "montague.example")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := el.Key, mustSecret(t, testSecret).Key("montague.example", "rooms.capulet.example", "417GAF25"); got != want {
			t.Error("key not made with the stream's id")
		}
		d = s.Handle(parse(t, `<db:result from='montague.example' to='rooms.capulet.example' type='valid'/>`))
		if d.Action != dialback.Settle || d.Outcome != dialback.Authorized {
			t.Fatalf("Handle = %v %v", d.Action, d.Outcome)
		}
		if !s.MaySend("rooms.capulet.example", "montague.example") || !s.MayReceive("montague.example", "rooms.capulet.example") {
			t.Error("pair or its reverse not authorized")
		}
	})
	t.Run("outbound with SASL", func(t *testing.T) {
		s := outbound(t, bidi)
		if err := s.Authorize("capulet.example", "montague.example"); err != nil {
			t.Fatal(err)
		}
		if !s.MaySend("capulet.example", "montague.example") || !s.MayReceive("montague.example", "capulet.example") {
			t.Error("SASL pair or its reverse not authorized")
		}
	})
	t.Run("without bidi no reverse", func(t *testing.T) {
		s := inbound(t)
		if err := s.Authorize("montague.example", "capulet.example"); err != nil {
			t.Fatal(err)
		}
		if !s.MayReceive("montague.example", "capulet.example") {
			t.Error("SASL pair not authorized")
		}
		if s.MaySend("capulet.example", "montague.example") {
			t.Error("reverse pair authorized without bidi")
		}
	})
}

func TestNewStreamPanics(t *testing.T) {
	for name, c := range map[string]dialback.Config{
		"no secret": {Serves: serves()},
		"no serves": {Secret: mustSecret(t, "x")},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("NewStream did not panic")
				}
			}()
			dialback.NewStream(c)
		})
	}
}

// MayReceive runs for every stanza the peer sends.
func BenchmarkMayReceive(b *testing.B) {
	s := dialback.NewStream(dialback.Config{ID: "x", Secret: mustSecret(b, "x"), Serves: serves("capulet.example")})
	for _, p := range []string{"montague.example", "chat.montague.example", "rooms.montague.example"} {
		if err := s.Authorize(p, "capulet.example"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if !s.MayReceive("chat.montague.example", "capulet.example") {
			b.Fatal("not authorized")
		}
	}
}
