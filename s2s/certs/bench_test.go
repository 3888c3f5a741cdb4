package certs_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/s2s/certs"
)

// BenchmarkOnDemand measures generating a certificate for a name never seen
// (what a flood of made-up SNIs costs per handshake) and serving a cached one.
func BenchmarkOnDemand(b *testing.B) {
	s, err := certs.NewStore([]config.Domain{{Name: "a.example"}}, certs.Options{OnDemand: true, CacheSize: 128})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Run("generate", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			if _, err := s.Certificate(ctx, fmt.Sprintf("n%d.example", i)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
	})
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "n1.example"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkVerifyPeer measures a full check of an inbound peer: chain
// leaf ← intermediate ← root, then the name.
func BenchmarkVerifyPeer(b *testing.B) {
	p := newPKI(b)
	v := &certs.Verifier{Roots: p.roots, Now: func() time.Time { return testNow }}
	c, _ := leaf(b, leafSpec{dns: []string{"example.org"}, srv: []string{"_xmpp-server.example.org"}, issuer: p.inter})
	state := tls.ConnectionState{PeerCertificates: []*x509.Certificate{c, p.inter.cert}}
	for b.Loop() {
		if err := v.VerifyPeer(state, "example.org"); err != nil {
			b.Fatal(err)
		}
	}
}
