package wire_test

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/fedrelay/fedrelay/s2s/wire"
)

// firstElement reads header+el and returns the element.
func firstElement(t *testing.T, header, el string) *wire.Element {
	t.Helper()
	r := wire.NewReader(strings.NewReader(header+el), wire.Limits{})
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	e, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestAppendTo(t *testing.T) {
	// A header that breaks RFC 6120 §4.8.5 by declaring a payload
	// namespace, binds db elsewhere, and sets a language.
	const odd = `<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='urn:not-dialback' xmlns:foo='urn:foo?a=1&amp;b=&apos;2&apos;' xml:lang='de'>`
	for _, tc := range []struct {
		name, header, el, outLang, want string
	}{
		{"nothing to add", prosodyHeader, messageChat, "en", messageChat},
		{"dialback prefix as Writer declares it", prosodyHeader, dbResult, "en", dbResult},
		{"language added", prosodyHeader, iqPing, "fr",
			`<iq xml:lang='en' type='get' id='ping-7' from='a.test' to='b.test'><ping xmlns='urn:xmpp:ping'/></iq>`},
		{"own language kept", odd, `<message xml:lang='en'/>`, "en", `<message xml:lang='en'/>`},
		{"header prefix on a child", odd, `<message to='a' from='b'><foo:x/></message>`, "de",
			`<message xmlns:foo='urn:foo?a=1&amp;b=&apos;2&apos;' to='a' from='b'><foo:x/></message>`},
		{"header prefix on an attribute, used twice", odd, `<message foo:a='1'><x foo:b='2'/></message>`, "de",
			`<message xmlns:foo='urn:foo?a=1&amp;b=&apos;2&apos;' foo:a='1'><x foo:b='2'/></message>`},
		{"prefix redeclared inside", odd, `<message><foo:x xmlns:foo='urn:bar'/></message>`, "de",
			`<message><foo:x xmlns:foo='urn:bar'/></message>`},
		{"db bound elsewhere", odd, `<db:result/>`, "de", `<db:result xmlns:db='urn:not-dialback'/>`},
		{"both", odd, `<message><foo:x/><db:y/></message>`, "",
			`<message xmlns:foo='urn:foo?a=1&amp;b=&apos;2&apos;' xmlns:db='urn:not-dialback' xml:lang='de'><foo:x/><db:y/></message>`},
		{"no default namespace on the source stream", `<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`,
			`<features><x/></features>`, "", `<features xmlns=''><x/></features>`},
		{"default namespace declared on the element", `<stream xmlns='http://etherx.jabber.org/streams'>`,
			`<message xmlns='jabber:server'><body/></message>`, "", `<message xmlns='jabber:server'><body/></message>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := firstElement(t, tc.header, tc.el)
			got := e.AppendTo([]byte("q"), tc.outLang)
			if string(got) != "q"+tc.want {
				t.Errorf("AppendTo:\n got %s\nwant q%s", got, tc.want)
			}
			if e.NeedsFixup(tc.outLang) != (tc.want != tc.el) {
				t.Errorf("NeedsFixup = %v", !(tc.want != tc.el))
			}
			// Writer does the same against the header it wrote.
			var buf bytes.Buffer
			w := wire.NewWriter(&buf)
			w.WriteHeader(&wire.Header{Lang: tc.outLang})
			buf.Reset()
			w.Reset(&buf)
			w.WriteHeader(&wire.Header{Lang: tc.outLang})
			n := w.Buffered()
			if err := w.WriteElement(e); err != nil || w.Flush() != nil {
				t.Fatal(err)
			}
			if got := buf.String()[n:]; got != tc.want {
				t.Errorf("WriteElement:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestSteadyStateAllocs checks that reading elements, copying them and
// taking their text allocate nothing once the buffers have grown.
func TestSteadyStateAllocs(t *testing.T) {
	var in strings.Builder
	in.WriteString(prosodyHeader)
	shapes := []string{messageChat, messageEscaped, messageCDATA, presenceCaps, iqPing, dbResult, featuresAuth,
		`<message xmlns:x='urn:x' x:a='1' to='a&#x40;b'><x:y xml:lang='fr'>&lt;é&gt;</x:y></message>`}
	for i := range 2000 {
		in.WriteString(shapes[i%len(shapes)])
		in.WriteString(" ")
	}
	r := wire.NewReader(strings.NewReader(in.String()), wire.Limits{})
	r.ReportSpace(true)
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	r.SetAuthenticated(true)
	dst := make([]byte, 0, 4096)
	step := func() {
		e, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		dst = e.AppendTo(dst[:0], "de")
		dst = e.AppendText(dst[:0])
	}
	for range 2 * len(shapes) {
		step()
	}
	if n := testing.AllocsPerRun(1000, step); n != 0 {
		t.Errorf("%v allocations per element", n)
	}
}

func ExampleElement_AppendTo() {
	// The peer declared a payload namespace on its header, which RFC 6120
	// forbids but peers do; the copy must carry the declaration.
	const header = `<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:x='urn:example:x'>`
	r := wire.NewReader(strings.NewReader(header+`<message to='a@b.example' from='c@d.example'><x:y/></message>`), wire.Limits{})
	r.ReadHeader()
	e, _ := r.Next()
	fmt.Printf("%s\n", e.AppendTo(nil, ""))
	// Output:
	// <message xmlns:x='urn:example:x' to='a@b.example' from='c@d.example'><x:y/></message>
}

func ExampleReader() {
	in := prosodyHeader + dbResult + " " + messageChat + streamEnd
	r := wire.NewReader(strings.NewReader(in), wire.Limits{})
	h, err := r.ReadHeader()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("stream from", h.From, "to", h.To)
	for {
		e, err := r.Next()
		if err == io.EOF {
			fmt.Println("closed")
			return
		}
		if err != nil {
			fmt.Println(err) // a stream error to send before closing
			return
		}
		switch e.Kind {
		case wire.DialbackResult:
			fmt.Printf("dialback %s -> %s key %.8s…\n", e.From, e.To, e.AppendText(nil))
			r.SetAuthenticated(true) // once verified
		case wire.Message, wire.Presence, wire.IQ:
			fmt.Printf("%s %s -> %s, %d bytes to copy\n", e.Kind, e.From, e.To, len(e.Raw))
		}
	}
	// Output:
	// stream from a.test to b.test
	// dialback a.test -> b.test key 37c69b1c…
	// message juliet@a.test/balcony -> romeo@b.test, 195 bytes to copy
	// closed
}
