package dialback_test

import (
	"errors"
	"testing"

	"github.com/fedrelay/fedrelay/dialback"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"
)

const (
	keyA = "b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3"
	keyB = "225cc5aa6a071133249d25fef42ae516fc7a86c523aa1c6980a7f73e784c972d"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want dialback.Element
	}{
		{
			name: "result request (Prosody)",
			raw:  `<db:result from='a.test' to='b.test'>` + keyA + `</db:result>`,
			want: dialback.Element{Kind: dialback.KindResult, From: "a.test", To: "b.test", Key: keyA},
		},
		{
			name: "result request, double quotes (ejabberd)",
			raw:  `<db:result from="a.test" to="b.test">` + keyA + `</db:result>`,
			want: dialback.Element{Kind: dialback.KindResult, From: "a.test", To: "b.test", Key: keyA},
		},
		{
			name: "result request, pretty-printed key (XEP-0220 example 1)",
			raw: `<db:result
          from='capulet.example'
          to='montague.example'>
        ` + keyA + `
      </db:result>`,
			want: dialback.Element{Kind: dialback.KindResult, From: "capulet.example", To: "montague.example", Key: keyA},
		},
		{
			name: "result request, CDATA key",
			raw:  `<db:result from='a.test' to='b.test'><![CDATA[` + keyA + `]]></db:result>`,
			want: dialback.Element{Kind: dialback.KindResult, From: "a.test", To: "b.test", Key: keyA},
		},
		{
			name: "result valid with id (Prosody)",
			raw:  `<db:result type='valid' from='b.test' to='a.test' id='f00b4r'/>`,
			want: dialback.Element{Kind: dialback.KindResult, Type: dialback.TypeValid, From: "b.test", To: "a.test", ID: "f00b4r"},
		},
		{
			name: "result invalid",
			raw:  `<db:result from="montague.example" to="capulet.example" type="invalid"/>`,
			want: dialback.Element{Kind: dialback.KindResult, Type: dialback.TypeInvalid, From: "montague.example", To: "capulet.example"},
		},
		{
			name: "result valid with key text",
			raw:  `<db:result from='b.test' to='a.test' type='valid'>` + keyA + `</db:result>`,
			want: dialback.Element{Kind: dialback.KindResult, Type: dialback.TypeValid, From: "b.test", To: "a.test", Key: keyA},
		},
		{
			name: "result error item-not-found",
			raw: `<db:result from='montague.example' to='capulet.example' type='error'>
        <error type='cancel'>
          <item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
        </error>
      </db:result>`,
			want: dialback.Element{Kind: dialback.KindResult, Type: dialback.TypeError, From: "montague.example", To: "capulet.example", Condition: stanza.ItemNotFound},
		},
		{
			name: "result error with text",
			raw:  `<db:result from='b.test' to='a.test' type='error'><error type='cancel'><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>nope</text><remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>`,
			want: dialback.Element{Kind: dialback.KindResult, Type: dialback.TypeError, From: "b.test", To: "a.test", Condition: stanza.RemoteServerNotFound},
		},
		{
			name: "result error remote-connection-failed",
			raw:  `<db:result from='b.test' to='a.test' type='error'><error type='cancel'><remote-connection-failed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>`,
			want: dialback.Element{Kind: dialback.KindResult, Type: dialback.TypeError, From: "b.test", To: "a.test", Condition: dialback.RemoteConnectionFailed},
		},
		{
			name: "result error unknown condition",
			raw:  `<db:result from='b.test' to='a.test' type='error'><error type='cancel'><out-of-cheese xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>`,
			want: dialback.Element{Kind: dialback.KindResult, Type: dialback.TypeError, From: "b.test", To: "a.test", Condition: stanza.UndefinedCondition},
		},
		{
			name: "result error condition in another namespace",
			raw:  `<db:result from='b.test' to='a.test' type='error'><error type='cancel'><item-not-found xmlns='urn:example'/></error></db:result>`,
			want: dialback.Element{Kind: dialback.KindResult, Type: dialback.TypeError, From: "b.test", To: "a.test", Condition: stanza.UndefinedCondition},
		},
		{
			name: "result error without error child",
			raw:  `<db:result from='b.test' to='a.test' type='error'/>`,
			want: dialback.Element{Kind: dialback.KindResult, Type: dialback.TypeError, From: "b.test", To: "a.test", Condition: stanza.UndefinedCondition},
		},
		{
			name: "error child on a valid answer is ignored",
			raw:  `<db:result from='b.test' to='a.test' type='valid'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>`,
			want: dialback.Element{Kind: dialback.KindResult, Type: dialback.TypeValid, From: "b.test", To: "a.test"},
		},
		{
			name: "verify request (XEP-0220 example 5)",
			raw: `<db:verify
          from='capulet.example'
          id='417GAF25'
          to='montague.example'>
       ` + keyB + `
     </db:verify>`,
			want: dialback.Element{Kind: dialback.KindVerify, From: "capulet.example", To: "montague.example", ID: "417GAF25", Key: keyB},
		},
		{
			name: "verify valid",
			raw:  `<db:verify from='montague.example' id='417GAF25' to='capulet.example' type='valid'/>`,
			want: dialback.Element{Kind: dialback.KindVerify, Type: dialback.TypeValid, From: "montague.example", To: "capulet.example", ID: "417GAF25"},
		},
		{
			name: "verify invalid",
			raw:  `<db:verify from="montague.example" id="417GAF25" to="capulet.example" type="invalid"></db:verify>`,
			want: dialback.Element{Kind: dialback.KindVerify, Type: dialback.TypeInvalid, From: "montague.example", To: "capulet.example", ID: "417GAF25"},
		},
		{
			name: "verify error",
			raw:  `<db:verify from='montague.example' id='417GAF25' to='capulet.example' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:verify>`,
			want: dialback.Element{Kind: dialback.KindVerify, Type: dialback.TypeError, From: "montague.example", To: "capulet.example", ID: "417GAF25", Condition: stanza.ItemNotFound},
		},
		{
			name: "prefix declared on the element",
			raw:  `<db:result xmlns:db='jabber:server:dialback' from='a.test' to='b.test'>k</db:result>`,
			want: dialback.Element{Kind: dialback.KindResult, From: "a.test", To: "b.test", Key: "k"},
		},
		{
			name: "default namespace declared on the element",
			raw:  `<result xmlns='jabber:server:dialback' from='a.test' to='b.test'>k</result>`,
			want: dialback.Element{Kind: dialback.KindResult, From: "a.test", To: "b.test", Key: "k"},
		},
		{
			name: "other prefix bound on the stream",
			raw:  `<dialback:result from='a.test' to='b.test'>k</dialback:result>`,
			want: dialback.Element{Kind: dialback.KindResult, From: "a.test", To: "b.test", Key: "k"},
		},
		{
			name: "surrounding whitespace and unknown attributes and children",
			raw:  "\n <db:result xml:lang='en' version='1.0' from='a.test' to='b.test'><x xmlns='urn:example'>junk</x>k</db:result> \r\n",
			want: dialback.Element{Kind: dialback.KindResult, From: "a.test", To: "b.test", Key: "k"},
		},
		{
			name: "domains normalized",
			raw:  `<db:result from='Capulet.EXAMPLE.' to='MÜNCHEN.example'>k</db:result>`,
			want: dialback.Element{Kind: dialback.KindResult, From: "capulet.example", To: "xn--mnchen-3ya.example", Key: "k"},
		},
		{
			name: "escaped attribute values and text",
			raw:  `<db:verify from='a.test' to='b.test' id='&lt;&apos;&amp;&#x9;'>&#x41;&amp;b</db:verify>`,
			want: dialback.Element{Kind: dialback.KindVerify, From: "a.test", To: "b.test", ID: "<'&\t", Key: "A&b"},
		},
		{
			name: "IP literal domain",
			raw:  `<db:result from='192.0.2.1' to='[2001:db8::1]'>k</db:result>`,
			want: dialback.Element{Kind: dialback.KindResult, From: "192.0.2.1", To: "[2001:db8::1]", Key: "k"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := dialback.Parse([]byte(tt.raw))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got != tt.want {
				t.Errorf("Parse =\n %+v\nwant\n %+v\n(keys %q, %q)", got, tt.want, string(got.Key), string(tt.want.Key))
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want stream.Error
	}{
		{"empty", ``, stream.NotWellFormed},
		{"whitespace only", " \n", stream.NotWellFormed},
		{"unclosed", `<db:result from='a.test' to='b.test'>k`, stream.NotWellFormed},
		{"mismatched end", `<db:result from='a.test' to='b.test'>k</db:verify>`, stream.NotWellFormed},
		{"two elements", `<db:result from='a.test' to='b.test'>k</db:result><db:result from='a.test' to='b.test'>k</db:result>`, stream.NotWellFormed},
		{"text after", `<db:result from='a.test' to='b.test'>k</db:result>junk`, stream.NotWellFormed},
		{"duplicate from", `<db:result from='a.test' from='evil.test' to='b.test'>k</db:result>`, stream.NotWellFormed},
		{"duplicate type", `<db:result from='b.test' to='a.test' type='invalid' type='valid'/>`, stream.NotWellFormed},
		{"undefined entity", `<db:result from='a.test' to='b.test'>&nbsp;</db:result>`, stream.NotWellFormed},
		{"invalid UTF-8", "<db:result from='a.test' to='b.test'>\xff</db:result>", stream.NotWellFormed},
		{"comment", `<db:result from='a.test' to='b.test'><!-- hi -->k</db:result>`, stream.RestrictedXML},
		{"xml declaration", `<?xml version='1.0'?><db:result from='a.test' to='b.test'>k</db:result>`, stream.RestrictedXML},
		{"doctype", `<!DOCTYPE x><db:result from='a.test' to='b.test'>k</db:result>`, stream.RestrictedXML},
		{"unknown element", `<db:frobnicate from='a.test' to='b.test'>k</db:frobnicate>`, stream.UnsupportedStanzaType},
		{"foreign namespace", `<db:result xmlns:db='urn:example' from='a.test' to='b.test'>k</db:result>`, stream.UnsupportedStanzaType},
		{"foreign default namespace", `<result xmlns='jabber:server' from='a.test' to='b.test'>k</result>`, stream.UnsupportedStanzaType},
		{"missing from", `<db:result to='b.test'>k</db:result>`, stream.ImproperAddressing},
		{"missing to", `<db:result from='a.test'>k</db:result>`, stream.ImproperAddressing},
		{"empty from", `<db:result from='' to='b.test'>k</db:result>`, stream.ImproperAddressing},
		{"from with localpart", `<db:result from='user@a.test' to='b.test'>k</db:result>`, stream.ImproperAddressing},
		{"to with resource", `<db:result from='a.test' to='b.test/res'>k</db:result>`, stream.ImproperAddressing},
		{"verify to with localpart", `<db:verify from='a.test' to='x@b.test' id='i'>k</db:verify>`, stream.ImproperAddressing},
		{"empty label", `<db:result from='a..test' to='b.test'>k</db:result>`, stream.ImproperAddressing},
		{"underscore", `<db:result from='a_b.test' to='b.test'>k</db:result>`, stream.ImproperAddressing},
		{"prefixed from only", `<db:result db:from='a.test' to='b.test'>k</db:result>`, stream.ImproperAddressing},
		{"verify without id", `<db:verify from='a.test' to='b.test'>k</db:verify>`, stream.BadFormat},
		{"verify with empty id", `<db:verify from='a.test' to='b.test' id=''>k</db:verify>`, stream.BadFormat},
		{"verify answer without id", `<db:verify from='a.test' to='b.test' type='valid'/>`, stream.BadFormat},
		{"request without key", `<db:result from='a.test' to='b.test'/>`, stream.BadFormat},
		{"request with blank key", "<db:result from='a.test' to='b.test'> \n\t </db:result>", stream.BadFormat},
		{"verify request without key", `<db:verify from='a.test' to='b.test' id='i'></db:verify>`, stream.BadFormat},
		{"unknown type", `<db:result from='a.test' to='b.test' type='maybe'/>`, stream.BadFormat},
		{"empty type", `<db:result from='a.test' to='b.test' type=''>k</db:result>`, stream.BadFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			el, err := dialback.Parse([]byte(tt.raw))
			if err == nil {
				t.Fatalf("Parse = %+v, want error %v", el, tt.want)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("Parse error = %v, want one wrapping %v", err, tt.want)
			}
			var se stream.Error
			if !errors.As(err, &se) || se.Err != tt.want.Err {
				t.Errorf("errors.As(stream.Error) = %q, want %q", se.Err, tt.want.Err)
			}
			if el != (dialback.Element{}) {
				t.Errorf("Parse returned %+v with its error", el)
			}
		})
	}
}

func TestAppend(t *testing.T) {
	tests := []struct {
		name string
		el   dialback.Element
		want string
	}{
		{
			name: "result request",
			el:   dialback.Element{Kind: dialback.KindResult, From: "capulet.example", To: "montague.example", Key: keyA},
			want: `<db:result from='capulet.example' to='montague.example'>` + keyA + `</db:result>`,
		},
		{
			name: "result valid",
			el:   dialback.Element{Kind: dialback.KindResult, Type: dialback.TypeValid, From: "montague.example", To: "capulet.example"},
			want: `<db:result from='montague.example' to='capulet.example' type='valid'/>`,
		},
		{
			name: "verify request",
			el:   dialback.Element{Kind: dialback.KindVerify, From: "capulet.example", To: "montague.example", ID: "417GAF25", Key: keyB},
			want: `<db:verify from='capulet.example' to='montague.example' id='417GAF25'>` + keyB + `</db:verify>`,
		},
		{
			name: "verify invalid",
			el:   dialback.Element{Kind: dialback.KindVerify, Type: dialback.TypeInvalid, From: "montague.example", To: "capulet.example", ID: "417GAF25"},
			want: `<db:verify from='montague.example' to='capulet.example' id='417GAF25' type='invalid'/>`,
		},
		{
			name: "verify error",
			el:   dialback.Element{Kind: dialback.KindVerify, Type: dialback.TypeError, From: "montague.example", To: "capulet.example", ID: "417GAF25", Condition: stanza.ItemNotFound},
			want: `<db:verify from='montague.example' to='capulet.example' id='417GAF25' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:verify>`,
		},
		{
			name: "error without condition",
			el:   dialback.Element{Kind: dialback.KindResult, Type: dialback.TypeError, From: "b.test", To: "a.test"},
			want: `<db:result from='b.test' to='a.test' type='error'><error type='cancel'><undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>`,
		},
		{
			name: "escaping",
			el:   dialback.Element{Kind: dialback.KindVerify, From: "a.test", To: "b.test", ID: "<'\"&>\t\r\n\x00", Key: "k<&>\xff"},
			want: `<db:verify from='a.test' to='b.test' id='&lt;&apos;&quot;&amp;&gt;&#x9;&#xD;&#xA;` + "\uFFFD" + `'>k&lt;&amp;&gt;` + "\uFFFD" + `</db:verify>`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.el.Append([]byte("prefix"))
			if string(got) != "prefix"+tt.want {
				t.Errorf("Append =\n %s\nwant\n prefix%s", got, tt.want)
			}
			if _, err := dialback.Parse(got[len("prefix"):]); err != nil {
				t.Errorf("Parse(Append) error: %v", err)
			}
		})
	}
}

func TestResponse(t *testing.T) {
	res := dialback.Element{Kind: dialback.KindResult, From: "a.test", To: "b.test", ID: "ignored", Key: "k"}
	ver := dialback.Element{Kind: dialback.KindVerify, From: "b.test", To: "a.test", ID: "s1", Key: "k"}
	tests := []struct {
		name     string
		got      dialback.Element
		want     dialback.Element
		wantPair dialback.Pair
	}{
		{"result request", res, res, dialback.Pair{From: "a.test", To: "b.test"}},
		{"verify request", ver, ver, dialback.Pair{From: "a.test", To: "b.test"}},
		{
			"result valid", res.Response(dialback.TypeValid),
			dialback.Element{Kind: dialback.KindResult, Type: dialback.TypeValid, From: "b.test", To: "a.test"},
			dialback.Pair{From: "a.test", To: "b.test"},
		},
		{
			"verify invalid", ver.Response(dialback.TypeInvalid),
			dialback.Element{Kind: dialback.KindVerify, Type: dialback.TypeInvalid, From: "a.test", To: "b.test", ID: "s1"},
			dialback.Pair{From: "a.test", To: "b.test"},
		},
		{
			"result error", res.ErrorResponse(stanza.PolicyViolation),
			dialback.Element{Kind: dialback.KindResult, Type: dialback.TypeError, From: "b.test", To: "a.test", Condition: stanza.PolicyViolation},
			dialback.Pair{From: "a.test", To: "b.test"},
		},
		{
			"verify error without condition", ver.ErrorResponse(""),
			dialback.Element{Kind: dialback.KindVerify, Type: dialback.TypeError, From: "a.test", To: "b.test", ID: "s1", Condition: stanza.UndefinedCondition},
			dialback.Pair{From: "a.test", To: "b.test"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %+v, want %+v", tt.got, tt.want)
			}
			if p := tt.got.Pair(); p != tt.wantPair {
				t.Errorf("Pair = %+v, want %+v", p, tt.wantPair)
			}
		})
	}
}

func TestDomain(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"example.org", "example.org", true},
		{"Example.ORG.", "example.org", true},
		{"münchen.example", "xn--mnchen-3ya.example", true},
		{"xn--mnchen-3ya.example", "xn--mnchen-3ya.example", true},
		{"XN--MNCHEN-3YA.example", "xn--mnchen-3ya.example", true},
		{"localhost", "localhost", true},
		{"192.0.2.1", "192.0.2.1", true},
		{"[2001:db8::1]", "[2001:db8::1]", true},
		{"", "", false},
		{".", "", false},
		{"a..b", "", false},
		{"-a.example", "", false},
		{"a-.example", "", false},
		{"user@example.org", "", false},
		{"example.org/res", "", false},
		{"exa mple.org", "", false},
		{"xn--a.example", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := dialback.Domain(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("Domain(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
			}
			if err != nil && !errors.Is(err, stream.ImproperAddressing) {
				t.Errorf("error %v does not wrap improper-addressing", err)
			}
		})
	}
}
