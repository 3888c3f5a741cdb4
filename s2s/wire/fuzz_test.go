package wire_test

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/fedrelay/fedrelay/s2s/wire"
)

// Small limits, so that the fuzzer reaches them.
var fuzzLimits = wire.Limits{MaxStanza: 1024, MaxStanzaPreAuth: 400, MaxDepth: 6, MaxAttrs: 6, MaxName: 24, MaxHeader: 600}

// fuzzSkipLimits skips stanzas from 97 bytes up to 700.
var fuzzSkipLimits = func() wire.Limits {
	l := fuzzLimits
	l.MaxStanza, l.MaxSkip = 96, 700
	return l
}()

// chunker returns its data a few bytes per read.
type chunker struct {
	data []byte
	n    int
}

func (c *chunker) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.n)], c.data)
	c.data = c.data[n:]
	return n, nil
}

var fuzzSeeds = []string{
	prosodyAuthInput,
	ejabberdHeader + featuresTLS + proceed + dbResultValid + dbVerify + streamEnd,
	prosodyHeader + featuresTLS + starttls,
	`<stream to='b.test' xmlns='http://etherx.jabber.org/streams'><features/><message xmlns='jabber:server' to='a' from='b'><body>hi</body></message></stream>`,
	"\xEF\xBB\xBF<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:foo='urn:foo' xml:lang='de'><message to='a' from='b'><foo:x foo:y='1'/></message><message xml:lang='en'/></stream:stream>",
	prosodyHeader + `<message to='a&amp;b' from="x&#x9;y" id='&#233;'><a xmlns:p='u'><p:b p:c='&lt;' xml:lang='fr'><![CDATA[ ]]]]><![CDATA[> ]]></p:b></a></message>`,
	prosodyHeader + `<foo:message xmlns:foo='jabber:server' to='a' from='b'/><db:verify xmlns:db='urn:other'/>`,
	prosodyHeader + "<message>\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80</message><message><!-- x --></message>",
	prosodyHeader + `<message><body>` + strings.Repeat("x", 500) + `</body></message>`,
	prosodyHeader + `<iq type='set' id='a&amp;b' to='b.test' from='a.test'><q xmlns='urn:q' a='>"' b="'>"><![CDATA[<x>]]></q><r>&lt;é</r>` +
		strings.Repeat(`<p xmlns:p='urn:p'><p:i a='1'/></p>`, 4) + `</iq><message from='a@a.test'>hi</message>` + streamEnd,
	prosodyHeader + `<presence from='a@a.test'>` + strings.Repeat(`<x/>`, 200) + `</presence>` + `<message to='b'/>` + streamEnd,
}

// FuzzReader checks, for any input: no panic; a bounded buffer; every
// element returned is exactly the input slice at its offset, separated from
// the previous one by whitespace only; encoding/xml accepts it in the
// context of the header's declarations and agrees on its name, routing
// attributes and text; and the copy made by AppendTo stands on its own on a
// stream written by Writer.
func FuzzReader(f *testing.F) {
	for i, s := range fuzzSeeds {
		f.Add([]byte(s), uint8(i*37))
	}
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		lim := fuzzLimits
		if mode&0x80 != 0 {
			lim = fuzzSkipLimits
		}
		r := wire.NewReader(&chunker{data: data, n: int(mode>>1)%13 + 1}, lim)
		auth := mode&1 == 1
		bound := func() {
			t.Helper()
			limit := max(lim.MaxHeader, lim.MaxStanzaPreAuth)
			if auth {
				limit = max(limit, lim.MaxStanza)
			}
			if c := wire.BufferCap(r); c > limit+wire.ReadSlack {
				t.Fatalf("buffer of %d bytes for a limit of %d", c, limit)
			}
		}
		h, err := r.ReadHeader()
		bound()
		if err != nil {
			return
		}
		hdrEnd := int(r.InputOffset())
		checkHeader(t, data[:hdrEnd], h)
		r.SetAuthenticated(auth)
		prev := hdrEnd
		for {
			e, err := r.Next()
			bound()
			if err != nil {
				if err != io.EOF && !errors.Is(err, stream.Error{}) && err != io.ErrUnexpectedEOF {
					t.Fatalf("error that is not a stream error: %v", err)
				}
				return
			}
			end := int(r.InputOffset())
			start := end - len(e.Raw)
			if e.Oversize != 0 {
				start = end - int(e.Oversize)
			}
			if start < prev || !bytes.Equal(data[start:end], e.Raw) && e.Oversize == 0 {
				t.Fatalf("Raw %q is not the input at %d", e.Raw, start)
			}
			if len(bytes.TrimLeft(data[prev:start], " \t\r\n")) != 0 {
				t.Fatalf("skipped %q before an element", data[prev:start])
			}
			if e.Oversize != 0 {
				checkSkipped(t, h, lim, auth, e, data[start:end])
			} else {
				checkElement(t, h, e)
			}
			prev = end
		}
	})
}

// wrapper opens an element declaring what a stream header declares.
func wrapper(ns []wire.NS) string {
	var b strings.Builder
	b.WriteString("<fuzz-wrapper")
	for _, d := range ns {
		b.WriteString(" xmlns")
		if d.Prefix != "" {
			b.WriteString(":" + d.Prefix)
		}
		b.WriteString("='")
		xml.EscapeText(&b, []byte(d.URI))
		b.WriteString("'")
	}
	b.WriteString(">")
	return b.String()
}

var outStream = []wire.NS{{"", wire.NSServer}, {"stream", wire.NSStream}, {"db", wire.NSDialback}}

// decodeAll runs encoding/xml over s and returns its tokens.
func decodeAll(s string) ([]xml.Token, error) {
	d := xml.NewDecoder(strings.NewReader(s))
	var toks []xml.Token
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return toks, nil
		}
		if err != nil {
			return toks, err
		}
		toks = append(toks, xml.CopyToken(tok))
	}
}

// nameCharsDiffer reports an encoding/xml refusal that is only its older
// table of name characters (XML 1.0 fourth edition) against the fifth
// edition's, which the framer follows.
func nameCharsDiffer(err error, raw []byte) bool {
	return err != nil && strings.Contains(err.Error(), "invalid XML name") && bytes.ContainsFunc(raw, func(r rune) bool { return r >= utf8.RuneSelf })
}

func attrValue(se xml.StartElement, space, local string) (string, bool) {
	for _, a := range se.Attr {
		if a.Name.Space == space && a.Name.Local == local {
			return a.Value, true
		}
	}
	return "", false
}

// sameValue compares a value decoded by the framer with encoding/xml's,
// which does not apply attribute-value normalisation: it is skipped when
// encoding/xml's value holds a character that normalisation would touch.
func sameValue(t *testing.T, what string, got []byte, want string, present bool) {
	t.Helper()
	if (got != nil) != present {
		t.Fatalf("%s: present %v, encoding/xml says %v", what, got != nil, present)
	}
	if strings.ContainsAny(want, "\t\n\r") {
		return
	}
	if string(got) != want {
		t.Fatalf("%s: %q, encoding/xml says %q", what, got, want)
	}
}

func checkHeader(t *testing.T, raw []byte, h *wire.Header) {
	t.Helper()
	qname := "stream"
	if h.Prefix != "" {
		qname = h.Prefix + ":stream"
	}
	closing := "</" + qname + ">"
	if bytes.HasSuffix(raw, []byte("/>")) {
		closing = "" // a header that closes the stream at once
	}
	toks, err := decodeAll(string(raw) + closing)
	if nameCharsDiffer(err, raw) {
		return
	}
	if err != nil {
		t.Fatalf("encoding/xml refuses accepted header %q: %v", raw, err)
	}
	for _, tok := range toks {
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if se.Name.Space != wire.NSStream || se.Name.Local != "stream" {
			t.Fatalf("header is %v", se.Name)
		}
		for _, a := range []struct {
			name string
			got  string
		}{{"to", h.To}, {"from", h.From}, {"id", h.ID}, {"version", h.Version}} {
			v, _ := attrValue(se, "", a.name) // absent and empty are the same here
			sameValue(t, "header "+a.name, []byte(a.got), v, true)
		}
		return
	}
	t.Fatalf("encoding/xml found no element in %q", raw)
}

func checkElement(t *testing.T, h *wire.Header, e *wire.Element) {
	t.Helper()
	if e.Kind == wire.Space {
		return
	}
	toks, err := decodeAll(wrapper(h.NS) + string(e.Raw) + "</fuzz-wrapper>")
	if nameCharsDiffer(err, e.Raw) {
		return
	}
	if err != nil {
		t.Fatalf("encoding/xml refuses accepted element %q: %v", e.Raw, err)
	}
	se := toks[1].(xml.StartElement)
	if se.Name.Space != string(e.NS) || se.Name.Local != string(e.Local) {
		t.Fatalf("element {%s}%s, encoding/xml says %v", e.NS, e.Local, se.Name)
	}
	for _, a := range []struct {
		name string
		got  []byte
	}{{"to", e.To}, {"from", e.From}, {"type", e.Type}, {"id", e.ID}} {
		v, ok := attrValue(se, "", a.name)
		sameValue(t, a.name, a.got, v, ok)
	}
	v, ok := attrValue(se, wire.NSXML, "lang")
	sameValue(t, "xml:lang", e.Lang, v, ok)

	var text []byte
	for _, tok := range toks[1 : len(toks)-1] {
		if cd, ok := tok.(xml.CharData); ok {
			text = append(text, cd...)
		}
	}
	if got := e.AppendText(nil); !bytes.Equal(got, text) {
		t.Fatalf("text %q, encoding/xml says %q", got, text)
	}
	if e.IsStanza() != (e.Kind == wire.Message || e.Kind == wire.Presence || e.Kind == wire.IQ) || e.IsStanza() && (e.Prefix != nil || string(e.NS) != wire.NSServer) {
		t.Fatalf("stanza %v with prefix %q in %q", e.Kind, e.Prefix, e.NS)
	}

	// The copy for another stream must mean the same thing there.
	out := e.AppendTo(nil, "en")
	if !e.NeedsFixup("en") && !bytes.Equal(out, e.Raw) {
		t.Fatalf("AppendTo changed %q to %q without a fix-up", e.Raw, out)
	}
	toks, err = decodeAll(wrapper(outStream) + string(out) + "</fuzz-wrapper>")
	if err != nil {
		t.Fatalf("copy %q of %q does not parse on its own: %v", out, e.Raw, err)
	}
	se = toks[1].(xml.StartElement)
	if se.Name.Space != string(e.NS) || se.Name.Local != string(e.Local) {
		t.Fatalf("copy is {%s}%s, original {%s}%s", se.Name.Space, se.Name.Local, e.NS, e.Local)
	}
	// Its language: its own xml:lang, else the destination's ("en"); it
	// must be what it was on the source stream, unless that had none.
	lang, ok := attrValue(se, wire.NSXML, "lang")
	if !ok {
		lang = "en"
	}
	want, known := string(e.Lang), e.Lang != nil || h.Lang != ""
	if e.Lang == nil {
		want = h.Lang
	}
	if known && lang != want && !strings.ContainsAny(want, "\t\n\r") {
		t.Fatalf("copy %q has xml:lang %q, want %q", out, lang, want)
	}
}

// checkSkipped checks an element returned with Oversize set against its
// input: a stanza over the limit and within MaxSkip, whose start tag
// encoding/xml reads with the same routing attributes.
func checkSkipped(t *testing.T, h *wire.Header, lim wire.Limits, auth bool, e *wire.Element, in []byte) {
	t.Helper()
	if !auth || lim.MaxSkip == 0 || e.Oversize <= int64(lim.MaxStanza) || e.Oversize > int64(lim.MaxSkip) {
		t.Fatalf("skipped %d bytes with limits %+v, authenticated %v", e.Oversize, lim, auth)
	}
	if !e.IsStanza() || e.Raw != nil || e.Lang != nil || e.Prefix != nil || string(e.NS) != wire.NSServer || string(e.Local) != e.Kind.String() {
		t.Fatalf("skipped element %+v", e)
	}
	if len(e.AppendTo(nil, "xx")) != 0 || len(e.AppendText(nil)) != 0 {
		t.Fatalf("skipped element copies as %q", e.AppendTo(nil, "xx"))
	}
	if startTagLen(in) > lim.MaxStanza || in[len(in)-1] != '>' {
		t.Fatalf("skipped %q: its start tag is over the limit", in)
	}
	d := xml.NewDecoder(strings.NewReader(wrapper(h.NS) + string(in)))
	for range 2 {
		tok, err := d.Token()
		if nameCharsDiffer(err, in) {
			return
		}
		if err != nil {
			t.Fatalf("encoding/xml refuses the start of skipped %q: %v", in, err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Local == "fuzz-wrapper" {
			continue
		}
		if se.Name.Space != wire.NSServer || se.Name.Local != string(e.Local) {
			t.Fatalf("skipped element is %v", se.Name)
		}
		for _, a := range []struct {
			name string
			got  []byte
		}{{"to", e.To}, {"from", e.From}, {"type", e.Type}, {"id", e.ID}} {
			v, ok := attrValue(se, "", a.name)
			sameValue(t, a.name, a.got, v, ok)
		}
		return
	}
	t.Fatalf("no start tag in skipped %q", in)
}

// startTagLen returns the length of the start tag at the beginning of el,
// stepping over quoted attribute values.
func startTagLen(el []byte) int {
	var quote byte
	for i, c := range el {
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '>':
			return i + 1
		}
	}
	return len(el) + 1
}

// fuzzRec is what FuzzSkip compares of an element.
type fuzzRec struct {
	kind              wire.Kind
	raw               string
	oversize          int64
	to, from, typ, id string
	has               [4]bool
	end               int64
}

var errBuffer = errors.New("buffer over its bound")

// readRecs reads data as an authenticated stream, n bytes per read, and
// returns the elements, the header's end and how the stream ended.
func readRecs(data []byte, n int, lim wire.Limits) ([]fuzzRec, int, error) {
	r := wire.NewReader(&chunker{data: data, n: n}, lim)
	if _, err := r.ReadHeader(); err != nil {
		return nil, 0, err
	}
	hdrEnd := int(r.InputOffset())
	r.SetAuthenticated(true)
	var recs []fuzzRec
	for {
		e, err := r.Next()
		if c := wire.BufferCap(r); c > max(lim.MaxHeader, lim.MaxStanzaPreAuth, lim.MaxStanza)+wire.ReadSlack {
			return recs, hdrEnd, fmt.Errorf("%w: %d bytes", errBuffer, c)
		}
		if err != nil {
			return recs, hdrEnd, err
		}
		recs = append(recs, fuzzRec{e.Kind, string(e.Raw), e.Oversize, string(e.To), string(e.From), string(e.Type), string(e.ID),
			[4]bool{e.To != nil, e.From != nil, e.Type != nil, e.ID != nil}, r.InputOffset()})
	}
}

// FuzzSkip reads the same input with a small MaxStanza and MaxSkip set, and
// with a limit too large to reach: the elements must be the same, but that
// those over the small limit are either skipped, with the same kind,
// routing attributes, size and end, when they may be (a stanza whose start
// tag fits and that is within MaxSkip), or fail the stream with
// policy-violation when they may not. Where the large-limit reading fails
// inside an element the small one skips, the skip must fail with the same
// condition, except for what a skip does not check (namespaces, duplicate
// attributes), or go over MaxSkip.
func FuzzSkip(f *testing.F) {
	for i, s := range fuzzSeeds {
		f.Add([]byte(s), uint8(i*37), uint16(i*1009))
	}
	f.Add([]byte(prosodyHeader+pad(messageChat, 300)+iqPing+streamEnd), uint8(3), uint16(100))
	f.Add([]byte(prosodyHeader+"<message><body>"+strings.Repeat("x", 90)+"<!-- c --></body></message>"+streamEnd), uint8(0), uint16(30))
	f.Add([]byte(prosodyHeader+"<message><a><b p:c='1'>"+strings.Repeat("x", 90)+"</b></a></message>"+iqPing), uint8(9), uint16(60))
	// The shapes of TestSkipOversize, skipped from early on, and what a
	// skip must refuse, past the limit. l%512 sets MaxStanza, l>>9 MaxSkip.
	for i, o := range oversized {
		f.Add([]byte(prosodyHeader+o.el+iqPing+streamEnd), uint8(i), uint16(134+i*7+100<<9))
	}
	for i, bad := range []string{"<!-- c -->", "<?p?>", "]]>", "<a><b><c><d><e><f/></e></d></c></b></a>", "<a b='1' c='2' d='3' e='4' f='5' g='6' h='7'/>",
		"<a b='&#x1F600;&lt;é\t'/>", "<a></b>", "<a></a >", "&#0;", "\x01"} {
		f.Add([]byte(prosodyHeader+"<message to='a'><body>"+strings.Repeat("x", 30)+"]</body>"+bad+"</message>"+streamEnd), uint8(i), uint16(20+20<<9))
	}
	f.Fuzz(func(t *testing.T, data []byte, mode uint8, l uint16) {
		small := fuzzLimits
		small.MaxStanza = 16 + int(l%512)
		small.MaxSkip = small.MaxStanza + 1 + int(l>>9)*16
		large := fuzzLimits
		large.MaxStanza = 1 << 20
		n := int(mode)%17 + 1
		ref, hdrEnd, refErr := readRecs(data, n, large)
		got, _, err := readRecs(data, n, small)
		if errors.Is(err, errBuffer) || errors.Is(refErr, errBuffer) {
			t.Fatal(err, refErr)
		}
		if ref == nil && got == nil && err.Error() == refErr.Error() {
			return // the header, or the first element, fails alike
		}
		skippable := func(r fuzzRec) bool {
			return (r.kind == wire.Message || r.kind == wire.Presence || r.kind == wire.IQ) &&
				startTagLen([]byte(r.raw)) <= small.MaxStanza && len(r.raw) <= small.MaxSkip &&
				len(r.to) <= 3071 && len(r.from) <= 3071 && len(r.typ) <= 3071 && len(r.id) <= 3071
		}
		for i, g := range got {
			if i == len(ref) {
				// Read on past where the large limit failed: only by
				// skipping an element refused for what a skip does not
				// check.
				if g.oversize == 0 || !uncheckedBySkip(refErr) {
					t.Fatalf("element %d %+v read where the large limit failed with %v", i, g, refErr)
				}
				return
			}
			r := ref[i]
			if len(r.raw) <= small.MaxStanza {
				if g != r {
					t.Fatalf("element %d:\n got %+v\nwant %+v", i, g, r)
				}
				continue
			}
			want := r
			want.raw, want.oversize = "", int64(len(r.raw))
			if !skippable(r) || g != want {
				t.Fatalf("element %d (skippable %v):\n got %+v\nwant %+v", i, skippable(r), g, want)
			}
		}
		i := len(got)
		if i < len(ref) {
			if r := ref[i]; len(r.raw) <= small.MaxStanza || skippable(r) || !errors.Is(err, stream.PolicyViolation) {
				t.Fatalf("element %d of %d bytes (skippable %v) failed with %v", i, len(r.raw), skippable(r), err)
			}
			return
		}
		if err.Error() == refErr.Error() {
			return
		}
		// The two stopped in the same element, differently: the small
		// limit must have been reached in it (an unfinished element of
		// MaxStanza bytes is over it).
		start := hdrEnd
		if i > 0 {
			start = int(ref[i-1].end)
		}
		for start < len(data) && bytes.IndexByte([]byte(" \t\r\n"), data[start]) >= 0 {
			start++
		}
		if len(data)-start < small.MaxStanza {
			t.Fatalf("element %d: %v, with the large limit %v", i, err, refErr)
		}
		if errors.Is(err, stream.PolicyViolation) {
			return // not skippable, or over MaxSkip
		}
		var refSE stream.Error
		if !errors.As(refErr, &refSE) {
			// The large limit read to the end of the input or the
			// stream: so must a skip.
			t.Fatalf("element %d: %v, with the large limit %v", i, err, refErr)
		}
		if uncheckedBySkip(refErr) {
			// Not checked in a skip, which goes on.
			if !errors.Is(err, stream.Error{}) && err != io.ErrUnexpectedEOF {
				t.Fatalf("element %d: %v, with the large limit %v", i, err, refErr)
			}
			return
		}
		if !errors.Is(err, refSE) {
			t.Fatalf("element %d: %v, with the large limit %v", i, err, refErr)
		}
	})
}

// uncheckedBySkip reports whether err is for something a skip does not
// check (see Reader.Next).
func uncheckedBySkip(err error) bool {
	return errors.Is(err, stream.BadNamespacePrefix) ||
		errors.Is(err, stream.NotWellFormed) && strings.Contains(err.Error(), "duplicate attribute") ||
		errors.Is(err, stream.PolicyViolation) && strings.Contains(err.Error(), "namespace declarations")
}

// FuzzHeader checks the header parser alone, on inputs that stop after it.
func FuzzHeader(f *testing.F) {
	for _, s := range []string{prosodyHeader, ejabberdHeader, fuzzSeeds[3], fuzzSeeds[4],
		`<?xml version="1.0" encoding="utf-8" standalone='yes' ?><s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns='jabber:server' version='1.0'/>`,
		`<?xml version='1.0' encoding='UTF-16'?><stream:stream>`, `<!DOCTYPE x><stream:stream>`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := wire.NewReader(&chunker{data: data, n: len(data)%7 + 1}, fuzzLimits)
		h, err := r.ReadHeader()
		if c := wire.BufferCap(r); c > fuzzLimits.MaxHeader+fuzzLimits.MaxStanzaPreAuth+wire.ReadSlack {
			t.Fatalf("buffer of %d bytes", c)
		}
		if h == nil {
			if err == nil {
				t.Fatal("no header and no error")
			}
			return
		}
		if err != nil && !errors.Is(err, stream.InvalidNamespace) && !errors.Is(err, stream.BadNamespacePrefix) && !errors.Is(err, stream.BadFormat) {
			t.Fatalf("header returned with %v", err)
		}
		n := int(r.InputOffset())
		if n > fuzzLimits.MaxHeader || n > len(data) {
			t.Fatalf("header of %d bytes", n)
		}
		if err != nil {
			// Refused for XMPP's rules, not XML's: encoding/xml agrees it
			// is XML, and the error sticks.
			if _, err2 := r.Next(); err2 != err {
				t.Fatalf("header error %v did not stick: %v", err, err2)
			}
			// The start tag is the last '<' (none can be in its values).
			name := data[bytes.LastIndexByte(data[:n], '<')+1 : n]
			if i := bytes.IndexAny(name, " \t\r\n/>"); i >= 0 {
				name = name[:i]
			}
			closing := "</" + string(name) + ">"
			if bytes.HasSuffix(data[:n], []byte("/>")) {
				closing = ""
			}
			if _, xerr := decodeAll(string(data[:n]) + closing); xerr != nil && !nameCharsDiffer(xerr, data[:n]) {
				t.Fatalf("encoding/xml refuses header %q returned with %v: %v", data[:n], err, xerr)
			}
			return
		}
		checkHeader(t, data[:n], h)
		if err == nil {
			switch h.Default() {
			case wire.NSServer, wire.NSStream, "":
			default:
				t.Fatalf("accepted content namespace %q", h.Default())
			}
		}
	})
}

// sanitize is what the writer's escaping makes of s after a round trip:
// invalid UTF-8 and characters outside XML become U+FFFD.
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r == utf8.RuneError || r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0xFFFE || r == 0xFFFF {
			r = utf8.RuneError
		}
		b.WriteRune(r)
	}
	return b.String()
}

// FuzzHeaderRoundTrip writes a header with Writer and reads it back.
func FuzzHeaderRoundTrip(f *testing.F) {
	f.Add("b.test", "a.test", "D60000229F", "1.0", "en")
	f.Add("", "a\x00'\"<&>\t\n\r", "\xff", "", "de-CH")
	f.Fuzz(func(t *testing.T, to, from, id, version, lang string) {
		var buf bytes.Buffer
		w := wire.NewWriter(&buf)
		in := &wire.Header{To: to, From: from, ID: id, Version: version, Lang: lang}
		if err := w.WriteHeader(in); err != nil || w.Flush() != nil {
			t.Fatal(err)
		}
		if _, err := decodeAll(buf.String() + "</stream:stream>"); err != nil {
			t.Fatalf("written header %q does not parse: %v", buf.String(), err)
		}
		r := wire.NewReader(bytes.NewReader(buf.Bytes()), wire.Limits{MaxHeader: 1 << 20})
		h, err := r.ReadHeader()
		if err != nil {
			t.Fatalf("written header %q refused: %v", buf.String(), err)
		}
		for _, c := range [][2]string{{h.To, to}, {h.From, from}, {h.ID, id}, {h.Version, version}, {h.Lang, lang}} {
			if c[0] != sanitize(c[1]) {
				t.Fatalf("read %q back for %q", c[0], c[1])
			}
		}
		if h.Default() != wire.NSServer || h.Prefix != "stream" || len(h.NS) != 3 {
			t.Fatalf("namespaces %+v", h.NS)
		}
	})
}

// FuzzBounce builds a stanza from arbitrary attribute values, reads it, and
// bounces it with an arbitrary error: the bounce parses, answers the right
// stanza, and is never produced for an error (or an IQ result).
func FuzzBounce(f *testing.F) {
	f.Add(uint8(0), "romeo@b.test", "juliet@a.test/balcony", "m-1", "chat", "remote-server-not-found", "cancel", "en", "no route")
	f.Add(uint8(1), "b.test", "a.test", "", "error", "", "", "", "")
	f.Add(uint8(2), "b.test", "a.test", "p", "result", "x y", "bogus", "\xff", "<&>\x00")
	f.Add(uint8(5), "b.test", "", "p", "get", "service-unavailable", "wait", "", "")
	f.Fuzz(func(t *testing.T, kind uint8, to, from, id, typ, cond, etype, lang, text string) {
		name := [...]string{"message", "presence", "iq"}[kind%3]
		var in strings.Builder
		in.WriteString(prosodyHeader + "<" + name)
		for _, a := range [][2]string{{"to", to}, {"from", from}, {"id", id}, {"type", typ}} {
			if a[1] == "" && kind&4 != 0 {
				continue // leave it out
			}
			in.WriteString(" " + a[0] + "='")
			xml.EscapeText(&in, []byte(a[1]))
			in.WriteString("'")
		}
		in.WriteString("><body>payload</body></" + name + ">")

		r := wire.NewReader(strings.NewReader(in.String()), wire.Limits{})
		if _, err := r.ReadHeader(); err != nil {
			t.Fatal(err)
		}
		r.SetAuthenticated(true)
		e, err := r.Next()
		if err != nil {
			t.Fatalf("framer refuses %q: %v", in.String(), err)
		}
		se := stanza.Error{Condition: stanza.Condition(cond), Type: stanza.ErrorType(etype)}
		if text != "" || lang != "" {
			se.Text = map[string]string{lang: text}
		}
		if kind&8 != 0 {
			se.By = jid.MustParse("relay.example")
		}
		out, ok := wire.AppendBounce([]byte("prefix"), e, se)
		if !bytes.HasPrefix(out, []byte("prefix")) {
			t.Fatalf("dst clobbered: %q", out)
		}
		out = out[len("prefix"):]
		never := string(e.Type) == "error" || e.Kind == wire.IQ && string(e.Type) == "result" || len(e.From) == 0
		if ok == never || (!ok && len(out) != 0) {
			t.Fatalf("bounce %v (%q) for type %q from %q", ok, out, e.Type, e.From)
		}
		if !ok {
			return
		}

		toks, err := decodeAll(wrapper(outStream) + string(out) + "</fuzz-wrapper>")
		if err != nil {
			t.Fatalf("bounce %q does not parse: %v", out, err)
		}
		top := toks[1].(xml.StartElement)
		if top.Name.Space != wire.NSServer || top.Name.Local != name {
			t.Fatalf("bounce is %v", top.Name)
		}
		for _, c := range []struct {
			attr string
			want []byte
		}{{"to", e.From}, {"from", e.To}, {"id", e.ID}} {
			v, present := attrValue(top, "", c.attr)
			if present != (len(c.want) > 0 || c.attr == "id" && c.want != nil) || v != string(c.want) && !strings.ContainsAny(v, "\t\n\r") {
				t.Fatalf("bounce %s=%q (present %v), want %q", c.attr, v, present, c.want)
			}
		}
		if v, _ := attrValue(top, "", "type"); v != "error" {
			t.Fatalf("bounce type %q", v)
		}
		errEl := toks[2].(xml.StartElement)
		condEl := toks[3].(xml.StartElement)
		et, _ := attrValue(errEl, "", "type")
		switch stanza.ErrorType(et) {
		case stanza.Auth, stanza.Cancel, stanza.Continue, stanza.Modify, stanza.Wait:
		default:
			t.Fatalf("error type %q", et)
		}
		if condEl.Name.Space != wire.NSStanzaError || condEl.Name.Local == "" {
			t.Fatalf("condition %v", condEl.Name)
		}
		if se.Text != nil {
			var got []byte
			for _, tok := range toks {
				if cd, ok := tok.(xml.CharData); ok {
					got = append(got, cd...)
				}
			}
			if want := strings.ReplaceAll(sanitize(text), "\r", "\n"); string(got) != want && !strings.Contains(text, "\r") {
				t.Fatalf("text %q, want %q", got, want)
			}
		}

		// The bounce reads back as an error stanza, which is never bounced.
		r = wire.NewReader(strings.NewReader(prosodyHeader+string(out)), wire.Limits{})
		r.ReadHeader()
		b, err := r.Next()
		if err != nil {
			t.Fatalf("framer refuses bounce %q: %v", out, err)
		}
		if again, ok := wire.AppendBounce(nil, b, se); ok {
			t.Fatalf("bounced a bounce: %q", again)
		}
	})
}

// FuzzReaderChunking reads the same input whole and in small chunks with
// the default limits, whose buffer a Reader gives back to the pool whenever
// it has nothing buffered between top-level elements (fillIdle), or with a
// small MaxStanza and MaxSkip set: both must yield the same header,
// elements (skipped ones included) and outcome.
func FuzzReaderChunking(f *testing.F) {
	for i, s := range fuzzSeeds {
		f.Add([]byte(s), uint8(i*37))
	}
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		lim := wire.Limits{}
		if mode&0x80 != 0 {
			lim = wire.Limits{MaxStanza: 32 + int(mode&0x7f), MaxSkip: 1024}
		}
		read := func(src io.Reader) (out []string, final string) {
			r := wire.NewReader(src, lim)
			r.SetAuthenticated(mode&1 == 1)
			h, err := r.ReadHeader()
			if err != nil {
				return nil, "header: " + err.Error()
			}
			out = append(out, h.To+"|"+h.From+"|"+h.ID)
			for range 1000 {
				el, err := r.Next()
				if err != nil {
					return out, err.Error()
				}
				out = append(out, fmt.Sprintf("%v:%s|%s|%s|%d|%d", el.Kind, el.Raw, el.To, el.ID, el.Oversize, r.InputOffset()))
			}
			return out, "more"
		}
		whole, wholeEnd := read(bytes.NewReader(data))
		parts, partsEnd := read(&chunker{data: data, n: int(mode>>1)%13 + 1})
		if wholeEnd != partsEnd || len(whole) != len(parts) {
			t.Fatalf("whole: %d items, %s; chunked: %d items, %s", len(whole), wholeEnd, len(parts), partsEnd)
		}
		for i := range whole {
			if whole[i] != parts[i] {
				t.Fatalf("item %d: whole %q, chunked %q", i, whole[i], parts[i])
			}
		}
	})
}
