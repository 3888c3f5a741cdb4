package wire_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"mellium.im/xmpp/stream"

	"github.com/fedrelay/fedrelay/s2s/wire"
)

// Stream headers as real servers send them.
const (
	// Prosody 0.12.
	prosodyHeader = `<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' xml:lang='en' version='1.0' to='b.test' from='a.test'>`
	// ejabberd style: double quotes, xmlns:db first, a response with an id.
	ejabberdHeader = `<?xml version="1.0"?>` + "\n" + `<stream:stream xmlns:db="jabber:server:dialback" xmlns:stream="http://etherx.jabber.org/streams" xmlns="jabber:server" xml:lang="en" id="9b3c2a17-4e51-4c8e-b0f2-1d6a5e7c8f90" from="b.test" to="a.test" version="1.0">`
)

// Elements of a federation session, one per line of a transcript.
const (
	featuresTLS      = `<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>`
	starttls         = `<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`
	proceed          = `<proceed xmlns="urn:ietf:params:xml:ns:xmpp-tls"/>`
	featuresAuth     = `<stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms><limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>524288</max-bytes><idle-seconds>840</idle-seconds></limits></stream:features>`
	dbResult         = `<db:result from='a.test' to='b.test'>37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643</db:result>`
	dbResultValid    = `<db:result from="b.test" to="a.test" type="valid"/>`
	dbVerify         = `<db:verify from='b.test' to='a.test' id='D60000229F'>37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643</db:verify>`
	messageChat      = `<message from='juliet@a.test/balcony' to='romeo@b.test' type='chat' id='m-1' xml:lang='en'><body>Wherefore art thou, Romeo?</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`
	messageEscaped   = `<message from="juliet@a.test/balcony" to="romeo@b.test" type="chat" id="m&amp;2"><body>1 &lt; 2 &amp;&amp; &#x1F600; &#233;t&#xe9; — ok</body><composing xmlns="http://jabber.org/protocol/chatstates"/></message>`
	messageCDATA     = `<message from='juliet@a.test' to='romeo@b.test'><body><![CDATA[<b>bold</b> & ]] > ]]></body></message>`
	presenceCaps     = `<presence from='juliet@a.test/balcony' to='romeo@b.test'><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://conversations.im' ver='q07IKJEyjvHSyhy//CH0CxmKi8w='/><priority>5</priority><show>away</show></presence>`
	iqPing           = `<iq type='get' id='ping-7' from='a.test' to='b.test'><ping xmlns='urn:xmpp:ping'/></iq>`
	iqResult         = `<iq type='result' id='ping-7' from='b.test' to='a.test'/>`
	streamEnd        = `</stream:stream>`
	prosodyAuthInput = prosodyHeader + "\n" + featuresAuth + dbResult + " " + messageChat + "\n\t" + presenceCaps + iqPing + iqResult + messageEscaped + messageCDATA + " " + streamEnd
)

// item is what the tests remember of an Element.
type item struct {
	kind                    wire.Kind
	raw, local, ns          string
	to, from, typ, id, text string
	hasID                   bool
}

func snapshot(e *wire.Element) item {
	return item{
		kind: e.Kind, raw: string(e.Raw), local: string(e.Local), ns: string(e.NS),
		to: string(e.To), from: string(e.From), typ: string(e.Type), id: string(e.ID),
		hasID: e.ID != nil, text: string(e.AppendText(nil)),
	}
}

// readStream reads a header and then elements until an error.
func readStream(src io.Reader, lim wire.Limits, auth bool) (*wire.Header, []item, error) {
	r := wire.NewReader(src, lim)
	h, err := r.ReadHeader()
	if err != nil {
		return h, nil, err
	}
	r.SetAuthenticated(auth)
	var items []item
	for {
		e, err := r.Next()
		if err != nil {
			return h, items, err
		}
		items = append(items, snapshot(e))
	}
}

func TestTranscripts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		input  string
		header wire.Header
		want   []item
	}{{
		name:  "prosody",
		input: prosodyAuthInput,
		header: wire.Header{To: "b.test", From: "a.test", Version: "1.0", Lang: "en", Prefix: "stream",
			NS: []wire.NS{{"", wire.NSServer}, {"stream", wire.NSStream}, {"db", wire.NSDialback}}},
		want: []item{
			{kind: wire.Features, raw: featuresAuth, local: "features", ns: wire.NSStream, text: "EXTERNAL524288840"},
			{kind: wire.DialbackResult, raw: dbResult, local: "result", ns: wire.NSDialback, to: "b.test", from: "a.test",
				text: "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"},
			{kind: wire.Message, raw: messageChat, local: "message", ns: wire.NSServer, to: "romeo@b.test",
				from: "juliet@a.test/balcony", typ: "chat", id: "m-1", hasID: true, text: "Wherefore art thou, Romeo?"},
			{kind: wire.Presence, raw: presenceCaps, local: "presence", ns: wire.NSServer, to: "romeo@b.test",
				from: "juliet@a.test/balcony", text: "5away"},
			{kind: wire.IQ, raw: iqPing, local: "iq", ns: wire.NSServer, to: "b.test", from: "a.test", typ: "get", id: "ping-7", hasID: true},
			{kind: wire.IQ, raw: iqResult, local: "iq", ns: wire.NSServer, to: "a.test", from: "b.test", typ: "result", id: "ping-7", hasID: true},
			{kind: wire.Message, raw: messageEscaped, local: "message", ns: wire.NSServer, to: "romeo@b.test",
				from: "juliet@a.test/balcony", typ: "chat", id: "m&2", hasID: true, text: "1 < 2 && 😀 été — ok"},
			{kind: wire.Message, raw: messageCDATA, local: "message", ns: wire.NSServer, to: "romeo@b.test",
				from: "juliet@a.test", text: "<b>bold</b> & ]] > "},
		},
	}, {
		name:  "ejabberd",
		input: ejabberdHeader + featuresTLS + proceed + dbResultValid + dbVerify + streamEnd,
		header: wire.Header{To: "a.test", From: "b.test", ID: "9b3c2a17-4e51-4c8e-b0f2-1d6a5e7c8f90", Version: "1.0", Lang: "en", Prefix: "stream",
			NS: []wire.NS{{"db", wire.NSDialback}, {"stream", wire.NSStream}, {"", wire.NSServer}}},
		want: []item{
			{kind: wire.Features, raw: featuresTLS, local: "features", ns: wire.NSStream},
			{kind: wire.Other, raw: proceed, local: "proceed", ns: "urn:ietf:params:xml:ns:xmpp-tls"},
			{kind: wire.DialbackResult, raw: dbResultValid, local: "result", ns: wire.NSDialback, to: "a.test", from: "b.test", typ: "valid"},
			{kind: wire.DialbackVerify, raw: dbVerify, local: "verify", ns: wire.NSDialback, to: "a.test", from: "b.test",
				id: "D60000229F", hasID: true, text: "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"},
		},
	}, {
		name: "prefix-free canonicalization",
		input: `<stream to='b.test' from='a.test' version='1.0' xmlns='http://etherx.jabber.org/streams'>` +
			`<features/><message xmlns='jabber:server' to='romeo@b.test' from='juliet@a.test'><body>hi</body></message></stream>`,
		header: wire.Header{To: "b.test", From: "a.test", Version: "1.0", NS: []wire.NS{{"", wire.NSStream}}},
		want: []item{
			{kind: wire.Features, raw: `<features/>`, local: "features", ns: wire.NSStream},
			{kind: wire.Message, raw: `<message xmlns='jabber:server' to='romeo@b.test' from='juliet@a.test'><body>hi</body></message>`,
				local: "message", ns: wire.NSServer, to: "romeo@b.test", from: "juliet@a.test", text: "hi"},
		},
	}, {
		name: "legacy peer, byte order mark, no declaration, whitespace everywhere",
		input: "\xEF\xBB\xBF \n<stream:stream\n\txmlns='jabber:server'\n\txmlns:stream='http://etherx.jabber.org/streams'\n\tto = \"b.test\" >" +
			"\n\n  <message to = 'x@b.test' from='y@a.test'\n>text</message\n>  \r\n</stream:stream >",
		header: wire.Header{To: "b.test", Prefix: "stream", NS: []wire.NS{{"", wire.NSServer}, {"stream", wire.NSStream}}},
		want: []item{{kind: wire.Message, raw: "<message to = 'x@b.test' from='y@a.test'\n>text</message\n>", local: "message",
			ns: wire.NSServer, to: "x@b.test", from: "y@a.test", text: "text"}},
	}} {
		for _, chunked := range []bool{false, true} {
			name := tc.name
			var src io.Reader = strings.NewReader(tc.input)
			if chunked {
				// One byte per read: every state must resume correctly.
				name += "/one byte per read"
				src = iotest.OneByteReader(src)
			}
			t.Run(name, func(t *testing.T) {
				h, got, err := readStream(src, wire.Limits{}, true)
				if err != io.EOF {
					t.Fatalf("stream ended with %v, want io.EOF", err)
				}
				if !equalHeader(h, &tc.header) {
					t.Errorf("header:\n got %+v\nwant %+v", *h, tc.header)
				}
				if len(got) != len(tc.want) {
					t.Fatalf("got %d elements, want %d:\n%+v", len(got), len(tc.want), got)
				}
				for i := range got {
					if got[i] != tc.want[i] {
						t.Errorf("element %d:\n got %+v\nwant %+v", i, got[i], tc.want[i])
					}
				}
			})
		}
	}
}

func equalHeader(a, b *wire.Header) bool {
	if a.To != b.To || a.From != b.From || a.ID != b.ID || a.Version != b.Version || a.Lang != b.Lang || a.Prefix != b.Prefix || len(a.NS) != len(b.NS) {
		return false
	}
	for i := range a.NS {
		if a.NS[i] != b.NS[i] {
			return false
		}
	}
	return true
}

// TestRefused feeds one bad thing after a good header and checks the stream
// error condition.
func TestRefused(t *testing.T) {
	small := wire.Limits{MaxStanza: 200, MaxStanzaPreAuth: 100, MaxDepth: 3, MaxAttrs: 4, MaxName: 16}
	for _, tc := range []struct {
		name string
		in   string // after prosodyHeader
		lim  wire.Limits
		auth bool
		want error
	}{
		{"comment", `<message><!-- hidden --></message>`, wire.Limits{}, true, stream.RestrictedXML},
		{"comment at stream level", `<!-- hidden -->`, wire.Limits{}, true, stream.RestrictedXML},
		{"processing instruction", `<message><?php echo 1; ?></message>`, wire.Limits{}, true, stream.RestrictedXML},
		{"XML declaration mid-stream", `<?xml version='1.0'?>`, wire.Limits{}, true, stream.RestrictedXML},
		{"doctype", `<!DOCTYPE message>`, wire.Limits{}, true, stream.RestrictedXML},
		{"entity declaration", `<message><!ENTITY x 'y'></message>`, wire.Limits{}, true, stream.RestrictedXML},
		{"entity reference in text", `<message><body>&nbsp;</body></message>`, wire.Limits{}, true, stream.RestrictedXML},
		{"entity reference in attribute", `<message to='&foo;'/>`, wire.Limits{}, true, stream.RestrictedXML},
		{"character reference to NUL", `<message><body>&#0;</body></message>`, wire.Limits{}, true, stream.NotWellFormed},
		{"character reference to a surrogate", `<message><body>&#xD800;</body></message>`, wire.Limits{}, true, stream.NotWellFormed},
		{"character reference beyond Unicode", `<message to='&#x110000;'/>`, wire.Limits{}, true, stream.NotWellFormed},
		{"character reference to U+FFFE", `<message><body>&#65534;</body></message>`, wire.Limits{}, true, stream.NotWellFormed},
		{"empty character reference", `<message><body>&#;</body></message>`, wire.Limits{}, true, stream.NotWellFormed},
		{"bad digit in character reference", `<message><body>&#12a;</body></message>`, wire.Limits{}, true, stream.NotWellFormed},
		{"reference without semicolon", `<message><body>&amp </body></message>`, wire.Limits{}, true, stream.NotWellFormed},
		{"bare ampersand", `<message><body>fish & chips</body></message>`, wire.Limits{}, true, stream.NotWellFormed},
		{"invalid UTF-8 in text", "<message><body>\xff</body></message>", wire.Limits{}, true, stream.NotWellFormed},
		{"invalid UTF-8 in attribute", "<message to='\xc3\x28'/>", wire.Limits{}, true, stream.NotWellFormed},
		{"overlong UTF-8", "<message><body>\xc0\xaf</body></message>", wire.Limits{}, true, stream.NotWellFormed},
		{"UTF-8 surrogate", "<message><body>\xed\xa0\x80</body></message>", wire.Limits{}, true, stream.NotWellFormed},
		{"control character in text", "<message><body>\x01</body></message>", wire.Limits{}, true, stream.NotWellFormed},
		{"control character in attribute", "<message to='a\x1fb'/>", wire.Limits{}, true, stream.NotWellFormed},
		{"U+FFFF in text", "<message><body>\xef\xbf\xbf</body></message>", wire.Limits{}, true, stream.NotWellFormed},
		{"control character in CDATA", "<message><![CDATA[\x00]]></message>", wire.Limits{}, true, stream.NotWellFormed},
		{"mismatched end tag", `<message><body>hi</bodx></message>`, wire.Limits{}, true, stream.NotWellFormed},
		{"end tag with another prefix", `<message><a:x xmlns:a='u' xmlns:b='u'></b:x></message>`, wire.Limits{}, true, stream.NotWellFormed},
		{"unclosed element closed by the stream", `<message><body></message>`, wire.Limits{}, true, stream.NotWellFormed},
		{"end tag at stream level", `</message>`, wire.Limits{}, true, stream.NotWellFormed},
		{"wrong stream end tag", `</stream:features>`, wire.Limits{}, true, stream.NotWellFormed},
		{"duplicate attribute", `<message to='a' from='b' to='c'/>`, wire.Limits{}, true, stream.NotWellFormed},
		{"duplicate attribute through two prefixes", `<message xmlns:a='u' xmlns:b='u' a:x='1' b:x='2'/>`, wire.Limits{}, true, stream.NotWellFormed},
		{"duplicate namespace declaration", `<message xmlns:a='u' xmlns:a='v'/>`, wire.Limits{}, true, stream.NotWellFormed},
		{"unquoted attribute", `<message to=romeo@b.test/>`, wire.Limits{}, true, stream.NotWellFormed},
		{"attribute without value", `<message checked/>`, wire.Limits{}, true, stream.NotWellFormed},
		{"attributes not separated", `<message to='a'from='b'/>`, wire.Limits{}, true, stream.NotWellFormed},
		{"'<' in attribute value", `<message to='a<b'/>`, wire.Limits{}, true, stream.NotWellFormed},
		{"']]>' in text", `<message><body>]]></body></message>`, wire.Limits{}, true, stream.NotWellFormed},
		{"name starting with a digit", `<message><1x/></message>`, wire.Limits{}, true, stream.NotWellFormed},
		{"two colons in a name", `<message><a:b:c xmlns:a='u'/></message>`, wire.Limits{}, true, stream.NotWellFormed},
		{"empty local name", `<message><a: xmlns:a='u'/></message>`, wire.Limits{}, true, stream.NotWellFormed},
		{"space after '<'", `< message/>`, wire.Limits{}, true, stream.NotWellFormed},
		{"'/' inside start tag", `<message / >`, wire.Limits{}, true, stream.NotWellFormed},
		{"text at stream level", `hello`, wire.Limits{}, true, stream.InvalidXML},
		{"CDATA at stream level", `<![CDATA[x]]>`, wire.Limits{}, true, stream.InvalidXML},
		{"stream header instead of an element", `<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>`, wire.Limits{}, true, stream.InvalidXML},
		{"unbound element prefix", `<message><foo:bar/></message>`, wire.Limits{}, true, stream.BadNamespacePrefix},
		{"unbound prefix at top level", `<foo:message/>`, wire.Limits{}, true, stream.BadNamespacePrefix},
		{"unbound attribute prefix", `<message foo:x='1'/>`, wire.Limits{}, true, stream.BadNamespacePrefix},
		{"prefix out of scope", `<message><a xmlns:p='u'/><p:b/></message>`, wire.Limits{}, true, stream.BadNamespacePrefix},
		{"declaring xmlns", `<message xmlns:xmlns='u'/>`, wire.Limits{}, true, stream.BadNamespacePrefix},
		{"rebinding xml", `<message xmlns:xml='u'/>`, wire.Limits{}, true, stream.BadNamespacePrefix},
		{"binding the xml namespace", `<message xmlns:x='http://www.w3.org/XML/1998/namespace'/>`, wire.Limits{}, true, stream.BadNamespacePrefix},
		{"prefix bound to nothing", `<message xmlns:p=''/>`, wire.Limits{}, true, stream.BadNamespacePrefix},
		{"xmlns as element prefix", `<message><xmlns:a/></message>`, wire.Limits{}, true, stream.BadNamespacePrefix},
		{"oversize before authentication", `<message><body>` + strings.Repeat("x", 100) + `</body></message>`, small, false, stream.PolicyViolation},
		{"oversize after authentication", `<message><body>` + strings.Repeat("x", 200) + `</body></message>`, small, true, stream.PolicyViolation},
		{"oversize header-less run of text", `<message>` + strings.Repeat("x", 1000), small, true, stream.PolicyViolation},
		{"too deep", `<message><a><b><c/></b></a></message>`, small, true, stream.PolicyViolation},
		{"too many attributes", `<message a='1' b='2' c='3' d='4' e='5'/>`, small, true, stream.PolicyViolation},
		{"long element name", `<message><abcdefghijklmnopq/></message>`, small, true, stream.PolicyViolation},
		{"long attribute name", `<message abcdefghijklmnopq='1'/>`, small, true, stream.PolicyViolation},
		{"long entity name", `<message>&abcdefghijklmnopq;</message>`, small, true, stream.PolicyViolation},
		{"long character reference", `<message>&#` + strings.Repeat("0", 40) + `65;</message>`, wire.Limits{}, true, stream.PolicyViolation},
	} {
		for _, chunked := range []bool{false, true} {
			name := tc.name
			var src io.Reader = strings.NewReader(prosodyHeader + tc.in)
			if chunked {
				name += "/one byte per read"
				src = iotest.OneByteReader(src)
			}
			t.Run(name, func(t *testing.T) {
				_, items, err := readStream(src, tc.lim, tc.auth)
				if !errors.Is(err, tc.want) {
					t.Fatalf("got %v (after %d elements), want %v", err, len(items), tc.want)
				}
				var se stream.Error
				if !errors.As(err, &se) || se.Err != tc.want.(stream.Error).Err {
					t.Errorf("errors.As gives %q, want %q", se.Err, tc.want.(stream.Error).Err)
				}
				if len(items) != 0 {
					t.Errorf("accepted %+v before refusing", items)
				}
			})
		}
	}
}

func TestLimitsExact(t *testing.T) {
	lim := wire.Limits{MaxStanza: 200, MaxStanzaPreAuth: 100, MaxDepth: 3, MaxAttrs: 4, MaxName: 16}
	pad := func(n int) string { // a message of exactly n bytes
		const open, close = `<message><body>`, `</body></message>`
		return open + strings.Repeat("x", n-len(open)-len(close)) + close
	}
	for _, tc := range []struct {
		name string
		in   string
		auth bool
	}{
		{"at the pre-auth limit", pad(100), false},
		{"at the limit", pad(200), true},
		{"at the depth limit", `<message><a><b/></a></message>`, true},
		{"at the attribute limit", `<message a='1' b='2' c='3' d='4'/>`, true},
		{"at the name limit", `<message><abcdefghijklmnop/></message>`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, items, err := readStream(strings.NewReader(prosodyHeader+tc.in+streamEnd), lim, tc.auth)
			if err != io.EOF || len(items) != 1 || items[0].raw != tc.in {
				t.Fatalf("got %+v, %v; want the element and io.EOF", items, err)
			}
		})
	}
}

func TestSetAuthenticated(t *testing.T) {
	lim := wire.Limits{MaxStanza: 300, MaxStanzaPreAuth: 150}
	big := `<message><body>` + strings.Repeat("x", 200) + `</body></message>`
	r := wire.NewReader(strings.NewReader(prosodyHeader+dbResult+big+streamEnd), lim)
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	r.SetAuthenticated(true)
	if e, err := r.Next(); err != nil || string(e.Raw) != big {
		t.Fatalf("after SetAuthenticated: %v", err)
	}
}

func TestHeaderRefused(t *testing.T) {
	const ns = ` xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'`
	for _, tc := range []struct {
		name       string
		in         string
		want       error
		wantHeader bool
	}{
		{"wrong stream namespace", `<stream:stream xmlns='jabber:server' xmlns:stream='http://wrong.example/' to='b.test'>`, stream.InvalidNamespace, true},
		{"undeclared stream prefix", `<stream:stream xmlns='jabber:server'>`, stream.BadNamespacePrefix, false},
		{"unprefixed stream element in jabber:server", `<stream xmlns='jabber:server' to='b.test'>`, stream.BadNamespacePrefix, true},
		{"not a stream element", `<stream:features` + ns + ` to='b.test'>`, stream.BadFormat, true},
		{"client namespace", `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='b.test'>`, stream.InvalidNamespace, true},
		{"unknown content namespace", `<stream:stream xmlns='urn:example' xmlns:stream='http://etherx.jabber.org/streams' to='b.test'>`, stream.InvalidNamespace, true},
		{"UTF-16", `<?xml version='1.0' encoding='UTF-16'?><stream:stream` + ns + `>`, stream.UnsupportedEncoding, false},
		{"XML 1.1", `<?xml version='1.1'?><stream:stream` + ns + `>`, stream.NotWellFormed, false},
		{"declaration without version", `<?xml encoding='UTF-8'?><stream:stream` + ns + `>`, stream.NotWellFormed, false},
		{"malformed declaration", `<?xml version='1.0' standalone='maybe'?><stream:stream` + ns + `>`, stream.NotWellFormed, false},
		{"doctype", `<?xml version='1.0'?><!DOCTYPE stream:stream><stream:stream` + ns + `>`, stream.RestrictedXML, false},
		{"internal subset", `<!DOCTYPE s [<!ENTITY x 'y'>]><stream:stream` + ns + `>`, stream.RestrictedXML, false},
		{"comment", `<?xml version='1.0'?><!-- hi --><stream:stream` + ns + `>`, stream.RestrictedXML, false},
		{"processing instruction", `<?xml-stylesheet href='x'?><stream:stream` + ns + `>`, stream.RestrictedXML, false},
		{"text before the header", `hello<stream:stream` + ns + `>`, stream.NotWellFormed, false},
		{"end tag first", `</stream:stream>`, stream.NotWellFormed, false},
		{"duplicate attribute", `<stream:stream` + ns + ` to='a' to='b'>`, stream.NotWellFormed, false},
		{"oversize", `<stream:stream` + ns + ` to='` + strings.Repeat("a", 5000) + `'>`, stream.PolicyViolation, false},
		{"endless whitespace", strings.Repeat(" ", 5000), stream.PolicyViolation, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := wire.NewReader(iotest.HalfReader(strings.NewReader(tc.in)), wire.Limits{})
			h, err := r.ReadHeader()
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if (h != nil) != tc.wantHeader || h != nil && h.To != "b.test" {
				t.Errorf("header %+v returned with the error; want one: %v", h, tc.wantHeader)
			}
			if _, err2 := r.Next(); err2 == nil {
				t.Errorf("Next after a refused header succeeded")
			}
		})
	}
}

func TestEndOfInput(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"nothing at all", "", io.EOF},
		{"inside the header", `<stream:stream xmlns='jabber:server'`, io.ErrUnexpectedEOF},
		{"between elements", prosodyHeader + messageChat + " ", io.ErrUnexpectedEOF},
		{"inside an element", prosodyHeader + messageChat[:40], io.ErrUnexpectedEOF},
		{"inside a multi-byte character", prosodyHeader + "<message>\xc3", io.ErrUnexpectedEOF},
		{"closed", prosodyHeader + streamEnd, io.EOF},
		{"self-closed header", `<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'/>`, io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := readStream(strings.NewReader(tc.in), wire.Limits{}, true)
			if err != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// TestBoundedMemory sends endless data of every shape and checks that the
// buffer never grows past the limit plus the read slack.
func TestBoundedMemory(t *testing.T) {
	lim := wire.Limits{MaxStanza: 64 << 10, MaxStanzaPreAuth: 8 << 10}
	for _, tc := range []struct {
		name, prefix, fill string
	}{
		{"attribute value", `<message to='`, "a"},
		{"attribute value with references", `<message to='`, "&amp;&#x10FFFF;"},
		{"text", `<message><body>`, "a"},
		{"text with multi-byte characters", `<message><body>`, "é😀"},
		{"CDATA", `<message><![CDATA[`, "]"},
		{"whitespace inside a tag", `<message`, " "},
		{"attributes", `<message`, " a='b'"},
		{"whitespace in an end tag", `<message></message`, " "},
		{"siblings", `<message>`, "<a/>"},
	} {
		for _, auth := range []bool{false, true} {
			t.Run(tc.name, func(t *testing.T) {
				src := io.MultiReader(strings.NewReader(prosodyHeader+tc.prefix), &endless{s: tc.fill, n: 1 << 30})
				r := wire.NewReader(src, lim)
				if _, err := r.ReadHeader(); err != nil {
					t.Fatal(err)
				}
				r.SetAuthenticated(auth)
				_, err := r.Next()
				if !errors.Is(err, stream.PolicyViolation) {
					t.Fatalf("got %v, want policy-violation", err)
				}
				limit := lim.MaxStanzaPreAuth
				if auth {
					limit = lim.MaxStanza
				}
				if c := wire.BufferCap(r); c > max(limit, 4096)+wire.ReadSlack {
					t.Errorf("buffer grew to %d bytes for a limit of %d", c, limit)
				}
			})
		}
	}

	// Keepalives never end a stream, and never accumulate either.
	t.Run("whitespace between elements", func(t *testing.T) {
		src := io.MultiReader(strings.NewReader(prosodyHeader), &endless{s: " \n", n: 50 << 20}, strings.NewReader(messageChat+streamEnd))
		r := wire.NewReader(src, lim)
		if _, err := r.ReadHeader(); err != nil {
			t.Fatal(err)
		}
		e, err := r.Next()
		if err != nil || string(e.Raw) != messageChat {
			t.Fatalf("got %v after the keepalives", err)
		}
		if c := wire.BufferCap(r); c > lim.MaxStanzaPreAuth+wire.ReadSlack {
			t.Errorf("buffer grew to %d bytes", c)
		}
	})
}

// endless yields n bytes repeating s.
type endless struct {
	s   string
	n   int
	off int
}

func (e *endless) Read(p []byte) (int, error) {
	if e.n == 0 {
		return 0, io.EOF
	}
	p = p[:min(len(p), e.n)]
	for i := range p {
		p[i] = e.s[e.off]
		e.off = (e.off + 1) % len(e.s)
	}
	e.n -= len(p)
	return len(p), nil
}

func TestReportSpace(t *testing.T) {
	r := wire.NewReader(strings.NewReader(prosodyHeader+" \n"+iqPing+"\t"+streamEnd), wire.Limits{})
	r.ReportSpace(true)
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	var kinds []wire.Kind
	var raws []string
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, e.Kind)
		raws = append(raws, string(e.Raw))
		if e.Kind == wire.Space && (e.CheckStanza() != nil || len(e.AppendText(nil)) != 0) {
			t.Errorf("space element refused or has text")
		}
	}
	want := []string{" \n", iqPing, "\t"}
	if len(raws) != len(want) || raws[0] != want[0] || raws[1] != want[1] || raws[2] != want[2] ||
		kinds[0] != wire.Space || kinds[1] != wire.IQ || kinds[2] != wire.Space {
		t.Errorf("got %v %q, want space, iq, space", kinds, raws)
	}
}

// TestRestarts follows a whole negotiation: STARTTLS with Reset, then a
// SASL restart on the same Reader, with the new header already buffered.
func TestRestarts(t *testing.T) {
	plain := strings.NewReader(prosodyHeader + starttls)
	r := wire.NewReader(plain, wire.Limits{})
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	e, err := r.Next()
	if err != nil || string(e.Raw) != starttls {
		t.Fatalf("starttls: %v", err)
	}
	if r.Buffered() != 0 {
		t.Fatalf("%d bytes buffered after <starttls/>", r.Buffered())
	}
	r.SetAuthenticated(true)

	secondHeader := strings.Replace(prosodyHeader, "to='b.test'", "to='c.test'", 1)
	const success = `<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`
	tls := strings.NewReader(ejabberdHeader + success + secondHeader + messageChat + streamEnd)
	r.Reset(tls)
	h, err := r.ReadHeader()
	if err != nil || h.ID != "9b3c2a17-4e51-4c8e-b0f2-1d6a5e7c8f90" {
		t.Fatalf("header after Reset: %+v, %v", h, err)
	}
	if r.InputOffset() != int64(len(ejabberdHeader)) {
		t.Errorf("InputOffset %d after the header, want %d", r.InputOffset(), len(ejabberdHeader))
	}
	// Reset forgets authentication: the small limit applies again.
	if e, err := r.Next(); err != nil || string(e.Raw) != success {
		t.Fatalf("success: %v", err)
	}
	if _, err := r.Next(); !errors.Is(err, stream.RestrictedXML) {
		// A restart read by Next: the XML declaration is a processing
		// instruction where an element belongs.
		t.Fatalf("header read by Next: %v", err)
	}
	if _, err := r.ReadHeader(); !errors.Is(err, stream.RestrictedXML) {
		t.Fatalf("stream errors do not stick: %v", err)
	}

	// The same again, done properly.
	tls = strings.NewReader(ejabberdHeader + success + secondHeader + messageChat + streamEnd)
	r.Reset(tls)
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	h, err = r.ReadHeader()
	if err != nil || h.To != "c.test" || r.Header() != h {
		t.Fatalf("restart header: %+v, %v", h, err)
	}
	if e, err := r.Next(); err != nil || string(e.Raw) != messageChat {
		t.Fatalf("message after restart: %v", err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("io.EOF is not sticky: %v", err)
	}
}

// TestRetryAfterReadError checks that a failed read (a deadline, say) can
// be retried without losing the partial element.
func TestRetryAfterReadError(t *testing.T) {
	in := prosodyHeader + messageChat + streamEnd
	src := &flaky{data: []byte(in)}
	r := wire.NewReader(src, wire.Limits{})
	var h *wire.Header
	var err error
	for h, err = r.ReadHeader(); errors.Is(err, errFlaky); h, err = r.ReadHeader() {
	}
	if err != nil || h.To != "b.test" {
		t.Fatalf("header: %v", err)
	}
	var e *wire.Element
	for e, err = r.Next(); errors.Is(err, errFlaky); e, err = r.Next() {
	}
	if err != nil || string(e.Raw) != messageChat {
		t.Fatalf("message: %v", err)
	}
	if src.fails < 10 {
		t.Errorf("only %d failed reads; the test is not testing", src.fails)
	}
}

var errFlaky = errors.New("i/o timeout")

// flaky returns data seven bytes at a time, failing every other read.
type flaky struct {
	data  []byte
	n     int
	fails int
}

func (f *flaky) Read(p []byte) (int, error) {
	f.n++
	if f.n%2 == 0 {
		f.fails++
		return 0, errFlaky
	}
	if len(f.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 7)], f.data)
	f.data = f.data[n:]
	return n, nil
}

func TestCheckStanza(t *testing.T) {
	for _, tc := range []struct {
		el   string
		kind wire.Kind
		want error
	}{
		{messageChat, wire.Message, nil},
		{presenceCaps, wire.Presence, nil},
		{iqPing, wire.IQ, nil},
		{`<foo:message xmlns:foo='jabber:server' to='a' from='b'/>`, wire.Other, stream.BadNamespacePrefix},
		{`<message xmlns='jabber:client' to='a' from='b'/>`, wire.Other, stream.InvalidNamespace},
		{`<ns2:message xmlns:ns2='http://example.org/ns2' to='a' from='b'/>`, wire.Other, stream.UnsupportedStanzaType},
		{`<pubsub xmlns='jabber:server'/>`, wire.Other, stream.UnsupportedStanzaType},
		{dbResult, wire.DialbackResult, stream.UnsupportedStanzaType},
		{`<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>`, wire.StreamError, stream.UnsupportedStanzaType},
	} {
		_, items, err := readStream(strings.NewReader(prosodyHeader+tc.el+streamEnd), wire.Limits{}, true)
		if err != io.EOF || len(items) != 1 {
			t.Fatalf("%s: %v", tc.el, err)
		}
		r := wire.NewReader(strings.NewReader(prosodyHeader+tc.el), wire.Limits{})
		r.ReadHeader()
		e, _ := r.Next()
		if e.Kind != tc.kind {
			t.Errorf("%s: kind %v, want %v", tc.el, e.Kind, tc.kind)
		}
		if err := e.CheckStanza(); !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
			t.Errorf("%s: CheckStanza %v, want %v", tc.el, err, tc.want)
		}
	}
}

// TestAttributeDecoding covers entity decoding and XML's attribute-value
// normalisation of the routing attributes, and absent versus empty.
func TestAttributeDecoding(t *testing.T) {
	in := prosodyHeader + "<message to='a&amp;b&#x40;c&lt;&gt;&quot;&apos;' from=\"x\ty\r\nz\" id='' type='&#233;'/>" + streamEnd
	_, items, err := readStream(strings.NewReader(in), wire.Limits{}, true)
	if err != io.EOF || len(items) != 1 {
		t.Fatal(err)
	}
	got := items[0]
	if got.to != `a&b@c<>"'` || got.from != "x y z" || got.typ != "é" || got.id != "" || !got.hasID {
		t.Errorf("got %+v", got)
	}
	_, items, _ = readStream(strings.NewReader(prosodyHeader+`<message/>`+streamEnd), wire.Limits{}, true)
	if items[0].hasID {
		t.Errorf("absent id reported as present")
	}
}

func TestNextBeforeHeader(t *testing.T) {
	r := wire.NewReader(strings.NewReader(prosodyHeader), wire.Limits{})
	if _, err := r.Next(); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("Next before ReadHeader: %v", err)
	}
}

func TestInputOffset(t *testing.T) {
	in := prosodyHeader + "  " + messageChat + "\n" + iqPing
	r := wire.NewReader(iotest.OneByteReader(strings.NewReader(in)), wire.Limits{})
	r.ReadHeader()
	for _, want := range []string{messageChat, iqPing} {
		e, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		end := int(r.InputOffset())
		if !bytes.Equal([]byte(in[end-len(e.Raw):end]), e.Raw) || string(e.Raw) != want {
			t.Errorf("Raw %q is not the input before offset %d", e.Raw, end)
		}
	}
}

// TestNamesLikeKnownOnes checks names that begin like the ones the scanner
// recognises by their first eight bytes.
func TestNamesLikeKnownOnes(t *testing.T) {
	in := prosodyHeader +
		`<messages to='a' from='b'/>` +
		`<iqs/>` +
		`<presence2/>` +
		`<message:x xmlns:message='urn:m'/>` +
		`<message tos='1' typed='2' id2='3' from-x='4' xmlnsx='5' xml:language='6' to='t'>` +
		`<body-x/><bodyx/><body:y xmlns:body='urn:b'/><body>b</body></message>` + streamEnd
	for _, chunked := range []bool{false, true} {
		var src io.Reader = strings.NewReader(in)
		if chunked {
			src = iotest.OneByteReader(src)
		}
		_, items, err := readStream(src, wire.Limits{}, true)
		if err != io.EOF || len(items) != 5 {
			t.Fatalf("got %d elements, %v", len(items), err)
		}
		for i, want := range []struct {
			local, ns string
			kind      wire.Kind
		}{{"messages", wire.NSServer, wire.Other}, {"iqs", wire.NSServer, wire.Other}, {"presence2", wire.NSServer, wire.Other},
			{"x", "urn:m", wire.Other}, {"message", wire.NSServer, wire.Message}} {
			if got := items[i]; got.local != want.local || got.ns != want.ns || got.kind != want.kind {
				t.Errorf("element %d: %s in %q (%v), want %s in %q (%v)", i, got.local, got.ns, got.kind, want.local, want.ns, want.kind)
			}
		}
		if last := items[4]; last.to != "t" || last.from != "" || last.typ != "" || last.hasID || last.text != "b" {
			t.Errorf("attributes named like the routing ones were taken for them: %+v", last)
		}
	}
}

func TestNonASCIINames(t *testing.T) {
	ok := `<message><café xmlns='urn:x' naïve='1' 名前='2'><ñ:x xmlns:ñ='urn:ñ'/></café></message>`
	_, items, err := readStream(strings.NewReader(prosodyHeader+ok+streamEnd), wire.Limits{}, true)
	if err != io.EOF || len(items) != 1 || items[0].raw != ok {
		t.Fatalf("got %+v, %v", items, err)
	}
	for _, bad := range []string{
		"<message><a×b/></message>",          // U+00D7 is no name character
		"<message><·a/></message>",           // U+00B7 may not start a name
		"<message a\u0300b='1' \u0300='2'/>", // combining mark first
	} {
		_, _, err := readStream(strings.NewReader(prosodyHeader+bad), wire.Limits{}, true)
		if !errors.Is(err, stream.NotWellFormed) {
			t.Errorf("%q: %v, want not-well-formed", bad, err)
		}
	}
}

func TestTextLineEnds(t *testing.T) {
	in := prosodyHeader + "<db:result from='a' to='b'>k1\r\nk2\rk3<![CDATA[\r\nc\r]]>&#13;</db:result>" + streamEnd
	_, items, err := readStream(strings.NewReader(in), wire.Limits{}, true)
	if err != io.EOF || items[0].text != "k1\nk2\nk3\nc\n\r" {
		t.Fatalf("text %q, %v", items[0].text, err)
	}
}

// TestBufferShrinks checks that a stream that once carried a large stanza
// goes back to a small buffer.
func TestBufferShrinks(t *testing.T) {
	big := `<message><body>` + strings.Repeat("x", 300<<10) + `</body></message>`
	src := io.MultiReader(strings.NewReader(prosodyHeader+big), strings.NewReader(iqPing), strings.NewReader(iqResult))
	r := wire.NewReader(src, wire.Limits{})
	r.ReadHeader()
	r.SetAuthenticated(true)
	for _, want := range []string{big, iqPing, iqResult} {
		e, err := r.Next()
		if err != nil || string(e.Raw) != want {
			t.Fatalf("got %v", err)
		}
		if want == big && wire.BufferCap(r) < len(big) {
			t.Fatalf("buffer of %d bytes holds a %d-byte element?", wire.BufferCap(r), len(big))
		}
	}
	if c := wire.BufferCap(r); c > 32<<10 {
		t.Errorf("buffer still %d bytes after the large element", c)
	}
}

func TestKindString(t *testing.T) {
	if wire.Message.String() != "message" || wire.Kind(200).String() != "kind?" {
		t.Errorf("Kind.String")
	}
}

// sizeRecorder hands out its chunks one per Read and records the room each
// Read was given.
type sizeRecorder struct {
	chunks []string
	rooms  []int
}

func (s *sizeRecorder) Read(p []byte) (int, error) {
	s.rooms = append(s.rooms, len(p))
	if len(s.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.chunks[0])
	if s.chunks[0] = s.chunks[0][n:]; s.chunks[0] == "" {
		s.chunks = s.chunks[1:]
	}
	return n, nil
}

// TestIdleHoldsNoBuffer: a Reader waiting between top-level elements with
// nothing buffered reads into its small array of its own, whatever it read
// before (a working buffer taken for a large element goes back), and small
// elements never need a working buffer.
func TestIdleHoldsNoBuffer(t *testing.T) {
	big := "<message to='x@b.test' from='y@a.test'><body>" + strings.Repeat("x", 20000) + "</body></message>"
	src := &sizeRecorder{chunks: []string{prosodyHeader, iqPing, big, iqResult, " ", iqPing}}
	r := wire.NewReader(src, wire.Limits{})
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	if c := wire.BufferCap(r); c > 512 {
		t.Errorf("after a %d-byte header, a %d-byte buffer", len(prosodyHeader), c)
	}
	r.SetAuthenticated(true)
	r.ReportSpace(true)
	for _, want := range []string{iqPing, big, iqResult, " ", iqPing} {
		before := len(src.rooms)
		e, err := r.Next()
		if err != nil || string(e.Raw) != want {
			t.Fatalf("got %v", err)
		}
		if room := src.rooms[before]; room > 512 {
			t.Errorf("reading %.20q began with %d bytes of room: a working buffer held while idle", want, room)
		}
		if want != big && wire.BufferCap(r) > 512 {
			t.Errorf("after %.20q, a %d-byte buffer", want, wire.BufferCap(r))
		}
	}
	r.Release()
	if c := wire.BufferCap(r); c > 512 {
		t.Errorf("after Release, a %d-byte buffer", c)
	}
}

// idleSource is a source that is an IdleWaiter: at each wait it records
// whether the Reader still held any of its input.
type idleSource struct {
	sizeRecorder
	r    *wire.Reader
	held []bool
}

func (s *idleSource) WaitIdle() error {
	s.held = append(s.held, wire.HoldsInput(s.r))
	return nil
}

// TestIdleWaitKeepsNothing: when a Reader waits for its peer between
// top-level elements, it holds nothing of what it read, not even through
// the element it handed out last (which pointed into its scratch or a
// pooled buffer, and kept them alive once the pools had dropped them).
func TestIdleWaitKeepsNothing(t *testing.T) {
	big := "<message to='x@b.test' from='y@a.test'><body>" + strings.Repeat("x", 20000) + "</body></message>"
	src := &idleSource{sizeRecorder: sizeRecorder{chunks: []string{prosodyHeader, iqPing, big, iqResult}}}
	r := wire.NewReader(src, wire.Limits{})
	src.r = r
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	r.SetAuthenticated(true)
	for _, want := range []string{iqPing, big, iqResult} {
		e, err := r.Next()
		if err != nil || string(e.Raw) != want {
			t.Fatalf("got %v", err)
		}
	}
	if _, err := r.Next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("at the end: %v", err)
	}
	if len(src.held) < 3 {
		t.Fatalf("%d waits, want one before each of the three elements and at the end", len(src.held))
	}
	for i, held := range src.held {
		if held {
			t.Errorf("wait %d: the Reader still held input", i+1)
		}
	}
}

// TestBusyStreamReadsInBulk: a stream that sends stanza after stanza, once
// it has waited between two of them (its first read after the wait goes
// into the Reader's small array), is read in working-buffer-sized reads,
// not a stanza or less per read. Reading on into the small array made the
// relay read, take the clock and wake the links it feeds once per stanza
// for as long as the stream stayed busy.
func TestBusyStreamReadsInBulk(t *testing.T) {
	const n = 200
	stanza := "<message to='x@b.test' from='y@a.test' id='m'><body>" + strings.Repeat("x", 220) + "</body></message>"
	src := &sizeRecorder{chunks: []string{prosodyHeader, strings.Repeat(stanza, n)}}
	r := wire.NewReader(src, wire.Limits{})
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	r.SetAuthenticated(true)
	before := len(src.rooms)
	for i := range n {
		if e, err := r.Next(); err != nil || string(e.Raw) != stanza {
			t.Fatalf("stanza %d: %v", i, err)
		}
	}
	reads := len(src.rooms) - before
	t.Logf("%d stanzas of %d bytes in %d reads, rooms %v", n, len(stanza), reads, src.rooms[before:min(len(src.rooms), before+8)])
	if want := 2 + n*len(stanza)/(8<<10); reads > want {
		t.Errorf("%d stanzas of %d bytes took %d reads, want at most %d", n, len(stanza), reads, want)
	}
}
