package certs_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/s2s/certs"
)

func TestVerifyPeer(t *testing.T) {
	p := newPKI(t)
	v := &certs.Verifier{Roots: p.roots, Now: func() time.Time { return testNow }}
	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}

	tests := []struct {
		name   string
		spec   leafSpec
		noInt  bool // leave the intermediate out of the chain sent
		self   bool // self-signed rather than issued by the intermediate
		domain string
		want   error // nil: accepted
	}{
		{name: "DNS-ID", spec: leafSpec{dns: []string{"example.org"}}, domain: "example.org"},
		{name: "DNS-ID among others", spec: leafSpec{dns: []string{"other.net", "example.org"}}, domain: "example.org"},
		{name: "DNS-ID case-insensitive", spec: leafSpec{dns: []string{"EXAMPLE.Org"}}, domain: "Example.ORG"},
		{name: "wildcard one label", spec: leafSpec{dns: []string{"*.example.org"}}, domain: "a.example.org"},
		{name: "wildcard not the parent", spec: leafSpec{dns: []string{"*.example.org"}}, domain: "example.org", want: certs.ErrNameMismatch},
		{name: "wildcard not two labels", spec: leafSpec{dns: []string{"*.example.org"}}, domain: "a.b.example.org", want: certs.ErrNameMismatch},
		{name: "wildcard over a TLD", spec: leafSpec{dns: []string{"*.org"}}, domain: "example.org", want: certs.ErrNameMismatch},
		{name: "partial-label wildcard", spec: leafSpec{dns: []string{"f*.example.org"}}, domain: "foo.example.org", want: certs.ErrNameMismatch},
		{name: "wildcard not left-most", spec: leafSpec{dns: []string{"a.*.example.org"}}, domain: "a.b.example.org", want: certs.ErrNameMismatch},
		{name: "SRV-ID only", spec: leafSpec{srv: []string{"_xmpp-server.example.org"}}, domain: "example.org"},
		{name: "SRV-ID case-insensitive", spec: leafSpec{srv: []string{"_XMPP-Server.Example.ORG"}}, domain: "example.org"},
		{name: "SRV-ID wildcard domain", spec: leafSpec{srv: []string{"_xmpp-server.*.example.org"}}, domain: "muc.example.org"},
		{name: "SRV-ID of the client service", spec: leafSpec{srv: []string{"_xmpp-client.example.org"}}, domain: "example.org", want: certs.ErrNameMismatch},
		{name: "XmppAddr only", spec: leafSpec{xmpp: []string{"example.org"}}, domain: "example.org"},
		{name: "XmppAddr of an account", spec: leafSpec{xmpp: []string{"admin@example.org"}}, domain: "example.org", want: certs.ErrNameMismatch},
		{name: "XmppAddr with a resource", spec: leafSpec{xmpp: []string{"example.org/x"}}, domain: "example.org", want: certs.ErrNameMismatch},
		{name: "XmppAddr no wildcard", spec: leafSpec{xmpp: []string{"*.example.org"}}, domain: "a.example.org", want: certs.ErrNameMismatch},
		{name: "CN only never matches", spec: leafSpec{cn: "example.org"}, domain: "example.org", want: certs.ErrNameMismatch},
		{name: "CN ignored beside other names", spec: leafSpec{cn: "example.org", dns: []string{"other.net"}}, domain: "example.org", want: certs.ErrNameMismatch},
		{name: "wrong name", spec: leafSpec{dns: []string{"example.net"}, srv: []string{"_xmpp-server.example.net"}, xmpp: []string{"example.net"}}, domain: "example.org", want: certs.ErrNameMismatch},
		{name: "suffix is not a match", spec: leafSpec{dns: []string{"ample.org"}}, domain: "example.org", want: certs.ErrNameMismatch},
		{name: "reference domain too long", spec: leafSpec{xmpp: []string{strings.Repeat("a", 1100)}}, domain: strings.Repeat("a", 1100), want: certs.ErrNameMismatch},
		{name: "invalid reference domain", spec: leafSpec{dns: []string{"example.org"}}, domain: "user@example.org", want: certs.ErrNameMismatch},

		{name: "IDNA: U-label reference, A-label DNS-ID", spec: leafSpec{dns: []string{"xn--bcher-kva.example"}}, domain: "bücher.example"},
		{name: "IDNA: mapped case", spec: leafSpec{dns: []string{"xn--bcher-kva.example"}}, domain: "BÜCHER.example"},
		{name: "IDNA: U-label XmppAddr, A-label reference", spec: leafSpec{xmpp: []string{"bücher.example"}}, domain: "xn--bcher-kva.example"},
		{name: "IDNA: SRV-ID", spec: leafSpec{srv: []string{"_xmpp-server.xn--bcher-kva.example"}}, domain: "bücher.example"},
		{name: "IDNA: different name", spec: leafSpec{dns: []string{"xn--bcher-kva.example"}}, domain: "bucher.example", want: certs.ErrNameMismatch},

		{name: "serverAuth-only EKU accepted", spec: leafSpec{dns: []string{"example.org"}, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, domain: "example.org"},
		{name: "clientAuth-only EKU accepted", spec: leafSpec{dns: []string{"example.org"}, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, domain: "example.org"},
		{name: "both EKUs", spec: leafSpec{dns: []string{"example.org"}, eku: server}, domain: "example.org"},
		{name: "anyExtendedKeyUsage", spec: leafSpec{dns: []string{"example.org"}, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}, domain: "example.org"},
		{name: "codeSigning-only EKU refused", spec: leafSpec{dns: []string{"example.org"}, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}, domain: "example.org", want: certs.ErrUsage},
		{name: "emailProtection-only EKU refused", spec: leafSpec{dns: []string{"example.org"}, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}}, domain: "example.org", want: certs.ErrUsage},

		{name: "expired", spec: leafSpec{dns: []string{"example.org"}, notBefore: testNow.Add(-60 * 24 * time.Hour), notAfter: testNow.Add(-time.Hour)}, domain: "example.org", want: certs.ErrExpired},
		{name: "not yet valid", spec: leafSpec{dns: []string{"example.org"}, notBefore: testNow.Add(time.Hour)}, domain: "example.org", want: certs.ErrExpired},
		{name: "intermediate not sent", spec: leafSpec{dns: []string{"example.org"}}, noInt: true, domain: "example.org", want: certs.ErrUntrusted},
		{name: "self-signed, untrusted", spec: leafSpec{dns: []string{"example.org"}}, self: true, domain: "example.org", want: certs.ErrUntrusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec
			if !tt.self {
				spec.issuer = p.inter
			}
			c, _ := leaf(t, spec)
			chain := []*x509.Certificate{c}
			if !tt.self && !tt.noInt {
				chain = append(chain, p.inter.cert)
			}
			err := v.VerifyPeer(tls.ConnectionState{PeerCertificates: chain}, tt.domain)
			checkErr(t, err, tt.want)
			if ok := v.ValidFor(tls.ConnectionState{PeerCertificates: chain}, tt.domain); ok != (tt.want == nil) {
				t.Errorf("ValidFor = %v, VerifyPeer = %v", ok, err)
			}
		})
	}
}

// TestVerifyChains covers chains other than leaf ← intermediate ← root.
func TestVerifyChains(t *testing.T) {
	p := newPKI(t)
	v := &certs.Verifier{Roots: p.roots, Now: func() time.Time { return testNow }}
	mk := func(spec leafSpec, extra ...*x509.Certificate) []*x509.Certificate {
		c, _ := leaf(t, spec)
		return append([]*x509.Certificate{c}, extra...)
	}
	tests := []struct {
		name   string
		chain  []*x509.Certificate
		domain string
		want   error
	}{
		{"signed by the root", mk(leafSpec{dns: []string{"example.org"}, issuer: p.root}), "example.org", nil},
		{"extra unrelated certificate sent", mk(leafSpec{dns: []string{"example.org"}, issuer: p.inter}, p.serverOnly.cert, p.inter.cert), "example.org", nil},
		{"constrained CA, DNS-ID inside", mk(leafSpec{dns: []string{"chat.corp.example"}, issuer: p.constrained}, p.constrained.cert), "chat.corp.example", nil},
		{"constrained CA, XmppAddr inside", mk(leafSpec{xmpp: []string{"chat.corp.example"}, issuer: p.constrained}, p.constrained.cert), "chat.corp.example", nil},
		{"constrained CA, DNS-ID outside", mk(leafSpec{dns: []string{"example.org"}, issuer: p.constrained}, p.constrained.cert), "example.org", certs.ErrUntrusted},
		{"constrained CA, XmppAddr outside", mk(leafSpec{xmpp: []string{"example.org"}, issuer: p.constrained}, p.constrained.cert), "example.org", certs.ErrNameMismatch},
		{"constrained CA, SRV-ID outside", mk(leafSpec{srv: []string{"_xmpp-server.example.org"}, issuer: p.constrained}, p.constrained.cert), "example.org", certs.ErrNameMismatch},
		{"serverAuth CA, serverAuth leaf", mk(leafSpec{dns: []string{"example.org"}, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, issuer: p.serverOnly}, p.serverOnly.cert), "example.org", nil},
		{"serverAuth CA, clientAuth-only leaf", mk(leafSpec{dns: []string{"example.org"}, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, issuer: p.serverOnly}, p.serverOnly.cert), "example.org", certs.ErrUsage},
		{"no certificate", nil, "example.org", certs.ErrNoCertificate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, v.VerifyPeer(tls.ConnectionState{PeerCertificates: tt.chain}, tt.domain), tt.want)
		})
	}
}

func checkErr(t *testing.T, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	var pe *certs.PeerError
	if !errors.As(err, &pe) {
		t.Fatalf("err %T is not a *certs.PeerError", err)
	}
	for _, other := range []error{certs.ErrNoCertificate, certs.ErrUntrusted, certs.ErrExpired, certs.ErrUsage, certs.ErrNameMismatch, certs.ErrDisabled} {
		if other != want && errors.Is(err, other) {
			t.Errorf("err %v also matches %v", err, other)
		}
	}
}

func TestPeerErrorDetails(t *testing.T) {
	p := newPKI(t)
	v := &certs.Verifier{Roots: p.roots, Now: func() time.Time { return testNow }}

	self, _ := leaf(t, leafSpec{dns: []string{"example.org"}})
	err := v.VerifyPeer(tls.ConnectionState{PeerCertificates: []*x509.Certificate{self}}, "example.org")
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		t.Errorf("untrusted: errors.As(UnknownAuthorityError) fails on %v", err)
	}
	if !strings.Contains(err.Error(), "example.org") || !strings.Contains(err.Error(), "untrusted chain") {
		t.Errorf("message %q should name the domain and the reason", err)
	}

	named, _ := leaf(t, leafSpec{dns: []string{"example.net"}, xmpp: []string{"example.net"}, issuer: p.root})
	err = v.VerifyPeer(tls.ConnectionState{PeerCertificates: []*x509.Certificate{named}}, "example.org")
	if msg := err.Error(); !strings.Contains(msg, "name mismatch") || !strings.Contains(msg, "example.net") {
		t.Errorf("mismatch message %q should say what the certificate names", msg)
	}

	off := &certs.Verifier{Roots: p.roots, Disabled: true}
	if err := off.VerifyPeer(tls.ConnectionState{PeerCertificates: []*x509.Certificate{named}}, "example.net"); !errors.Is(err, certs.ErrDisabled) {
		t.Errorf("disabled verifier: err = %v, want ErrDisabled", err)
	}
}

// TestPeerVerifyDomainLater checks the XEP-0344 path: a chain verified at the
// handshake, domains checked later, refused once the certificate expired.
func TestPeerVerifyDomainLater(t *testing.T) {
	p := newPKI(t)
	clk := newClock(testNow)
	v := &certs.Verifier{Roots: p.roots, Now: clk.now}
	c, _ := leaf(t, leafSpec{dns: []string{"example.org", "*.example.org"}, issuer: p.root, notAfter: testNow.Add(48 * time.Hour)})
	peer, err := v.VerifyChain(tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"example.org", "muc.example.org"} {
		if err := peer.VerifyDomain(d); err != nil {
			t.Errorf("VerifyDomain(%s) = %v", d, err)
		}
	}
	checkErr(t, peer.VerifyDomain("example.net"), certs.ErrNameMismatch)
	clk.add(72 * time.Hour)
	checkErr(t, peer.VerifyDomain("example.org"), certs.ErrExpired)
}

func TestIdentities(t *testing.T) {
	p := newPKI(t)
	c, _ := leaf(t, leafSpec{
		cn:     "cn.example",
		dns:    []string{"example.org", "*.example.org"},
		srv:    []string{"_xmpp-server.example.org", "_xmpp-client.example.org"},
		xmpp:   []string{"example.org", "bücher.example"},
		issuer: p.root,
	})
	dns, srv, xmpp := certs.Identities(c)
	for _, got := range []struct {
		kind      string
		got, want []string
	}{
		{"dns", dns, []string{"example.org", "*.example.org"}},
		{"srv", srv, []string{"_xmpp-server.example.org", "_xmpp-client.example.org"}},
		{"xmpp", xmpp, []string{"example.org", "bücher.example"}},
	} {
		if !slices.Equal(got.got, got.want) {
			t.Errorf("%s = %q, want %q", got.kind, got.got, got.want)
		}
	}
	cnOnly, _ := leaf(t, leafSpec{cn: "example.org", issuer: p.root})
	if dns, srv, xmpp := certs.Identities(cnOnly); len(dns)+len(srv)+len(xmpp) != 0 {
		t.Errorf("CN-only certificate: Identities = %q %q %q, want none", dns, srv, xmpp)
	}
}

func TestNewVerifier(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	caFile, _ := writePair(t, dir, "ca", []*x509.Certificate{p.root.cert}, p.root.key)
	badFile, _ := writePair(t, dir, "empty", nil, p.root.key)

	v, err := certs.NewVerifier(config.TLS{VerifyPeers: true, CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := leaf(t, leafSpec{dns: []string{"example.org"}, issuer: p.root})
	if err := v.VerifyPeer(tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}}, "example.org"); err != nil {
		t.Errorf("certificate from the CA file refused: %v", err)
	}
	if _, err := certs.NewVerifier(config.TLS{VerifyPeers: true, CAFile: badFile}); err == nil {
		t.Error("a CA file without certificates was accepted")
	}
	off, err := certs.NewVerifier(config.TLS{})
	if err != nil || !off.Disabled {
		t.Errorf("verify_peers false: Disabled = %v, err = %v", off != nil && off.Disabled, err)
	}
}
