package demo_test

import (
	"testing"

	"github.com/fedrelay/fedrelay/cmd/fedrelay/demo"
)

func TestStanzas(t *testing.T) {
	tests := []struct {
		name                string
		st                  demo.Stanza
		raw                 string
		body                string
		ping                bool
		errType, cond, text string
	}{
		{name: "message", st: demo.Message("a@x.test/r", "b@y.test", "1", "<hi> & 'bye'"),
			raw:  "<message from='a@x.test/r' to='b@y.test' id='1' type='chat'><body>&lt;hi&gt; &amp; &#39;bye&#39;</body></message>",
			body: "<hi> & 'bye'"},
		{name: "available presence", st: demo.Presence("a@x.test", "b@y.test", "2", ""),
			raw: "<presence from='a@x.test' to='b@y.test' id='2'/>"},
		{name: "subscribe", st: demo.Presence("a@x.test", "b@y.test", "3", "subscribe"),
			raw: "<presence from='a@x.test' to='b@y.test' id='3' type='subscribe'/>"},
		{name: "ping", st: demo.Ping("a@x.test/r", "y.test", "4"),
			raw:  "<iq from='a@x.test/r' to='y.test' id='4' type='get'><ping xmlns='urn:xmpp:ping'/></iq>",
			ping: true},
		{name: "bounce", st: demo.Stanza{Kind: "message", Type: "error",
			Raw: "<message from='c@nowhere.invalid' to='a@x.test' id='5' type='error'><error type='cancel'>" +
				"<remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>" +
				"<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>domain not found</text></error></message>"},
			errType: "cancel", cond: "remote-server-not-found", text: "domain not found"},
		{name: "ping in another namespace", st: demo.Stanza{Kind: "iq", Type: "get",
			Raw: "<iq type='get' id='6'><ping xmlns='urn:example:ping'/></iq>"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.raw != "" && tc.st.Raw != tc.raw {
				t.Errorf("raw\n%s\nwant\n%s", tc.st.Raw, tc.raw)
			}
			if got := tc.st.Body(); got != tc.body {
				t.Errorf("body %q, want %q", got, tc.body)
			}
			if got := tc.st.IsPing(); got != tc.ping {
				t.Errorf("IsPing %v, want %v", got, tc.ping)
			}
			typ, cond, text := tc.st.Error()
			if typ != tc.errType || cond != tc.cond || text != tc.text {
				t.Errorf("Error() = %q %q %q, want %q %q %q", typ, cond, text, tc.errType, tc.cond, tc.text)
			}
		})
	}
}
