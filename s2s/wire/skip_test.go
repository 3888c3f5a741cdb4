package wire_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/fedrelay/fedrelay/s2s/wire"
)

// skipLimits skips stanzas from 201 bytes up to 4000.
var skipLimits = wire.Limits{MaxStanza: 200, MaxSkip: 4000}

// got is what the skip tests remember of an Element: its snapshot, its
// size when skipped, and the input offset after it.
type got struct {
	item
	oversize int64
	rawNil   bool
	langNil  bool
	end      int64
}

// readAll reads a header and then elements until an error, on an
// authenticated stream.
func readAll(src io.Reader, lim wire.Limits) ([]got, error) {
	r := wire.NewReader(src, lim)
	if _, err := r.ReadHeader(); err != nil {
		return nil, err
	}
	r.SetAuthenticated(true)
	var out []got
	for {
		e, err := r.Next()
		if err != nil {
			return out, err
		}
		out = append(out, got{snapshot(e), e.Oversize, e.Raw == nil, e.Lang == nil, r.InputOffset()})
	}
}

// chunkings are the ways the skip tests split their input.
var chunkings = []struct {
	name string
	wrap func(io.Reader) io.Reader
}{
	{"whole", func(r io.Reader) io.Reader { return r }},
	{"one byte per read", iotest.OneByteReader},
	{"half reads", iotest.HalfReader},
	{"seven bytes per read", func(r io.Reader) io.Reader {
		b, _ := io.ReadAll(r)
		return &chunker{data: b, n: 7}
	}},
}

// pad fills an element to exactly n bytes with text before its last end
// tag.
func pad(el string, n int) string {
	i := strings.LastIndex(el, "</")
	return el[:i] + strings.Repeat("z", n-len(el)) + el[i:]
}

// oversized are stanzas over skipLimits.MaxStanza, of every shape the skip
// scanner must step through.
var oversized = []struct {
	name, el              string
	kind                  wire.Kind
	to, from, typ, id     string
	hasTo, hasFrom, hasID bool
}{
	{"message with a long body", pad(messageChat, 1000), wire.Message, "romeo@b.test", "juliet@a.test/balcony", "chat", "m-1", true, true, true},
	{"presence with nested children",
		`<presence from='juliet@a.test/balcony' to='romeo@b.test'><x xmlns='urn:x'><y><z a='1'/><z a='2'></z></y><y/></x>` +
			strings.Repeat(`<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/>`, 10) + `<show>away</show></presence>`,
		wire.Presence, "romeo@b.test", "juliet@a.test/balcony", "", "", true, true, false},
	{"iq with '>' and quotes in attribute values",
		`<iq type="set" id="i&quot;1" to='b.test' from='a.test'><q xmlns='urn:q' a='x>y' b="it's > that" c='say "hi"/>'>` +
			strings.Repeat(`<item k='&gt;&apos;"' v="'&lt;/iq>'"/>`, 12) + `</q></iq>`,
		wire.IQ, "b.test", "a.test", "set", `i"1`, true, true, true},
	{"references and characters", "<message to='a&amp;b@c' from='d&#x40;e' id=''><body>" +
		strings.Repeat("&lt;&gt;&amp;&apos;&quot;&#233;&#x1F600; é€😀 \t\r\n", 20) + "</body></message>",
		wire.Message, "a&b@c", "d@e", "", "", true, true, true},
	{"CDATA, whitespace in tags", "<message from='x@a.test'\n><body\t><![CDATA[<b>bold</b> ]] > ]]]]><![CDATA[>" + strings.Repeat("<a>&x;]é😀", 40) +
		"]]></body\n><html xmlns='http://jabber.org/protocol/xhtml-im' ><body xmlns = \"http://www.w3.org/1999/xhtml\" a = 'b' ><p>x</p></body ></html></message \r\n>",
		wire.Message, "", "x@a.test", "", "", false, true, false},
	{"prefixed children and declarations", `<message xmlns:p='urn:p' to='romeo@b.test' p:a='1' xml:lang='de'><p:x p:y='2' p:é='é€😀'>` +
		strings.Repeat(`<p:z xmlns:q='urn:q' q:w='3'><q:v/></p:z>`, 10) + `</p:x></message>`,
		wire.Message, "romeo@b.test", "", "", "", true, false, false},
	{"default namespace declared on the stanza", `<iq xmlns='jabber:server' type='get' id='v' to='b.test' from='a.test'><query xmlns='jabber:iq:version'>` +
		strings.Repeat(" ", 300) + `</query></iq>`,
		wire.IQ, "b.test", "a.test", "get", "v", true, true, true},
}

// TestSkipOversize puts each oversized stanza between two normal ones: the
// three come out in order, the middle one skipped with its routing
// attributes and exact size, and the input offsets stay right.
func TestSkipOversize(t *testing.T) {
	for _, tc := range oversized {
		if len(tc.el) <= skipLimits.MaxStanza {
			t.Fatalf("%s: only %d bytes", tc.name, len(tc.el))
		}
		before, after := iqPing, "<message to='a@b.test'><body>after</body></message>"
		in := prosodyHeader + before + "\n" + tc.el + " " + after + streamEnd
		ends := []int64{int64(len(prosodyHeader + before)), int64(len(prosodyHeader + before + "\n" + tc.el)), int64(len(in) - len(streamEnd))}
		for _, ch := range chunkings {
			t.Run(tc.name+"/"+ch.name, func(t *testing.T) {
				items, err := readAll(ch.wrap(strings.NewReader(in)), skipLimits)
				if err != io.EOF || len(items) != 3 {
					t.Fatalf("got %d elements and %v, want 3 and io.EOF", len(items), err)
				}
				if items[0].raw != before || items[0].oversize != 0 || items[2].raw != after || items[2].oversize != 0 {
					t.Errorf("neighbours %+v and %+v", items[0], items[2])
				}
				s := items[1]
				if s.oversize != int64(len(tc.el)) || !s.rawNil || !s.langNil || s.text != "" {
					t.Errorf("skipped element: Oversize %d (want %d), Raw nil %v, Lang nil %v, text %q", s.oversize, len(tc.el), s.rawNil, s.langNil, s.text)
				}
				if s.kind != tc.kind || s.local != tc.kind.String() || s.ns != wire.NSServer {
					t.Errorf("skipped element is %v, {%s}%s", s.kind, s.ns, s.local)
				}
				if s.to != tc.to || s.from != tc.from || s.typ != tc.typ || s.id != tc.id || s.hasID != tc.hasID {
					t.Errorf("to %q from %q type %q id %q (present %v); want %q %q %q %q (%v)", s.to, s.from, s.typ, s.id, s.hasID, tc.to, tc.from, tc.typ, tc.id, tc.hasID)
				}
				for i, want := range ends {
					if items[i].end != want {
						t.Errorf("InputOffset after element %d: %d, want %d", i, items[i].end, want)
					}
				}
			})
		}
	}
}

// skipOutcome is what reading el alone must give with MaxStanza lim:
// the element, its skip, or a policy-violation.
func skipOutcome(el string, lim int) (oversize int64, fails bool) {
	if len(el) <= lim {
		return 0, false
	}
	startTag := strings.IndexByte(el, '>') + 1 // no '>' in the test stanzas' start tag values
	return int64(len(el)), startTag > lim
}

// TestSkipEveryLimit moves the point where an element goes over the limit
// across every byte of it, so that the skip begins in every state of the
// scanner, and with that the boundary between reads across every byte of
// the input.
func TestSkipEveryLimit(t *testing.T) {
	el := `<message from='juliet@a.test/balcony' to='romeo@b.test' type='chat' id='m-1'>` +
		`<body xml:lang="en" a='&amp;>'>x&lt;y é😀 ]] &#x40;</body><x xmlns='urn:x' ><y/><y a = "1" b='2'/><![CDATA[<]]]]><![CDATA[>]]></x ></message >`
	next := `<iq/>`
	in := prosodyHeader + el + "\n" + next + streamEnd
	for lim := 1; lim <= len(el)+1; lim++ {
		lm := wire.Limits{MaxStanza: lim, MaxSkip: 1 << 20}
		oversize, fails := skipOutcome(el, lim)
		check := func(t *testing.T, src io.Reader) {
			t.Helper()
			items, err := readAll(src, lm)
			if fails {
				if !errors.Is(err, stream.PolicyViolation) || len(items) != 0 {
					t.Fatalf("limit %d: %d elements, %v; want policy-violation", lim, len(items), err)
				}
				return
			}
			if len(items) == 0 {
				t.Fatalf("limit %d: %v", lim, err)
			}
			if s := items[0]; s.oversize != oversize || (oversize == 0) != (s.raw == el) || s.to != "romeo@b.test" || s.from != "juliet@a.test/balcony" || s.typ != "chat" || s.id != "m-1" {
				t.Fatalf("limit %d: %+v", lim, s)
			}
			if items[0].end != int64(len(prosodyHeader+el)) {
				t.Fatalf("limit %d: InputOffset %d", lim, items[0].end)
			}
			if lim < len(next) {
				return // <iq/> fails in its turn
			}
			if err != io.EOF || len(items) != 2 || items[1].raw != next {
				t.Fatalf("limit %d: after it, %+v and %v", lim, items[1:], err)
			}
		}
		check(t, strings.NewReader(in))
		check(t, iotest.OneByteReader(strings.NewReader(in)))
		step := 1
		if testing.Short() {
			step = 17
		}
		for k := len(prosodyHeader); k < len(in); k += step {
			check(t, io.MultiReader(strings.NewReader(in[:k]), strings.NewReader(in[k:])))
		}
	}
}

// TestSkipHardCap: a stanza of exactly MaxSkip bytes is skipped, one more
// byte fails the stream, and so does an endless one, without the buffer
// growing.
func TestSkipHardCap(t *testing.T) {
	for _, n := range []int{skipLimits.MaxSkip, skipLimits.MaxSkip + 1} {
		el := pad(messageChat, n)
		for _, ch := range chunkings {
			items, err := readAll(ch.wrap(strings.NewReader(prosodyHeader+el+streamEnd)), skipLimits)
			if n <= skipLimits.MaxSkip {
				if err != io.EOF || len(items) != 1 || items[0].oversize != int64(n) {
					t.Errorf("%d bytes, %s: %+v, %v", n, ch.name, items, err)
				}
			} else if !errors.Is(err, stream.PolicyViolation) || len(items) != 0 || !strings.Contains(err.Error(), fmt.Sprintf("at input byte %d:", len(prosodyHeader))) {
				t.Errorf("%d bytes, %s: %+v, %v; want policy-violation at the stanza's start", n, ch.name, items, err)
			}
		}
	}
	lim := wire.Limits{MaxStanza: 64 << 10, MaxSkip: 1 << 20}
	r := wire.NewReader(io.MultiReader(strings.NewReader(prosodyHeader+"<message><body>"), &endless{s: "x", n: 1 << 30}), lim)
	r.ReadHeader()
	r.SetAuthenticated(true)
	if _, err := r.Next(); !errors.Is(err, stream.PolicyViolation) || !strings.Contains(err.Error(), "1048576") {
		t.Errorf("endless stanza: %v", err)
	}
	if c := wire.BufferCap(r); c > lim.MaxStanza+wire.ReadSlack {
		t.Errorf("buffer of %d bytes", c)
	}
}

// TestSkipRefused: what the skip steps over is refused as it would be if
// read, with the same stream error.
func TestSkipRefused(t *testing.T) {
	fill := "<body>" + strings.Repeat("x", 300) + "</body>" // takes the stanza past the limit
	for _, tc := range []struct {
		name, in string // in goes after fill, inside <message>
		want     error
	}{
		{"comment", `<!-- hidden -->`, stream.RestrictedXML},
		{"processing instruction", `<?php x ?>`, stream.RestrictedXML},
		{"doctype", `<!DOCTYPE x>`, stream.RestrictedXML},
		{"entity declaration", `<!ENTITY x 'y'>`, stream.RestrictedXML},
		{"entity reference in text", `&nbsp;`, stream.RestrictedXML},
		{"entity reference in an attribute", `<a b='&nbsp;'/>`, stream.RestrictedXML},
		{"'<' in an attribute value", `<a b='<'/>`, stream.NotWellFormed},
		{"unquoted attribute", `<a b=c/>`, stream.NotWellFormed},
		{"attribute without value", `<a b/>`, stream.NotWellFormed},
		{"attributes not separated", `<a b='1'c='2'/>`, stream.NotWellFormed},
		{"'/' in a start tag", `<a / >`, stream.NotWellFormed},
		{"space after '<'", `< a/>`, stream.NotWellFormed},
		{"bad name", `<1a/>`, stream.NotWellFormed},
		{"empty local name", `<a:/>`, stream.NotWellFormed},
		{"mismatched end tag", `<a></b></message>`, stream.NotWellFormed},
		{"end tag of an element closed", `<a/></a></message>`, stream.NotWellFormed},
		{"end of the stream inside", `</stream:stream>`, stream.NotWellFormed},
		{"malformed end tag", `<a></a b>`, stream.NotWellFormed},
		{"']]>' in text", `]]>`, stream.NotWellFormed},
		{"bare ampersand", `fish & chips`, stream.NotWellFormed},
		{"character reference to NUL", `&#0;`, stream.NotWellFormed},
		{"invalid UTF-8 in text", "\xff", stream.NotWellFormed},
		{"invalid UTF-8 in an attribute", "<a b='\xc3\x28'/>", stream.NotWellFormed},
		{"control character in an attribute", "<a b='\x01'/>", stream.NotWellFormed},
		{"control character in CDATA", "<![CDATA[\x00]]>", stream.NotWellFormed},
		{"control character in text", "\x02", stream.NotWellFormed},
		{"invalid UTF-8 in CDATA", "<![CDATA[\xc3\x28]]>", stream.NotWellFormed},
		{"bad attribute name", `<a 1b='2'/>`, stream.NotWellFormed},
		{"bad end tag name", `<a></1a></message>`, stream.NotWellFormed},
		{"U+FFFE in an attribute", "<a b='\xef\xbf\xbe'/>", stream.NotWellFormed},
		{"too deep", `<a><b><c><d></d></c></b></a>`, stream.PolicyViolation},
		{"too deep, self-closed", `<a><b><c><d/></c></b></a>`, stream.PolicyViolation},
		{"too many attributes", `<a b='1' c='2' d='3' e='4' f='5'/>`, stream.PolicyViolation},
		{"long name", `<abcdefghijklmnopq/>`, stream.PolicyViolation},
		{"long character reference", `&#` + strings.Repeat("0", 40) + `65;`, stream.PolicyViolation},
	} {
		lim := wire.Limits{MaxStanza: 200, MaxSkip: 4000, MaxDepth: 4, MaxAttrs: 4, MaxName: 16}
		in := prosodyHeader + "<message from='a@a.test'>" + fill + tc.in + "</message>" + streamEnd
		for _, ch := range chunkings {
			t.Run(tc.name+"/"+ch.name, func(t *testing.T) {
				items, err := readAll(ch.wrap(strings.NewReader(in)), lim)
				if !errors.Is(err, tc.want) || len(items) != 0 {
					t.Fatalf("got %+v, %v; want %v", items, err, tc.want)
				}
				// Read whole, the same element fails the same way.
				big := lim
				big.MaxStanza = 1 << 20
				if _, err2 := readAll(strings.NewReader(in), big); !errors.Is(err2, tc.want) {
					t.Errorf("read whole, it fails with %v", err2)
				}
			})
		}
	}
}

// TestSkipLongToken: a name in a skipped stanza may be as long as MaxName
// allows, unless that is more than the buffer can hold (which only a
// MaxName above MaxStanza allows).
func TestSkipLongToken(t *testing.T) {
	lim := wire.Limits{MaxStanza: 200, MaxSkip: 1 << 20, MaxName: 1 << 20}
	for _, n := range []int{4000, 40000} {
		el := "<message from='a@a.test'><body>" + strings.Repeat("x", 300) + "</body><a" + strings.Repeat("b", n) + "/></message>"
		items, err := readAll(iotest.HalfReader(strings.NewReader(prosodyHeader+el+streamEnd)), lim)
		if n < lim.MaxStanza+wire.ReadSlack {
			if err != io.EOF || len(items) != 1 || items[0].oversize != int64(len(el)) {
				t.Errorf("%d-byte name: %d elements, %v", n, len(items), err)
			}
		} else if !errors.Is(err, stream.PolicyViolation) || len(items) != 0 {
			t.Errorf("%d-byte name: %d elements, %v; want policy-violation", n, len(items), err)
		}
	}
}

// TestSkipLenient: namespace prefixes and duplicate attributes are not
// checked in what is skipped (the bytes go nowhere).
func TestSkipLenient(t *testing.T) {
	fill := "<body>" + strings.Repeat("x", 300) + "</body>"
	for _, in := range []string{`<p:a/>`, `<a p:b='1'/>`, `<a b='1' b='2'/>`, `<a xmlns:xmlns='u'/>`} {
		el := "<message from='a@a.test'>" + fill + in + "</message>"
		items, err := readAll(strings.NewReader(prosodyHeader+el+streamEnd), skipLimits)
		if err != io.EOF || len(items) != 1 || items[0].oversize != int64(len(el)) {
			t.Errorf("%s: %+v, %v", in, items, err)
		}
		if _, err := readAll(strings.NewReader(prosodyHeader+el+streamEnd), wire.Limits{}); err == io.EOF {
			t.Errorf("%s is accepted when read", in)
		}
	}
}

// TestSkipNot: what is not skipped fails the stream as before.
func TestSkipNot(t *testing.T) {
	body := "<body>" + strings.Repeat("x", 300) + "</body>"
	long := strings.Repeat("a", 3072)
	longBody := "<body>" + strings.Repeat("x", 1000) + "</body>"
	jidLimits := wire.Limits{MaxStanza: 3300, MaxSkip: 8000}
	for _, tc := range []struct {
		name, el string
		lim      wire.Limits
		auth     bool
	}{
		{"before authentication", "<message>" + body + "</message>", wire.Limits{MaxStanza: 200, MaxStanzaPreAuth: 200, MaxSkip: 4000}, false},
		{"MaxSkip zero", "<message>" + body + "</message>", wire.Limits{MaxStanza: 200}, true},
		{"MaxSkip not above MaxStanza", "<message>" + body + "</message>", wire.Limits{MaxStanza: 200, MaxSkip: 200}, true},
		{"start tag over the limit", "<message to='" + strings.Repeat("a", 250) + "'>hi</message>", skipLimits, true},
		{"self-closed over the limit", "<message to='a' " + strings.Repeat(" ", 250) + "/>", skipLimits, true},
		{"features", "<stream:features>" + body + "</stream:features>", skipLimits, true},
		{"dialback", "<db:result from='a' to='b'>" + strings.Repeat("k", 300) + "</db:result>", skipLimits, true},
		{"prefixed message", "<s:message xmlns:s='jabber:server'>" + body + "</s:message>", skipLimits, true},
		{"client message", "<message xmlns='jabber:client'>" + body + "</message>", skipLimits, true},
		{"other element", "<pubsub>" + body + "</pubsub>", skipLimits, true},
		{"to longer than a JID", "<message to='" + long + "'>" + longBody + "</message>", jidLimits, true},
		{"from longer than a JID", "<message from='" + long + "'>" + longBody + "</message>", jidLimits, true},
		{"id longer than a JID", "<message id='" + long + "'>" + longBody + "</message>", jidLimits, true},
		{"type longer than a JID, decoded", "<message type='&#97;" + long[1:] + "'>" + longBody + "</message>", jidLimits, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.el) <= tc.lim.MaxStanza {
				t.Fatalf("only %d bytes", len(tc.el))
			}
			for _, ch := range chunkings {
				_, items, err := readStream(ch.wrap(strings.NewReader(prosodyHeader+tc.el+streamEnd)), tc.lim, tc.auth)
				if !errors.Is(err, stream.PolicyViolation) || len(items) != 0 || !strings.Contains(err.Error(), fmt.Sprintf("at input byte %d:", len(prosodyHeader))) {
					t.Fatalf("%s: got %d elements, %v; want policy-violation at the element's start", ch.name, len(items), err)
				}
			}
			// With a larger limit, the same element is read.
			tc.lim.MaxStanza, tc.lim.MaxStanzaPreAuth = 1<<20, 1<<20
			if _, items, err := readStream(strings.NewReader(prosodyHeader+tc.el+streamEnd), tc.lim, tc.auth); err != io.EOF || len(items) != 1 {
				t.Fatalf("with a larger limit: %d elements, %v", len(items), err)
			}
		})
	}
	// A JID's worth is fine.
	el := "<message to='" + long[1:] + "' from='" + long[1:] + "' id='" + long[1:] + "' type='" + long[1:] + "'>" + body + "</message>"
	items, err := readAll(strings.NewReader(prosodyHeader+el+streamEnd), wire.Limits{MaxStanza: 12500, MaxSkip: 20000})
	if err != io.EOF || len(items) != 1 || items[0].oversize != int64(len(el)) || items[0].to != long[1:] || items[0].typ != long[1:] {
		t.Fatalf("3071-byte attributes: %d elements, %v", len(items), err)
	}
}

// TestSkipScope: nothing declared in a skipped stanza outlives it, even when
// the skip began inside a child that declares things; the stream's own
// declarations and language apply again after it.
func TestSkipScope(t *testing.T) {
	hdr := strings.Replace(prosodyHeader, "xml:lang='en'", "xml:lang='en' xmlns:h='urn:h'", 1)
	for _, split := range []int{0, 150, 210, 260} {
		el := `<message xmlns:p='urn:p' xml:lang='de' from='a@a.test'><x xmlns='urn:x' xmlns:q='urn:q' xml:lang='fr'>` +
			strings.Repeat("y", split) + `<q:y p:z='1' a='` + strings.Repeat("v", 100) + `'><p:w/></q:y></x>` + strings.Repeat(" ", 300) + `</message>`
		for _, tc := range []struct {
			next string
			want error
		}{
			{`<message><h:a/></message>`, io.EOF},
			{`<message><p:a/></message>`, stream.BadNamespacePrefix},
			{`<message><q:a/></message>`, stream.BadNamespacePrefix},
			{`<p:message/>`, stream.BadNamespacePrefix},
		} {
			items, err := readAll(strings.NewReader(hdr+el+tc.next+streamEnd), skipLimits)
			n := 1 // the skipped stanza, then the error
			if tc.want == io.EOF {
				n = 2
			}
			if !errors.Is(err, tc.want) || len(items) != n {
				t.Fatalf("split %d, then %s: %d elements, %v; want %d, %v", split, tc.next, len(items), err, n, tc.want)
			}
			if items[0].oversize != int64(len(el)) {
				t.Fatalf("split %d: %+v", split, items[0])
			}
			if tc.want == io.EOF {
				r := wire.NewReader(strings.NewReader(hdr+el+tc.next), skipLimits)
				r.ReadHeader()
				r.SetAuthenticated(true)
				r.Next()
				e, err := r.Next()
				if err != nil || string(e.NS) != wire.NSServer || e.Lang != nil || !e.NeedsFixup("fr") || string(e.AppendTo(nil, "en")) != `<message xmlns:h='urn:h'><h:a/></message>` {
					t.Errorf("split %d: after the skip, %v: {%s} lang %q, copied as %s", split, err, e.NS, e.Lang, e.AppendTo(nil, "en"))
				}
			}
		}
	}
}

// TestSkipMemory skips a 10 MiB stanza with MaxStanza 64 KiB: the buffer
// stays within the limit plus the read slack, and little is allocated.
func TestSkipMemory(t *testing.T) {
	lim := wire.Limits{MaxStanza: 64 << 10, MaxSkip: 16 << 20}
	open := "<message from='juliet@a.test' to='romeo@b.test' id='big'><body>"
	const size = 10 << 20
	for _, fill := range []string{"x", "<a b='>'>&amp;é</a>", "<![CDATA[<]]>"} {
		n := size - len(open) - len("</body></message>")
		n -= n % len(fill)
		src := io.MultiReader(strings.NewReader(prosodyHeader+open), &endless{s: fill, n: n},
			strings.NewReader("</body></message>"+messageChat+streamEnd))
		r := wire.NewReader(src, lim)
		if _, err := r.ReadHeader(); err != nil {
			t.Fatal(err)
		}
		r.SetAuthenticated(true)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		e, err := r.Next()
		runtime.ReadMemStats(&after)
		if err != nil || e.Oversize != int64(len(open)+n+len("</body></message>")) || string(e.ID) != "big" {
			t.Fatalf("%q: %v", fill, err)
		}
		if c := wire.BufferCap(r); c > lim.MaxStanza+wire.ReadSlack {
			t.Errorf("%q: buffer of %d bytes after the skip", fill, c)
		}
		if a := after.TotalAlloc - before.TotalAlloc; a > 2*uint64(lim.MaxStanza+wire.ReadSlack) {
			t.Errorf("%q: %d bytes allocated to skip", fill, a)
		}
		if e, err := r.Next(); err != nil || string(e.Raw) != messageChat {
			t.Fatalf("%q: after the skip, %v", fill, err)
		}
		if c := wire.BufferCap(r); c > lim.MaxStanza+wire.ReadSlack {
			t.Errorf("%q: buffer of %d bytes after the next stanza", fill, c)
		}
	}
}

// TestSkipRetry: a failed read while skipping can be retried, and
// InputOffset meanwhile is the start of the stanza.
func TestSkipRetry(t *testing.T) {
	el := pad(messageChat, 1500)
	in := prosodyHeader + el + iqPing + streamEnd
	src := &flaky{data: []byte(in)}
	r := wire.NewReader(src, skipLimits)
	var err error
	for _, err = r.ReadHeader(); errors.Is(err, errFlaky); _, err = r.ReadHeader() {
	}
	if err != nil {
		t.Fatal(err)
	}
	r.SetAuthenticated(true)
	var e *wire.Element
	for e, err = r.Next(); errors.Is(err, errFlaky); e, err = r.Next() {
		if off := r.InputOffset(); off != int64(len(prosodyHeader)) {
			t.Fatalf("InputOffset %d inside the skipped stanza", off)
		}
	}
	if err != nil || e.Oversize != int64(len(el)) {
		t.Fatalf("got %v", err)
	}
	for e, err = r.Next(); errors.Is(err, errFlaky); e, err = r.Next() {
	}
	if err != nil || string(e.Raw) != iqPing {
		t.Fatalf("after: %v", err)
	}
}

// TestSkipBounce: a skipped stanza bounces like any other, and copies as
// nothing.
func TestSkipBounce(t *testing.T) {
	r := wire.NewReader(strings.NewReader(prosodyHeader+pad(messageChat, 1000)), skipLimits)
	r.ReadHeader()
	r.SetAuthenticated(true)
	e, err := r.Next()
	if err != nil || e.Oversize != 1000 {
		t.Fatal(err)
	}
	if e.CheckStanza() != nil || !e.IsStanza() {
		t.Errorf("CheckStanza %v", e.CheckStanza())
	}
	out, ok := wire.AppendBounce(nil, e, stanza.Error{Type: stanza.Modify, Condition: stanza.PolicyViolation})
	want := `<message from='romeo@b.test' to='juliet@a.test/balcony' type='error' id='m-1'><error type='modify'><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`
	if !ok || string(out) != want {
		t.Errorf("bounce %s", out)
	}
	if e.NeedsFixup("fr") || len(e.AppendTo(nil, "fr")) != 0 || len(e.AppendText(nil)) != 0 {
		t.Errorf("a skipped stanza copies as %q", e.AppendTo(nil, "fr"))
	}
	var buf bytes.Buffer
	w := wire.NewWriter(&buf)
	if err := w.WriteElement(e); err != nil || w.Flush() != nil || buf.Len() != 0 {
		t.Errorf("WriteElement wrote %q, %v", buf.String(), err)
	}
}

// TestSkipAllocs: once warm, reading a stream that alternates skipped and
// normal stanzas allocates nothing.
func TestSkipAllocs(t *testing.T) {
	var in strings.Builder
	in.WriteString(prosodyHeader)
	for i := range 3000 {
		if i%2 == 0 {
			fmt.Fprintf(&in, "<message to='r@b.test' from='j@a.test' id='%d'><body>%s</body></message>", i, strings.Repeat("x", 300+i%200))
		} else {
			in.WriteString(messageChat)
		}
	}
	r := wire.NewReader(strings.NewReader(in.String()), skipLimits)
	r.ReadHeader()
	r.SetAuthenticated(true)
	step := func() {
		e, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if (e.Oversize == 0) != (string(e.Raw) == messageChat) {
			t.Fatalf("Oversize %d for %q", e.Oversize, e.Raw)
		}
	}
	for range 10 {
		step()
	}
	if n := testing.AllocsPerRun(1000, step); n != 0 {
		t.Errorf("%v allocations per element", n)
	}
}
