package certs_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/s2s/certs"
)

func TestParseSAN(t *testing.T) {
	indep := sanExtension(t, []string{"example.org", "*.example.org"},
		[]string{"_xmpp-server.example.org"}, []string{"example.org", "bücher.example"}).Value
	tests := []struct {
		name           string
		ext            []byte
		dns, srv, xmpp []string
		wantErr        bool
	}{
		{name: "encoding/asn1 encoding", ext: indep,
			dns: []string{"example.org", "*.example.org"}, srv: []string{"_xmpp-server.example.org"}, xmpp: []string{"example.org", "bücher.example"}},
		{name: "empty sequence", ext: []byte{0x30, 0x00}},
		{name: "IP and URI skipped", ext: []byte{0x30, 0x0b,
			0x87, 0x04, 192, 0, 2, 1, // iPAddress
			0x86, 0x03, 'x', ':', 'y'}}, // uniformResourceIdentifier
		{name: "unknown otherName skipped", ext: []byte{0x30, 0x0c,
			0xa0, 0x0a, 0x06, 0x03, 0x2a, 0x03, 0x04, 0xa0, 0x03, 0x0c, 0x01, 'x'}},
		{name: "XmppAddr as IA5String skipped", ext: []byte{0x30, 0x11,
			0xa0, 0x0f, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x05, 0xa0, 0x03, 0x16, 0x01, 'x'}},
		{name: "XmppAddr", ext: []byte{0x30, 0x11,
			0xa0, 0x0f, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x05, 0xa0, 0x03, 0x0c, 0x01, 'x'}, xmpp: []string{"x"}},
		{name: "XmppAddr invalid UTF-8 skipped", ext: []byte{0x30, 0x11,
			0xa0, 0x0f, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x05, 0xa0, 0x03, 0x0c, 0x01, 0xff}},
		{name: "SRVName non-ASCII skipped", ext: []byte{0x30, 0x11,
			0xa0, 0x0f, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x07, 0xa0, 0x03, 0x16, 0x01, 0xc3}},
		{name: "not a sequence", ext: []byte{0x31, 0x00}, wantErr: true},
		{name: "trailing bytes", ext: []byte{0x30, 0x00, 0x00}, wantErr: true},
		{name: "truncated", ext: indep[:len(indep)-3], wantErr: true},
		{name: "otherName without value", ext: []byte{0x30, 0x07,
			0xa0, 0x05, 0x06, 0x03, 0x2a, 0x03, 0x04}, wantErr: true},
		{name: "otherName value not explicit [0]", ext: []byte{0x30, 0x0a,
			0xa0, 0x08, 0x06, 0x03, 0x2a, 0x03, 0x04, 0x0c, 0x01, 'x'}, wantErr: true},
		{name: "non-minimal length", ext: []byte{0x30, 0x81, 0x00}, wantErr: true},
		{name: "nil", ext: nil, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dns, srv, xmpp, err := certs.ParseSAN(tt.ext)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if !slices.Equal(dns, tt.dns) || !slices.Equal(srv, tt.srv) || !slices.Equal(xmpp, tt.xmpp) {
				t.Errorf("got %q %q %q, want %q %q %q", dns, srv, xmpp, tt.dns, tt.srv, tt.xmpp)
			}
		})
	}
}

// FuzzParseSAN feeds arbitrary extension bytes to the SAN parser. Properties:
// it never panics; what it returns is ASCII (dNSName, SRVName) or UTF-8
// (XmppAddr); and what it accepts survives a round trip through the
// package's encoder unchanged.
func FuzzParseSAN(f *testing.F) {
	seeds := [][]byte{
		nil, {0x30, 0x00}, {0x30, 0x80}, {0xa0, 0x00},
		sanExtension(f, []string{"example.org"}, []string{"_xmpp-server.example.org"}, []string{"example.org"}).Value,
		sanExtension(f, []string{"*.example.org", "xn--bcher-kva.example"}, nil, []string{"bücher.example", "user@example.org/r"}).Value,
	}
	if ext, err := certs.MarshalSAN([]string{"a.example"}, []string{"_xmpp-server.a.example", "_xmpp-client.a.example"}, []string{"a.example"}); err == nil {
		seeds = append(seeds, ext)
	}
	// The extension of a generated certificate, as peers will see it.
	if s, err := certs.NewStore([]config.Domain{{Name: "seed.example"}}, certs.Options{}); err == nil {
		if c, err := s.Certificate(context.Background(), "seed.example"); err == nil {
			for _, e := range c.Leaf.Extensions {
				if e.Id.Equal(oidSAN) {
					seeds = append(seeds, e.Value)
				}
			}
		}
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ext []byte) {
		dns, srv, xmpp, err := certs.ParseSAN(ext)
		for _, s := range slices.Concat(dns, srv) {
			for i := 0; i < len(s); i++ {
				if s[i] >= utf8.RuneSelf {
					t.Fatalf("non-ASCII name %q", s)
				}
			}
		}
		for _, s := range xmpp {
			if !utf8.ValidString(s) {
				t.Fatalf("invalid UTF-8 XmppAddr %q", s)
			}
		}
		if err != nil {
			return
		}
		again, err := certs.MarshalSAN(dns, srv, xmpp)
		if err != nil {
			t.Fatalf("re-encoding %q %q %q: %v", dns, srv, xmpp, err)
		}
		dns2, srv2, xmpp2, err := certs.ParseSAN(again)
		if err != nil || !slices.Equal(dns, dns2) || !slices.Equal(srv, srv2) || !slices.Equal(xmpp, xmpp2) {
			t.Fatalf("round trip: %q %q %q became %q %q %q (%v)", dns, srv, xmpp, dns2, srv2, xmpp2, err)
		}
	})
}

// FuzzMatchSAN checks identity matching on arbitrary extensions and domains:
// it never panics, ASCII case never changes the answer, and a name the
// certificate does not contain in any form never matches unless through a
// wildcard or IDNA mapping.
func FuzzMatchSAN(f *testing.F) {
	ext := sanExtension(f, []string{"example.org", "*.wild.example"}, []string{"_xmpp-server.srv.example"}, []string{"bücher.example"}).Value
	for _, d := range []string{"example.org", "a.wild.example", "wild.example", "srv.example", "xn--bcher-kva.example", "BÜCHER.example", "", "*.wild.example", "a..b"} {
		f.Add(ext, d)
	}
	f.Fuzz(func(t *testing.T, ext []byte, domain string) {
		got := certs.MatchSAN(ext, domain)
		if certs.MatchSAN(ext, asciiUpper(domain)) != got {
			t.Fatalf("MatchSAN(%q) = %v but differs in upper case", domain, got)
		}
		if !got {
			return
		}
		dns, srv, xmpp, _ := certs.ParseSAN(ext)
		lower := strings.ToLower(domain)
		for _, n := range slices.Concat(dns, srv, xmpp) {
			// Wildcards and IDNA mapping of non-ASCII names are legitimate
			// ways to match without containing the domain as such.
			if strings.Contains(n, "*") || !isASCIIString(n) || !isASCIIString(domain) ||
				strings.Contains(strings.ToLower(n), lower) {
				return
			}
		}
		t.Fatalf("%q matched names %q %q %q that do not contain it", domain, dns, srv, xmpp)
	})
}

func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func isASCIIString(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
