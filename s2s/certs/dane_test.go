package certs_test

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fedrelay/fedrelay/s2s/certs"
)

// tlsa makes a TLSA record designating cert.
func tlsa(usage, selector, mtype uint8, cert *x509.Certificate) *dns.TLSA {
	data := cert.Raw
	if selector == 1 {
		data = cert.RawSubjectPublicKeyInfo
	}
	switch mtype {
	case 1:
		s := sha256.Sum256(data)
		data = s[:]
	case 2:
		s := sha512.Sum512(data)
		data = s[:]
	}
	return &dns.TLSA{
		Hdr:          dns.RR_Header{Name: "_5269._tcp.xmpp.partner.example.", Rrtype: dns.TypeTLSA, Class: dns.ClassINET},
		Usage:        usage,
		Selector:     selector,
		MatchingType: mtype,
		Certificate:  hex.EncodeToString(data),
	}
}

func state(chain ...*x509.Certificate) tls.ConnectionState {
	return tls.ConnectionState{PeerCertificates: chain}
}

func TestVerifyDANE(t *testing.T) {
	pki := newPKI(t)
	// A self-signed certificate for another name, long expired: DANE-EE
	// checks neither.
	selfSigned, _ := leaf(t, leafSpec{dns: []string{"elsewhere.example"},
		notBefore: testNow.Add(-400 * 24 * time.Hour), notAfter: testNow.Add(-300 * 24 * time.Hour)})
	// A private CA's leaf for partner.example.
	good, _ := leaf(t, leafSpec{dns: []string{"partner.example"}, issuer: pki.inter})
	srvOnly, _ := leaf(t, leafSpec{srv: []string{"_xmpp-server.partner.example"}, issuer: pki.inter})
	expired, _ := leaf(t, leafSpec{dns: []string{"partner.example"}, issuer: pki.inter,
		notBefore: testNow.Add(-48 * time.Hour), notAfter: testNow.Add(-time.Hour)})
	codeSigning, _ := leaf(t, leafSpec{dns: []string{"partner.example"}, issuer: pki.inter,
		eku: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}})
	// An SRV-ID for a domain outside the constrained CA's corp.example.
	outside, _ := leaf(t, leafSpec{srv: []string{"_xmpp-server.partner.example"}, issuer: pki.constrained})
	names := []string{"partner.example"}
	other := pki.serverOnly.cert // a CA not in the chains below

	tests := []struct {
		name    string
		st      tls.ConnectionState
		records []*dns.TLSA
		names   []string
		want    error
	}{
		{"EE SPKI SHA-256", state(selfSigned), []*dns.TLSA{tlsa(3, 1, 1, selfSigned)}, names, nil},
		{"EE cert exact", state(selfSigned), []*dns.TLSA{tlsa(3, 0, 0, selfSigned)}, names, nil},
		{"EE cert SHA-512", state(selfSigned), []*dns.TLSA{tlsa(3, 0, 2, selfSigned)}, names, nil},
		{"EE after an unusable record", state(selfSigned),
			[]*dns.TLSA{tlsa(1, 1, 1, selfSigned), tlsa(3, 1, 1, selfSigned)}, nil, nil},
		{"EE of another certificate", state(selfSigned), []*dns.TLSA{tlsa(3, 1, 1, good)}, names, certs.ErrDANEMismatch},
		{"EE does not match the chain", state(good, pki.inter.cert), []*dns.TLSA{tlsa(3, 1, 1, pki.inter.cert)},
			names, certs.ErrDANEMismatch},
		{"TA cert SHA-256", state(good, pki.inter.cert), []*dns.TLSA{tlsa(2, 0, 1, pki.inter.cert)}, names, nil},
		{"TA SPKI SHA-512", state(good, pki.inter.cert), []*dns.TLSA{tlsa(2, 1, 2, pki.inter.cert)}, names, nil},
		{"TA root sent", state(good, pki.inter.cert, pki.root.cert), []*dns.TLSA{tlsa(2, 0, 1, pki.root.cert)}, names, nil},
		{"TA SRV-ID", state(srvOnly, pki.inter.cert), []*dns.TLSA{tlsa(2, 0, 1, pki.inter.cert)}, names, nil},
		{"TA second name", state(good, pki.inter.cert), []*dns.TLSA{tlsa(2, 0, 1, pki.inter.cert)},
			[]string{"xmpp.partner.example", "partner.example"}, nil},
		{"TA wrong name", state(good, pki.inter.cert), []*dns.TLSA{tlsa(2, 0, 1, pki.inter.cert)},
			[]string{"other.example"}, certs.ErrNameMismatch},
		{"TA no names", state(good, pki.inter.cert), []*dns.TLSA{tlsa(2, 0, 1, pki.inter.cert)}, nil, certs.ErrNameMismatch},
		{"TA expired leaf", state(expired, pki.inter.cert), []*dns.TLSA{tlsa(2, 0, 1, pki.inter.cert)}, names, certs.ErrExpired},
		{"TA code signing leaf", state(codeSigning, pki.inter.cert), []*dns.TLSA{tlsa(2, 0, 1, pki.inter.cert)},
			names, certs.ErrUsage},
		{"TA name constraints", state(outside, pki.constrained.cert), []*dns.TLSA{tlsa(2, 0, 1, pki.constrained.cert)},
			names, certs.ErrNameMismatch},
		{"TA not sent", state(good), []*dns.TLSA{tlsa(2, 0, 1, pki.inter.cert)}, names, certs.ErrDANEMismatch},
		{"TA not the issuer", state(good, other), []*dns.TLSA{tlsa(2, 0, 1, other)}, names, certs.ErrUntrusted},
		{"TA is the leaf", state(selfSigned), []*dns.TLSA{tlsa(2, 0, 1, selfSigned)},
			[]string{"elsewhere.example"}, certs.ErrDANEMismatch},
		{"PKIX usages", state(good, pki.inter.cert),
			[]*dns.TLSA{tlsa(0, 0, 1, pki.inter.cert), tlsa(1, 1, 1, good)}, names, certs.ErrDANEUnusable},
		{"unknown selector", state(selfSigned), []*dns.TLSA{func() *dns.TLSA {
			r := tlsa(3, 1, 1, selfSigned)
			r.Selector = 2
			return r
		}()}, names, certs.ErrDANEUnusable},
		{"unknown matching type", state(selfSigned), []*dns.TLSA{func() *dns.TLSA {
			r := tlsa(3, 1, 1, selfSigned)
			r.MatchingType = 3
			return r
		}()}, names, certs.ErrDANEUnusable},
		{"digest of the wrong length", state(selfSigned), []*dns.TLSA{func() *dns.TLSA {
			r := tlsa(3, 1, 1, selfSigned)
			r.Certificate = r.Certificate[:40]
			return r
		}()}, names, certs.ErrDANEUnusable},
		{"not hex", state(selfSigned), []*dns.TLSA{func() *dns.TLSA {
			r := tlsa(3, 1, 1, selfSigned)
			r.Certificate = strings.Repeat("zz", 32)
			return r
		}()}, names, certs.ErrDANEUnusable},
		{"no records", state(selfSigned), nil, names, certs.ErrDANEUnusable},
		{"no certificate", state(), []*dns.TLSA{tlsa(3, 1, 1, selfSigned)}, names, certs.ErrNoCertificate},
	}
	v := &certs.Verifier{Roots: x509.NewCertPool(), Now: func() time.Time { return testNow }}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := v.VerifyDANE(tt.st, tt.records, tt.names)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("VerifyDANE = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("VerifyDANE = %v, want %v", err, tt.want)
			}
			if _, ok := errors.AsType[*certs.PeerError](err); !ok {
				t.Errorf("error %T is no *PeerError", err)
			}
		})
	}

	disabled := &certs.Verifier{Disabled: true}
	if err := disabled.VerifyDANE(state(selfSigned), []*dns.TLSA{tlsa(3, 1, 1, selfSigned)}, names); !errors.Is(err, certs.ErrDisabled) {
		t.Errorf("disabled Verifier: %v, want %v", err, certs.ErrDisabled)
	}
}

// TestVerifyDANETime: a DANE-TA chain is judged at the Verifier's time.
func TestVerifyDANETime(t *testing.T) {
	pki := newPKI(t)
	good, _ := leaf(t, leafSpec{dns: []string{"partner.example"}, issuer: pki.inter})
	clk := newClock(testNow)
	v := &certs.Verifier{Now: clk.now}
	recs := []*dns.TLSA{tlsa(2, 0, 1, pki.inter.cert)}
	if err := v.VerifyDANE(state(good, pki.inter.cert), recs, []string{"partner.example"}); err != nil {
		t.Fatal(err)
	}
	clk.add(60 * 24 * time.Hour) // past the leaf's month
	if err := v.VerifyDANE(state(good, pki.inter.cert), recs, []string{"partner.example"}); !errors.Is(err, certs.ErrExpired) {
		t.Fatalf("VerifyDANE after expiry = %v, want %v", err, certs.ErrExpired)
	}
}
