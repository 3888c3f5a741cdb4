package s2s

import (
	"bytes"
	"encoding/base64"
	"reflect"
	"strings"
	"testing"

	"github.com/fedrelay/fedrelay/dialback"
	"mellium.im/xmpp/stream"
)

func TestParseFeatures(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want features
	}{
		{"prosody before TLS",
			"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>",
			features{StartTLS: true, StartTLSRequired: true}},
		{"prosody after TLS, certificate not acceptable",
			"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>",
			features{Mechanisms: []string{}, Dialback: true}},
		{"ejabberd after TLS",
			`<stream:features><mechanisms xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><mechanism>EXTERNAL</mechanism></mechanisms>` +
				`<dialback xmlns="urn:xmpp:features:dialback"><errors/></dialback><bidi xmlns="urn:xmpp:features:bidi"/></stream:features>`,
			features{Mechanisms: []string{"EXTERNAL"}, Dialback: true, DialbackErrors: true, Bidi: true}},
		{"prosody after SASL EXTERNAL",
			"<stream:features><sm xmlns='urn:xmpp:sm:2'><optional/></sm><sm xmlns='urn:xmpp:sm:3'><optional/></sm></stream:features>",
			features{SM: true}},
		{"stream management 2 only", "<stream:features><sm xmlns='urn:xmpp:sm:2'/></stream:features>", features{}},
		{"ejabberd 24.12 offers bidi in the request namespace (ejabberd #4300)",
			`<stream:features><dialback xmlns="urn:xmpp:features:dialback"><errors/></dialback><bidi xmlns="urn:xmpp:bidi"/></stream:features>`,
			features{Dialback: true, DialbackErrors: true, Bidi: true}},
		{"bidi in another namespace is not bidi",
			`<stream:features><bidi xmlns="urn:example:bidi"/></stream:features>`, features{}},
		{"empty", "<stream:features/>", features{}},
		{"unknown required feature",
			"<stream:features><foo xmlns='urn:example:foo'><required/></foo></stream:features>",
			features{Unknown: []string{"urn:example:foo foo"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseFeatures([]byte(tc.raw))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("got %+v, want %+v", *got, tc.want)
			}
		})
	}
	if f, _ := parseFeatures([]byte("<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms></stream:features>")); !f.External() {
		t.Error("External() = false for an EXTERNAL offer")
	}
}

func TestParseAuth(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString
	tests := []struct {
		raw     string
		want    saslAuth
		wantErr bool
	}{
		{"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>", saslAuth{Mechanism: "EXTERNAL"}, false},
		{"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'/>", saslAuth{Mechanism: "EXTERNAL"}, false},
		{"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>" + b64([]byte("a.test")) + "</auth>",
			saslAuth{Mechanism: "EXTERNAL", AuthzID: "a.test"}, false},
		{"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>", saslAuth{Mechanism: "PLAIN", AuthzID: "\x00a\x00b"}, false},
		{"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>not base64!</auth>", saslAuth{}, true},
		{"<auth xmlns='jabber:server' mechanism='EXTERNAL'>=</auth>", saslAuth{}, true},
	}
	for _, tc := range tests {
		got, err := parseAuth([]byte(tc.raw))
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parseAuth(%q) = %+v, %v; want %+v, error %v", tc.raw, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestParseStreamError(t *testing.T) {
	got := parseStreamError([]byte("<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" +
		"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'> no such host </text></stream:error>"))
	if got.Condition != "host-unknown" || got.Text != "no such host" {
		t.Errorf("got %+v", got)
	}
	if got := parseStreamError([]byte("<stream:error/>")); got.Condition != "undefined-condition" {
		t.Errorf("empty error: %+v", got)
	}
}

func TestSplitDomain(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice@a.test/res", "a.test"},
		{"a.test", "a.test"},
		{"a.test/res@x", "a.test"},
		{"Alice@A.Test", "a.test"},
		{"user@bücher.example", "xn--bcher-kva.example"},
		{"a.test.", "a.test"},
	}
	for _, tc := range tests {
		if got, err := splitDomain(tc.in); err != nil || got != tc.want {
			t.Errorf("splitDomain(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "alice@", "@/x", "a b.test"} {
		if got, err := splitDomain(bad); err == nil {
			t.Errorf("splitDomain(%q) = %q, want an error", bad, got)
		}
	}
}

// FuzzNegotiationParsers feeds arbitrary bytes to the parsers of negotiation
// elements: they must never panic, and what parseFeatures accepts must be
// internally consistent.
func FuzzNegotiationParsers(f *testing.F) {
	f.Add([]byte("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"))
	f.Add([]byte(`<stream:features><mechanisms xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><mechanism>EXTERNAL</mechanism></mechanisms><dialback xmlns="urn:xmpp:features:dialback"><errors/></dialback></stream:features>`))
	f.Add([]byte("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>YS50ZXN0</auth>"))
	f.Add([]byte("<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>x</text></stream:error>"))
	f.Add([]byte("<stream:features><dialback xmlns='urn:xmpp:features:dialback'/><limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>524288</max-bytes><idle-seconds>900</idle-seconds></limits></stream:features>"))
	f.Add([]byte("<stream:features><limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>-1</max-bytes><idle-seconds>x</idle-seconds></limits></stream:features>"))
	f.Add([]byte("alice@a.test/r"))
	f.Add([]byte("<a xmlns='urn:xmpp:sm:3' h='4294967295'/>"))
	f.Add([]byte("<a xmlns='urn:xmpp:sm:3' h='-1'/>"))
	f.Add([]byte("<stream:features><sm xmlns='urn:xmpp:sm:3'><optional/></sm></stream:features>"))
	f.Add([]byte("<iq type='get' from='b.test' to='a.test' id='p'><ping xmlns='urn:xmpp:ping'/></iq>"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if fe, err := parseFeatures(raw); err == nil {
			if fe.StartTLSRequired && !fe.StartTLS {
				t.Fatalf("required without starttls: %+v", fe)
			}
			if fe.DialbackErrors && !fe.Dialback {
				t.Fatalf("errors without dialback: %+v", fe)
			}
		}
		parseAuth(raw)
		if h, err := parseAck(raw); err == nil && !bytes.Contains(raw, []byte("urn:xmpp:sm:3")) {
			t.Fatalf("parseAck(%q) = %d without the namespace", raw, h)
		}
		if e := parseStreamError(raw); e.Condition == "" {
			t.Fatal("empty condition")
		}
		d, err := splitDomain(string(raw))
		if err == nil && d == "" {
			t.Fatal("empty domain without error")
		}
		// What the plain reading accepts comes out the same. (The fast
		// path takes a lower-case ASCII domain as it is, without checking
		// its labels: one that is no domain then matches nothing.)
		if rd, rerr := splitDomainPlain(string(raw)); rerr == nil && (err != nil || d != rd) {
			t.Fatalf("splitDomain(%q) = %q, %v; the plain reading gives %q", raw, d, err, rd)
		}
		if isPing(raw) && !bytes.Contains(raw, []byte(nsPing)) {
			t.Fatal("a ping without the ping namespace")
		}
	})
}

func TestIsPing(t *testing.T) {
	tests := []struct {
		raw  string
		want bool
	}{
		{"<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>", true},
		{"<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'></ping></iq>", true},
		{"<iq type='get' id='1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>", false},
		{"<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/><x xmlns='urn:xmpp:ping'/></iq>", false},
		{"<iq type='get' id='1'><query xmlns='jabber:iq:version'><name>urn:xmpp:ping</name></query></iq>", false},
	}
	for _, tc := range tests {
		if got := isPing([]byte(tc.raw)); got != tc.want {
			t.Errorf("isPing(%s) = %v, want %v", tc.raw, got, tc.want)
		}
	}
}

// TestHeaderStringsDoNotAllocate: the domainparts of JIDs already in normal
// form are substrings, and the usual stanza types constants, so that
// reading a stanza's addressing costs one allocation (the string holding
// from, to and id), not five.
func TestHeaderStringsDoNotAllocate(t *testing.T) {
	jid := "alice@example.org/phone"
	if n := testing.AllocsPerRun(100, func() {
		if d, err := splitDomain(jid); err != nil || d != "example.org" {
			t.Fatalf("splitDomain(%q) = %q, %v", jid, d, err)
		}
	}); n != 0 {
		t.Errorf("splitDomain of a normal JID: %v allocations", n)
	}
	for _, typ := range []string{"", "chat", "groupchat", "get", "set", "result", "error", "unavailable", "subscribe", "probe"} {
		b := []byte(typ)
		if n := testing.AllocsPerRun(100, func() {
			if got := stanzaType(b); got != typ {
				t.Fatalf("stanzaType(%q) = %q", typ, got)
			}
		}); n != 0 {
			t.Errorf("stanzaType(%q): %v allocations", typ, n)
		}
	}
	if got := stanzaType([]byte("x-custom")); got != "x-custom" {
		t.Errorf("stanzaType of an unknown type: %q", got)
	}
	if d, err := splitDomain("Alice@Example.ORG"); err != nil || d != "example.org" {
		t.Errorf("splitDomain of a JID to normalise: %q, %v", d, err)
	}
}

func TestParseAck(t *testing.T) {
	tests := []struct {
		raw     string
		want    uint32
		wantErr bool
	}{
		{"<a xmlns='urn:xmpp:sm:3' h='0'/>", 0, false},
		{"<a xmlns='urn:xmpp:sm:3' h='4294967295'/>", 4294967295, false},
		{`<a h=" 17 " xmlns="urn:xmpp:sm:3"></a>`, 17, false},
		{"<a xmlns='urn:xmpp:sm:3' h='4294967296'/>", 0, true}, // beyond xs:unsignedInt
		{"<a xmlns='urn:xmpp:sm:3' h='-1'/>", 0, true},
		{"<a xmlns='urn:xmpp:sm:3'/>", 0, true},
		{"<a xmlns='urn:xmpp:sm:2' h='1'/>", 0, true},
		{"<r xmlns='urn:xmpp:sm:3' h='1'/>", 0, true},
		{"<a xmlns='urn:xmpp:sm:3' h='1'", 0, true},
	}
	for _, tc := range tests {
		h, err := parseAck([]byte(tc.raw))
		if (err != nil) != tc.wantErr || h != tc.want {
			t.Errorf("parseAck(%s) = %d, %v; want %d, error %v", tc.raw, h, err, tc.want, tc.wantErr)
		}
	}
	if got := string(appendAck(nil, 4294967295)); got != "<a xmlns='urn:xmpp:sm:3' h='4294967295'/>" {
		t.Errorf("appendAck = %s", got)
	}
}

// splitDomainPlain is splitDomain as RFC 7622 §3.2 reads: cut the resource
// at the first '/', the localpart at the last '@' before it, normalise the
// rest. splitDomain does it in one pass; the fuzz target compares them.
func splitDomainPlain(j string) (string, error) {
	if i := strings.IndexByte(j, '/'); i >= 0 {
		j = j[:i]
	}
	if i := strings.LastIndexByte(j, '@'); i >= 0 {
		j = j[i+1:]
	}
	if j == "" {
		return "", stream.ImproperAddressing
	}
	d, err := dialback.Domain(j)
	if err != nil {
		return "", stream.ImproperAddressing
	}
	return d, nil
}
