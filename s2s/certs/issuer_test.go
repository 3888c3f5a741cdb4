package certs_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/s2s/certs"
)

// verifyIssued checks that cert is a chain from a leaf for domain to ca:
// crypto/x509 builds the chain with only ca as root, at time at, and the
// package's own Verifier finds domain's identities in it.
func verifyIssued(t *testing.T, cert *tls.Certificate, ca *testCA, domain string, at time.Time) {
	t.Helper()
	l := leafOf(t, cert)
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	inter := x509.NewCertPool()
	chain := []*x509.Certificate{l}
	for _, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		inter.AddCert(c)
		chain = append(chain, c)
	}
	if _, err := l.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: domain, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("certificate for %s does not chain to %s: %v", domain, ca.cert.Subject, err)
	}
	v := &certs.Verifier{Roots: roots, Now: func() time.Time { return at }}
	if err := v.VerifyPeer(tls.ConnectionState{PeerCertificates: chain}, domain); err != nil {
		t.Errorf("VerifyPeer(%s): %v", domain, err)
	}
}

// TestIssuedOnDemandAndRenewed: with an internal CA, the certificate made
// on demand for a remote domain chains to that CA and names the domain
// (what an internal Prosody with s2s_secure_auth checks); it is kept while
// more than a third of its validity is left and replaced, by one from the
// same CA, once less is.
func TestIssuedOnDemandAndRenewed(t *testing.T) {
	ca := newCA(t, "internal CA", nil, nil)
	clk := newClock(testNow)
	const validity = 90 * 24 * time.Hour
	s, err := certs.NewStore([]config.Domain{{Name: "a.example"}},
		certs.Options{Issuer: ca.tlsCert(), OnDemand: true, Validity: validity, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, name := range []string{"remote.example", "a.example"} {
		t.Run(name, func(t *testing.T) {
			clk.set(testNow)
			first, err := s.Certificate(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			verifyIssued(t, first, ca, name, testNow)

			// Just before two thirds of the validity (counted from
			// NotBefore, an hour back): the same certificate.
			l := leafOf(t, first)
			renewAt := l.NotAfter.Add(-l.NotAfter.Sub(l.NotBefore) / 3)
			clk.set(renewAt.Add(-time.Minute))
			if c, _ := s.Certificate(ctx, name); c != first {
				t.Errorf("replaced with more than a third of its validity left (at %v, expires %v)", clk.now(), l.NotAfter)
			}
			clk.set(renewAt.Add(time.Minute))
			fresh, err := s.Certificate(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if fresh == first {
				t.Fatalf("not renewed with less than a third of its validity left (at %v, expires %v)", clk.now(), l.NotAfter)
			}
			if !leafOf(t, fresh).NotAfter.After(l.NotAfter) {
				t.Errorf("renewed certificate ends %v, not after the old one's %v", leafOf(t, fresh).NotAfter, l.NotAfter)
			}
			verifyIssued(t, fresh, ca, name, clk.now())
			// What a handshake at that time gets is the renewed one.
			if c, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: name}); err != nil || c != fresh {
				t.Errorf("GetCertificate after renewal: %v (same as renewed: %v)", err, c == fresh)
			}
		})
	}
}

func writeCA(t *testing.T, dir, name string, ca *testCA) (certFile, keyFile string) {
	t.Helper()
	return writePair(t, dir, name, []*x509.Certificate{ca.cert}, ca.key)
}

func TestLoadIssuer(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	goodCert, goodKey := writeCA(t, dir, "good", p.inter)
	soon := newCA(t, "CA expiring soon", p.root, func(c *x509.Certificate) { c.NotAfter = testNow.Add(10 * 24 * time.Hour) })
	soonCert, soonKey := writeCA(t, dir, "soon", soon)
	expired := newCA(t, "expired CA", p.root, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = testNow.Add(-48*time.Hour), testNow.Add(-time.Hour)
	})
	expiredCert, expiredKey := writeCA(t, dir, "expired", expired)
	future := newCA(t, "future CA", p.root, func(c *x509.Certificate) { c.NotBefore = testNow.Add(time.Hour) })
	futureCert, futureKey := writeCA(t, dir, "future", future)
	noSign := newCA(t, "CA without certSign", p.root, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDigitalSignature })
	noSignCert, noSignKey := writeCA(t, dir, "nosign", noSign)
	lc, lk := leaf(t, leafSpec{cn: "leaf.example", dns: []string{"leaf.example"}, issuer: p.root})
	leafCert, leafKey := writePair(t, dir, "leaf", []*x509.Certificate{lc}, lk)
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not PEM\n"), 0o600)

	tests := []struct {
		name       string
		cert, key  string
		want       string // in the error; "" for success
		keyProblem bool   // errors.Is(err, certs.ErrIssuerKey)
		warning    string // in the single warning
	}{
		{name: "good", cert: goodCert, key: goodKey},
		{name: "expires soon", cert: soonCert, key: soonKey, warning: "expires on"},
		{name: "not a CA", cert: leafCert, key: leafKey, want: "CN=leaf.example is not a CA certificate"},
		{name: "expired", cert: expiredCert, key: expiredKey, want: "CN=expired CA expired on"},
		{name: "not yet valid", cert: futureCert, key: futureKey, want: "is not valid before"},
		{name: "may not sign certificates", cert: noSignCert, key: noSignKey, want: "may not sign certificates"},
		{name: "key of another certificate", cert: goodCert, key: soonKey, keyProblem: true,
			want: "the private key is not the key of CN=fedrelay test intermediate"},
		{name: "certificate and key swapped", cert: goodKey, key: goodCert, want: "PEM inputs may have been switched"},
		{name: "certificate file not PEM", cert: garbage, key: goodKey, want: "no PEM CERTIFICATE block"},
		{name: "key file not PEM", cert: goodCert, key: garbage, keyProblem: true, want: "no PEM PRIVATE KEY block"},
		{name: "no key file", cert: goodCert, key: filepath.Join(dir, "none.key"), keyProblem: true, want: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, warns, err := certs.LoadIssuer(tt.cert, tt.key, testNow)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if ca == nil || !ca.Leaf.IsCA {
					t.Fatalf("LoadIssuer returned %v", ca)
				}
				if tt.warning == "" && len(warns) != 0 || tt.warning != "" && (len(warns) != 1 || !strings.Contains(warns[0], tt.warning)) {
					t.Errorf("warnings %q, want %q", warns, tt.warning)
				}
				// What it loaded signs what a store makes.
				s, err := certs.NewStore([]config.Domain{{Name: "a.example"}},
					certs.Options{Issuer: ca, OnDemand: true, Now: func() time.Time { return testNow }})
				if err != nil {
					t.Fatal(err)
				}
				if fmtWarns := strings.Join(s.Warnings(), "\n"); tt.warning != "" && !strings.Contains(fmtWarns, tt.warning) {
					t.Errorf("store warnings %q lack %q", fmtWarns, tt.warning)
				}
				c, err := s.Certificate(context.Background(), "remote.example")
				if err != nil {
					t.Fatal(err)
				}
				caOf := map[string]*testCA{goodCert: p.inter, soonCert: soon}[tt.cert]
				verifyIssued(t, c, caOf, "remote.example", testNow)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
			if errors.Is(err, certs.ErrIssuerKey) != tt.keyProblem {
				t.Errorf("errors.Is(%v, ErrIssuerKey) = %v, want %v", err, !tt.keyProblem, tt.keyProblem)
			}
		})
	}
}
