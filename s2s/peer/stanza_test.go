package peer_test

import (
	"bytes"
	"encoding/xml"
	"testing"

	"github.com/fedrelay/fedrelay/s2s/peer"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

func TestStanzas(t *testing.T) {
	tests := []struct {
		name                string
		st                  peer.Stanza
		raw                 string
		kind                wire.Kind
		body                string
		ping                bool
		errType, cond, text string
	}{
		{name: "message", st: peer.Message("a@x.test/r", "b@y.test", "1", "<hi> & 'bye'"),
			raw:  "<message from='a@x.test/r' to='b@y.test' id='1' type='chat'><body>&lt;hi&gt; &amp; &#39;bye&#39;</body></message>",
			kind: wire.Message, body: "<hi> & 'bye'"},
		{name: "available presence", st: peer.Presence("a@x.test", "b@y.test", "2", ""),
			raw: "<presence from='a@x.test' to='b@y.test' id='2'/>", kind: wire.Presence},
		{name: "subscribe", st: peer.Presence("a@x.test", "b@y.test", "3", "subscribe"),
			raw: "<presence from='a@x.test' to='b@y.test' id='3' type='subscribe'/>", kind: wire.Presence},
		{name: "ping", st: peer.Ping("a@x.test/r", "y.test", "4"),
			raw:  "<iq from='a@x.test/r' to='y.test' id='4' type='get'><ping xmlns='urn:xmpp:ping'/></iq>",
			kind: wire.IQ, ping: true},
		{name: "iq get", st: peer.IQ("a@x.test/r", "y.test", "5", "get"),
			raw:  "<iq from='a@x.test/r' to='y.test' id='5' type='get'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
			kind: wire.IQ},
		{name: "iq result", st: peer.IQ("y.test", "a@x.test/r", "5", "result"),
			raw: "<iq from='y.test' to='a@x.test/r' id='5' type='result'/>", kind: wire.IQ},
		{name: "bounce", st: peer.Stanza{Element: peer.Element{Name: "message", Type: "error",
			Raw: "<message from='c@nowhere.invalid' to='a@x.test' id='5' type='error'><error type='cancel'>" +
				"<remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>" +
				"<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>domain not found</text></error></message>"}},
			errType: "cancel", cond: "remote-server-not-found", text: "domain not found"},
		{name: "ping in another namespace", st: peer.Stanza{Element: peer.Element{Name: "iq", Type: "get",
			Raw: "<iq type='get' id='6'><ping xmlns='urn:example:ping'/></iq>"}}},
		{name: "body after another child", st: peer.Stanza{Element: peer.Element{Name: "message",
			Raw: "<message><thread>t<body>not this</body></thread><body>this</body></message>"}}, body: "this"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.raw != "" && tc.st.Raw != tc.raw {
				t.Errorf("raw\n%s\nwant\n%s", tc.st.Raw, tc.raw)
			}
			if tc.raw != "" && tc.st.Kind != tc.kind {
				t.Errorf("kind %s, want %s", tc.st.Kind, tc.kind)
			}
			if got := tc.st.Body(); got != tc.body {
				t.Errorf("body %q, want %q", got, tc.body)
			}
			if got := tc.st.IsPing(); got != tc.ping {
				t.Errorf("IsPing %v, want %v", got, tc.ping)
			}
			typ, cond, text := tc.st.StanzaError()
			if typ != tc.errType || cond != tc.cond || text != tc.text {
				t.Errorf("StanzaError() = %q %q %q, want %q %q %q", typ, cond, text, tc.errType, tc.cond, tc.text)
			}
		})
	}
	if n := len(peer.BigMessage("a@x.test", "b@y.test", "7", 3000).Body()); n != 3000 {
		t.Errorf("BigMessage body of %d bytes, want 3000", n)
	}
}

func TestStreamErrorCondition(t *testing.T) {
	for raw, want := range map[string]string{
		"<stream:error><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>bye</text><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>": "policy-violation",
		"<stream:error><system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>":                                                              "system-shutdown",
		"<stream:error><other xmlns='urn:example'/></stream:error>":                                                                                                "",
	} {
		if got := (peer.Element{Raw: raw}).StreamErrorCondition(); got != want {
			t.Errorf("%s: condition %q, want %q", raw, got, want)
		}
	}
}

func TestDomainOf(t *testing.T) {
	for jid, want := range map[string]string{
		"ann@X.Test/desk@home": "x.test", "x.test.": "x.test", "x.test/r": "x.test", "": "", "@x.test": "",
	} {
		if got := peer.DomainOf(jid); got != want {
			t.Errorf("DomainOf(%q) = %q, want %q", jid, got, want)
		}
	}
}

// FuzzEscape: Escape writes what encoding/xml.EscapeText writes.
func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "plain text", "<hi> & 'bye' \"q\"", "tab\tnl\ncr\r", "\x00\x7f\xff", "héllo ✓"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var b bytes.Buffer
		xml.EscapeText(&b, []byte(s))
		if got := peer.Escape(s); got != b.String() {
			t.Errorf("Escape(%q) = %q, want %q", s, got, b.String())
		}
	})
}

func BenchmarkEscape(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		peer.Escape("alice@a.example/laptop")
	}
}
