package dialback_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/fedrelay/fedrelay/dialback"
	"mellium.im/xmpp/stream"
)

// fuzzSeeds are dialback elements as real servers write them (Prosody,
// ejabberd, the XEP-0220 examples) and a few broken ones.
var fuzzSeeds = []string{
	// Prosody: request, then its answer with an id.
	`<db:result from='a.test' to='b.test'>` + keyA + `</db:result>`,
	`<db:result type='valid' from='b.test' to='a.test' id='8c6f2bd4-2c29-4d16-8e55-4d3b2a1e1d5b'/>`,
	`<db:result type='invalid' from='b.test' to='a.test' id='x'>` + keyA + `</db:result>`,
	// ejabberd: double quotes, verify-only connection.
	`<db:result from="a.test" to="b.test">` + keyA + `</db:result>`,
	`<db:verify from="b.test" to="a.test" id="4193734913">` + keyB + `</db:verify>`,
	`<db:verify from="a.test" to="b.test" id="4193734913" type="valid"/>`,
	// XEP-0220 examples.
	"<db:result\n          from='capulet.example'\n          to='montague.example'>\n        " + keyA + "\n      </db:result>",
	"<db:result\n          from='montague.example'\n          to='capulet.example'\n          type='error'>\n        <error type='cancel'>\n          <item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\n        </error>\n      </db:result>",
	"<db:verify\n          from='capulet.example'\n          id='417GAF25'\n          to='montague.example'>\n       " + keyB + "\n     </db:verify>",
	`<db:verify from='montague.example' id='417GAF25' to='capulet.example' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:verify>`,
	// Dialback error conditions from XEP-0220.
	`<db:result from='b.test' to='a.test' type='error'><error type='cancel'><remote-connection-failed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>`,
	`<db:result from='b.test' to='a.test' type='error'><error type='cancel'><remote-server-timeout xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>timed out</text></error></db:result>`,
	`<db:result from='b.test' to='a.test' type='error'><error type='cancel'><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>`,
	`<db:result from='b.test' to='a.test' type='error'><error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>`,
	`<db:result from='b.test' to='a.test' type='error'><error type='cancel'><out-of-cheese xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>`,
	// Namespaces, escapes, addresses.
	`<db:result xmlns:db='jabber:server:dialback' from='a.test' to='b.test'>k</db:result>`,
	`<result xmlns='jabber:server:dialback' from='a.test' to='b.test'>k</result>`,
	`<db:verify from='MÜNCHEN.example.' to='[2001:db8::1]' id='&lt;&#x9;&amp;'><![CDATA[k]]>&amp;</db:verify>`,
	`<db:result from='user@a.test' to='b.test/r'>k</db:result>`,
	`<db:result from='a.test' from='b.test' to='b.test'>k</db:result>`,
	`<db:result from='a.test' to='b.test'><!-- c -->k</db:result>`,
	`<db:result from='a.test' to='b.test'>k`,
	``,
}

// FuzzParse checks that Parse never panics, that its errors say which stream
// error to send, and that whatever it accepts survives Append and Parse
// unchanged (and Append is then a fixed point). Each element is also handed
// to streams of both directions, which must not panic either.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	secret := mustSecret(f, testSecret)
	f.Fuzz(func(t *testing.T, raw []byte) {
		e, err := dialback.Parse(raw)
		if err != nil {
			var se stream.Error
			if !errors.As(err, &se) || se.Err == "" {
				t.Fatalf("Parse error %q wraps no stream error", err)
			}
			if e != (dialback.Element{}) {
				t.Fatalf("Parse returned %+v with an error", e)
			}
			return
		}
		out := e.Append(nil)
		e2, err := dialback.Parse(out)
		if err != nil {
			t.Fatalf("Parse(Append(%+v)) = %v\n%s", e, err, out)
		}
		if e2 != e {
			t.Fatalf("round trip changed the element:\n %+v\n %+v\n%s", e, e2, out)
		}
		if out2 := e2.Append(nil); !bytes.Equal(out, out2) {
			t.Fatalf("Append not stable:\n %s\n %s", out, out2)
		}
		for _, d := range []string{e.From, e.To} {
			if n, err := dialback.Domain(d); err != nil || n != d {
				t.Fatalf("domain %q not in normal form: %q, %v", d, n, err)
			}
		}
		for _, c := range []dialback.Config{
			{ID: "s1", Secret: secret, Serves: func(string) bool { return true }},
			{ID: "s1", Outbound: true, Bidi: true, Secret: secret, Serves: func(string) bool { return false }},
		} {
			s := dialback.NewStream(c)
			d := s.Handle(e)
			if d.Action == dialback.Forward {
				s.Conclude(d.Verify.ErrorResponse(""))
			}
			s.Close()
		}
	})
}
