package wire_test

import (
	"encoding/xml"
	"fmt"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/fedrelay/fedrelay/s2s/wire"
)

func TestAppendBounce(t *testing.T) {
	notFound := stanza.Error{Type: stanza.Cancel, Condition: stanza.RemoteServerNotFound}
	timeout := stanza.Error{Type: stanza.Wait, Condition: stanza.RemoteServerTimeout,
		Text: map[string]string{"en": "no answer from b.test <in 30s>", "": "x", "de": "keine Antwort"},
		By:   jid.MustParse("relay.example")}
	for _, tc := range []struct {
		name, el string
		se       stanza.Error
		want     string // "" for no bounce
	}{
		{"message", messageChat, notFound,
			`<message from='romeo@b.test' to='juliet@a.test/balcony' type='error' id='m-1'><error type='cancel'><remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`},
		{"iq get, texts and by", iqPing, timeout,
			`<iq from='b.test' to='a.test' type='error' id='ping-7'><error type='wait' by='relay.example'><remote-server-timeout xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>` +
				`<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>x</text>` +
				`<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='de'>keine Antwort</text>` +
				`<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>no answer from b.test &lt;in 30s&gt;</text></error></iq>`},
		{"presence without id", presenceCaps, notFound,
			`<presence from='romeo@b.test' to='juliet@a.test/balcony' type='error'><error type='cancel'><remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>`},
		{"escaped id and addresses", messageEscaped, stanza.Error{Condition: "bogus condition!", Type: "later"},
			`<message from='romeo@b.test' to='juliet@a.test/balcony' type='error' id='m&amp;2'><error type='cancel'><undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`},
		{"empty id kept", `<message to='b' from='a' id=''/>`, notFound,
			`<message from='b' to='a' type='error' id=''><error type='cancel'><remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`},
		{"error message", `<message to='b' from='a' type='error'><error type='cancel'/></message>`, notFound, ""},
		{"error iq", `<iq to='b' from='a' type='error' id='1'/>`, notFound, ""},
		{"error presence", `<presence to='b' from='a' type='error'/>`, notFound, ""},
		{"iq result", iqResult, notFound, ""},
		{"no from", `<message to='b'/>`, notFound, ""},
		{"dialback", dbResult, notFound, ""},
		{"prefixed stanza", `<s:message xmlns:s='jabber:server' to='b' from='a'/>`, notFound, ""},
		{"client namespace", `<message xmlns='jabber:client' to='b' from='a'/>`, notFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := firstElement(t, prosodyHeader, tc.el)
			got, ok := wire.AppendBounce([]byte("x"), e, tc.se)
			if ok != (tc.want != "") || string(got) != "x"+tc.want {
				t.Fatalf("got %v\n%s\nwant\nx%s", ok, got, tc.want)
			}
			if !ok {
				return
			}
			// mellium reads the error back.
			d := xml.NewDecoder(strings.NewReader(string(got[1:])))
			d.Token() // into the stanza
			se, err := stanza.UnmarshalError(d)
			if err != nil {
				t.Fatal(err)
			}
			if se.Condition != tc.se.Condition && se.Condition != stanza.UndefinedCondition || se.Type == "" || len(se.Text) != len(tc.se.Text) {
				t.Errorf("mellium reads %+v", se)
			}
		})
	}
}

func TestAppendBounceAllocs(t *testing.T) {
	e := firstElement(t, prosodyHeader, messageChat)
	se := stanza.Error{Type: stanza.Cancel, Condition: stanza.ServiceUnavailable, Text: map[string]string{"en": "gone", "fr": "parti"}}
	dst := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { dst, _ = wire.AppendBounce(dst[:0], e, se) }); n != 0 {
		t.Errorf("%v allocations per bounce", n)
	}
}

func ExampleAppendBounce() {
	r := wire.NewReader(strings.NewReader(prosodyHeader+iqPing), wire.Limits{})
	r.ReadHeader()
	e, _ := r.Next()
	// The relay could not resolve b.test: answer the sender on the stream
	// toward it.
	out, ok := wire.AppendBounce(nil, e, stanza.Error{Type: stanza.Cancel, Condition: stanza.RemoteServerNotFound})
	fmt.Println(ok)
	fmt.Printf("%s\n", out)
	// Output:
	// true
	// <iq from='b.test' to='a.test' type='error' id='ping-7'><error type='cancel'><remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>
}
