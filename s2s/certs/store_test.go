package certs_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/s2s/certs"
)

// leafOf returns the parsed leaf of cert.
func leafOf(t *testing.T, cert *tls.Certificate) *x509.Certificate {
	t.Helper()
	if cert == nil || len(cert.Certificate) == 0 {
		t.Fatal("no certificate")
	}
	if cert.Leaf != nil {
		return cert.Leaf
	}
	l, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// identifies reports whether cert, trusted as is, is valid for domain.
func identifies(t *testing.T, cert *tls.Certificate, domain string) bool {
	t.Helper()
	l := leafOf(t, cert)
	roots := x509.NewCertPool()
	chain := []*x509.Certificate{l}
	for _, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	roots.AddCert(chain[len(chain)-1])
	v := &certs.Verifier{Roots: roots, Now: func() time.Time { return testNow }}
	return v.VerifyPeer(tls.ConnectionState{PeerCertificates: chain}, domain) == nil
}

func TestNewStoreLoadsKeyTypes(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]crypto.Signer{"rsa.example": rsaKey, "ecdsa.example": newKey(t), "ed25519.example": edKey}
	var domains []config.Domain
	for _, name := range []string{"rsa.example", "ecdsa.example", "ed25519.example"} {
		c, _ := leaf(t, leafSpec{dns: []string{name}, issuer: p.inter, key: keys[name],
			eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		cf, kf := writePair(t, dir, name, []*x509.Certificate{c, p.inter.cert}, keys[name])
		domains = append(domains, config.Domain{Name: name, CertFile: cf, KeyFile: kf})
	}
	s, err := certs.NewStore(domains, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if w := s.Warnings(); len(w) != 0 {
		t.Errorf("warnings for good certificates: %q", w)
	}
	for _, d := range domains {
		t.Run(d.Name, func(t *testing.T) {
			cert, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: d.Name})
			if err != nil {
				t.Fatal(err)
			}
			if got := leafOf(t, cert).DNSNames; len(got) != 1 || got[0] != d.Name {
				t.Errorf("SNI %s got the certificate of %q", d.Name, got)
			}
			if len(cert.Certificate) != 2 {
				t.Errorf("chain of %d certificates, want leaf and intermediate", len(cert.Certificate))
			}
			if _, ok := cert.PrivateKey.(crypto.Signer); !ok {
				t.Errorf("key %T is not a signer", cert.PrivateKey)
			}
		})
	}
	if st := s.Stats(); st.Configured != 3 || st.Generated != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestNewStoreWarningsAndErrors(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	pair := func(name string, spec leafSpec) config.Domain {
		spec.issuer = p.root
		c, k := leaf(t, spec)
		cf, kf := writePair(t, dir, name, []*x509.Certificate{c}, k)
		return config.Domain{Name: name, CertFile: cf, KeyFile: kf}
	}
	expired := pair("expired.example", leafSpec{dns: []string{"expired.example"}, notBefore: testNow.Add(-48 * time.Hour), notAfter: testNow.Add(-time.Hour)})
	misnamed := pair("misnamed.example", leafSpec{dns: []string{"other.example"}})
	clientOnly := pair("client.example", leafSpec{dns: []string{"client.example"}, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	good := pair("good.example", leafSpec{dns: []string{"good.example"}})
	mismatchedKey := good
	mismatchedKey.KeyFile = misnamed.KeyFile

	warnTests := []struct {
		name   string
		domain config.Domain
		want   string // in the single warning
	}{
		{"generated", config.Domain{Name: "gen.example"}, "generated a self-signed certificate"},
		{"expired", expired, "expired on"},
		{"misnamed", misnamed, "does not name misnamed.example"},
		{"no serverAuth", clientOnly, "does not include serverAuth"},
	}
	for _, tt := range warnTests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := certs.NewStore([]config.Domain{tt.domain}, certs.Options{})
			if err != nil {
				t.Fatal(err)
			}
			w := s.Warnings()
			if len(w) != 1 || !strings.Contains(w[0], tt.want) || !strings.Contains(w[0], tt.domain.Name) {
				t.Errorf("warnings %q, want one containing %q and the domain", w, tt.want)
			}
		})
	}

	errTests := []struct {
		name    string
		domains []config.Domain
		opts    certs.Options
	}{
		{"no domain", nil, certs.Options{}},
		{"missing file", []config.Domain{{Name: "a.example", CertFile: dir + "/none.crt", KeyFile: dir + "/none.key"}}, certs.Options{}},
		{"key of another certificate", []config.Domain{mismatchedKey}, certs.Options{}},
		{"invalid name", []config.Domain{{Name: "a b.example"}}, certs.Options{}},
		{"listed twice", []config.Domain{{Name: "a.example"}, {Name: "A.example"}}, certs.Options{}},
		{"IP literal without files", []config.Domain{{Name: "192.0.2.1"}}, certs.Options{}},
		{"unknown default", []config.Domain{{Name: "a.example"}}, certs.Options{DefaultDomain: "b.example"}},
		{"issuer is not a CA", []config.Domain{{Name: "a.example"}}, certs.Options{Issuer: leafPair(t, p)}},
		{"issuer with another key", []config.Domain{{Name: "a.example"}},
			certs.Options{Issuer: &tls.Certificate{Certificate: [][]byte{p.inter.cert.Raw}, PrivateKey: p.root.key}}},
		{"issuer expired", []config.Domain{{Name: "a.example"}},
			certs.Options{Issuer: p.inter.tlsCert(), Now: func() time.Time { return p.inter.cert.NotAfter.Add(time.Hour) }}},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := certs.NewStore(tt.domains, tt.opts); err == nil {
				t.Error("NewStore succeeded")
			}
		})
	}
}

func leafPair(t *testing.T, p *testPKI) *tls.Certificate {
	c, k := leaf(t, leafSpec{dns: []string{"leaf.example"}, issuer: p.root})
	return &tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: k, Leaf: c}
}

func TestGeneratedCertificate(t *testing.T) {
	p := newPKI(t)
	for _, issuer := range []*testCA{nil, p.inter} {
		opts := certs.Options{}
		name := "self-signed"
		if issuer != nil {
			opts.Issuer = issuer.tlsCert()
			name = "issued"
		}
		t.Run(name, func(t *testing.T) {
			s, err := certs.NewStore([]config.Domain{{Name: "bücher.example"}}, opts)
			if err != nil {
				t.Fatal(err)
			}
			cert, err := s.Certificate(context.Background(), "xn--bcher-kva.example")
			if err != nil {
				t.Fatal(err)
			}
			l := leafOf(t, cert)
			dns, srv, xmpp := certs.Identities(l)
			if fmt.Sprint(dns, srv, xmpp) != "[xn--bcher-kva.example] [_xmpp-server.xn--bcher-kva.example] [bücher.example]" {
				t.Errorf("identities %q %q %q", dns, srv, xmpp)
			}
			if fmt.Sprint(l.ExtKeyUsage) != fmt.Sprint([]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
				t.Errorf("EKU %v", l.ExtKeyUsage)
			}
			if l.IsCA {
				t.Error("generated certificate is a CA")
			}
			if d := l.NotAfter.Sub(l.NotBefore); d < 360*24*time.Hour || d > 367*24*time.Hour {
				t.Errorf("validity %v, want about a year", d)
			}
			if !identifies(t, cert, "bücher.example") {
				t.Error("generated certificate does not verify for its domain against its own root")
			}
			if issuer != nil && len(cert.Certificate) != 2 {
				t.Errorf("issued chain has %d certificates, want leaf and issuer", len(cert.Certificate))
			}
		})
	}
}

func TestSNIFallback(t *testing.T) {
	s, err := certs.NewStore([]config.Domain{{Name: "a.example"}, {Name: "b.example"}},
		certs.Options{DefaultDomain: "b.example"})
	if err != nil {
		t.Fatal(err)
	}
	onDemand, err := certs.NewStore([]config.Domain{{Name: "a.example"}},
		certs.Options{OnDemand: true, AllowOnDemand: func(d string) bool { return d != "denied.example" }})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		store *certs.Store
		sni   string
		want  string // the domain whose certificate answers
	}{
		{"configured", s, "a.example", "a.example"},
		{"configured, other case, trailing dot", s, "A.Example.", "a.example"},
		{"unknown SNI gets the default", s, "remote.example", "b.example"},
		{"no SNI gets the default", s, "", "b.example"},
		{"on demand", onDemand, "remote.example", "remote.example"},
		{"on demand, Unicode name", onDemand, "bücher.example", "xn--bcher-kva.example"},
		{"on demand refused by AllowOnDemand", onDemand, "denied.example", "a.example"},
		{"on demand refused for a non-host name", onDemand, "under_score.example", "a.example"},
		{"on demand refused for bad punycode", onDemand, "xn--zz.example", "a.example"},
		{"on demand refused for an IP", onDemand, "192.0.2.7", "a.example"},
		{"configured-only view", onDemand.ConfiguredOnly(), "other.example", "a.example"},
		{"configured-only view, configured", onDemand.ConfiguredOnly(), "a.example", "a.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := tt.store.GetCertificate(&tls.ClientHelloInfo{ServerName: tt.sni})
			if err != nil {
				t.Fatal(err)
			}
			if got := leafOf(t, cert).DNSNames; len(got) != 1 || got[0] != tt.want {
				t.Errorf("SNI %q answered with %q, want %s", tt.sni, got, tt.want)
			}
		})
	}
	if st := s.Stats(); st.Fallbacks != 2 {
		t.Errorf("Fallbacks = %d, want 2", st.Fallbacks)
	}
	if _, err := s.Certificate(context.Background(), "remote.example"); !errors.Is(err, certs.ErrUnknownDomain) {
		t.Errorf("Certificate(unknown) err = %v, want ErrUnknownDomain", err)
	}
}

func TestOnDemandCacheBound(t *testing.T) {
	const size = 4
	s, err := certs.NewStore([]config.Domain{{Name: "a.example"}}, certs.Options{OnDemand: true, CacheSize: size})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, err := s.Certificate(ctx, "r0.example")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 * size {
		if _, err := s.Certificate(ctx, fmt.Sprintf("r%d.example", i)); err != nil {
			t.Fatal(err)
		}
		if st := s.Stats(); st.Cached > size {
			t.Fatalf("after %d names the cache holds %d, bound %d", i+1, st.Cached, size)
		}
	}
	st := s.Stats()
	if st.Cached != size || st.Generated != 1+3*size {
		t.Errorf("Stats = %+v, want Cached %d and Generated %d", st, size, 1+3*size)
	}
	// The most recent names are cached: asking again generates nothing.
	last, _ := s.Certificate(ctx, fmt.Sprintf("r%d.example", 3*size-1))
	again, _ := s.Certificate(ctx, fmt.Sprintf("r%d.example", 3*size-1))
	if last != again || s.Stats().Generated != st.Generated {
		t.Error("a cached name was generated again")
	}
	// The first was evicted: a new certificate for the same name.
	if again, _ := s.Certificate(ctx, "r0.example"); again == first {
		t.Error("evicted name still served from the cache")
	}
}

func TestOnDemandSingleFlight(t *testing.T) {
	s, err := certs.NewStore([]config.Domain{{Name: "a.example"}}, certs.Options{OnDemand: true})
	if err != nil {
		t.Fatal(err)
	}
	before := s.Stats().Generated
	const callers = 64
	var wg sync.WaitGroup
	start := make(chan struct{})
	got := make([]*tls.Certificate, callers)
	for i := range callers {
		wg.Go(func() {
			<-start
			c, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "flood.example"})
			if err != nil {
				t.Error(err)
			}
			got[i] = c
		})
	}
	close(start)
	wg.Wait()
	if n := s.Stats().Generated - before; n != 1 {
		t.Errorf("%d concurrent requests generated %d certificates, want 1", callers, n)
	}
	for i, c := range got {
		if c != got[0] {
			t.Fatalf("caller %d got a different certificate", i)
		}
	}
}

func TestCancelledWhileGenerating(t *testing.T) {
	s, err := certs.NewStore([]config.Domain{{Name: "a.example"}}, certs.Options{OnDemand: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// A cancelled caller may or may not get a certificate (generation is
	// quick), but it never gets a nil certificate without an error, and the
	// name stays usable.
	if c, err := s.Certificate(ctx, "c.example"); c == nil && err == nil {
		t.Fatal("nil certificate without an error")
	}
	if _, err := s.Certificate(context.Background(), "c.example"); err != nil {
		t.Fatal(err)
	}
}

func TestRenewal(t *testing.T) {
	clk := newClock(testNow)
	s, err := certs.NewStore([]config.Domain{{Name: "a.example"}},
		certs.Options{OnDemand: true, Validity: 30 * 24 * time.Hour, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, name := range []string{"a.example", "remote.example"} {
		t.Run(name, func(t *testing.T) {
			old, err := s.Certificate(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			clk.set(testNow.Add(10 * 24 * time.Hour))
			if c, _ := s.Certificate(ctx, name); c != old {
				t.Error("renewed with two thirds of the validity left")
			}
			clk.set(testNow.Add(25 * 24 * time.Hour))
			fresh, err := s.Certificate(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if fresh == old || !leafOf(t, fresh).NotAfter.After(leafOf(t, old).NotAfter) {
				t.Error("not renewed five days before expiry")
			}
			clk.set(testNow)
		})
	}
}

func TestIssuerCapsValidity(t *testing.T) {
	p := newPKI(t)
	short := newCA(t, "short-lived CA", p.root, func(c *x509.Certificate) { c.NotAfter = testNow.Add(10 * 24 * time.Hour) })
	s, err := certs.NewStore([]config.Domain{{Name: "a.example"}}, certs.Options{Issuer: short.tlsCert()})
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := s.Certificate(context.Background(), "a.example")
	if got := leafOf(t, cert).NotAfter; got.After(short.cert.NotAfter) {
		t.Errorf("generated certificate outlives its issuer: %v > %v", got, short.cert.NotAfter)
	}
}

func TestIssuerExpiresWhileRunning(t *testing.T) {
	p := newPKI(t)
	ca := newCA(t, "CA expiring soon", p.root, func(c *x509.Certificate) { c.NotAfter = testNow.Add(time.Hour) })
	clk := newClock(testNow)
	s, err := certs.NewStore([]config.Domain{{Name: "a.example"}}, certs.Options{Issuer: ca.tlsCert(), OnDemand: true, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	clk.add(2 * time.Hour)
	before := s.Stats().Generated
	if _, err := s.Certificate(context.Background(), "remote.example"); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("generation with an expired issuer: err = %v", err)
	}
	if s.Stats().Generated != before {
		t.Error("a certificate was generated with an expired issuer")
	}
}

func TestReload(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	c1, k1 := leaf(t, leafSpec{dns: []string{"a.example"}, issuer: p.root})
	cf, kf := writePair(t, dir, "a", []*x509.Certificate{c1}, k1)
	s, err := certs.NewStore([]config.Domain{{Name: "a.example", CertFile: cf, KeyFile: kf}, {Name: "gen.example"}}, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c2, k2 := leaf(t, leafSpec{dns: []string{"a.example"}, issuer: p.root})
	writePair(t, dir, "a", []*x509.Certificate{c2}, k2)
	if w, err := s.Reload(); err != nil || len(w) != 0 {
		t.Fatalf("Reload = %q, %v", w, err)
	}
	got, _ := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "a.example"})
	if !leafOf(t, got).Equal(c2) {
		t.Error("Reload kept the old certificate")
	}
	// A broken file leaves the current certificate in place.
	writePair(t, dir, "a", []*x509.Certificate{c1}, k2)
	if _, err := s.Reload(); err == nil {
		t.Error("Reload of a mismatched pair succeeded")
	}
	got, _ = s.GetCertificate(&tls.ClientHelloInfo{ServerName: "a.example"})
	if !leafOf(t, got).Equal(c2) {
		t.Error("a failed Reload replaced the certificate")
	}
}
