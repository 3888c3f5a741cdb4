package certs_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// testNow is the time every test certificate is built around; verifiers in
// the tests run at testNow unless a test moves their clock.
var testNow = time.Now().Truncate(time.Second)

var (
	oidSAN      = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidSRVName  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 7}
	oidXmppAddr = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 5}
)

// testCA is a CA made in the test: a certificate and its key.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// testPKI is a root, an ordinary intermediate, an intermediate constrained
// to corp.example, and one restricted to serverAuth.
type testPKI struct {
	root, inter, constrained, serverOnly *testCA
	roots                                *x509.CertPool
}

var serial atomic.Int64

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func createCert(t testing.TB, tmpl *x509.Certificate, parent *testCA, pub crypto.PublicKey, self crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl.SerialNumber = big.NewInt(serial.Add(1))
	p, signer := tmpl, self
	if parent != nil {
		p, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newCA(t testing.TB, name string, parent *testCA, edit func(*x509.Certificate)) *testCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             testNow.Add(-24 * time.Hour),
		NotAfter:              testNow.Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	if edit != nil {
		edit(tmpl)
	}
	return &testCA{cert: createCert(t, tmpl, parent, key.Public(), key), key: key}
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	root := newCA(t, "fedrelay test root", nil, nil)
	p := &testPKI{
		root:  root,
		inter: newCA(t, "fedrelay test intermediate", root, nil),
		constrained: newCA(t, "corp.example intermediate", root, func(c *x509.Certificate) {
			c.PermittedDNSDomains = []string{"corp.example"}
		}),
		serverOnly: newCA(t, "serverAuth intermediate", root, func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}),
		roots: x509.NewCertPool(),
	}
	p.roots.AddCert(root.cert)
	return p
}

// tlsCert is the CA as a tls.Certificate, to be a Store's issuer.
func (ca *testCA) tlsCert() *tls.Certificate {
	return &tls.Certificate{Certificate: [][]byte{ca.cert.Raw}, PrivateKey: ca.key, Leaf: ca.cert}
}

// leafSpec describes a test leaf certificate.
type leafSpec struct {
	cn                  string
	dns, srv, xmpp      []string
	eku                 []x509.ExtKeyUsage
	unknownEKU          []asn1.ObjectIdentifier
	notBefore, notAfter time.Time // zero: a day before and a month after testNow
	issuer              *testCA   // nil: self-signed
	key                 crypto.Signer
}

// sanExtension encodes a subjectAltName with encoding/asn1, independently of
// the package's own encoder, so the tests cross-check its parser.
func sanExtension(t testing.TB, dns, srv, xmpp []string) pkix.Extension {
	t.Helper()
	var names []asn1.RawValue
	for _, d := range dns {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(d)})
	}
	otherName := func(oid asn1.ObjectIdentifier, tag int, v string) asn1.RawValue {
		inner, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: tag, Bytes: []byte(v)})
		if err != nil {
			t.Fatal(err)
		}
		explicit, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: inner})
		if err != nil {
			t.Fatal(err)
		}
		o, err := asn1.Marshal(oid)
		if err != nil {
			t.Fatal(err)
		}
		return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(o, explicit...)}
	}
	for _, s := range srv {
		names = append(names, otherName(oidSRVName, asn1.TagIA5String, s))
	}
	for _, x := range xmpp {
		names = append(names, otherName(oidXmppAddr, asn1.TagUTF8String, x))
	}
	der, err := asn1.Marshal(names)
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidSAN, Value: der}
}

// leaf makes a certificate per spec and returns it with its key.
func leaf(t testing.TB, spec leafSpec) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key := spec.key
	if key == nil {
		key = newKey(t)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: spec.cn},
		NotBefore:             spec.notBefore,
		NotAfter:              spec.notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           spec.eku,
		UnknownExtKeyUsage:    spec.unknownEKU,
		BasicConstraintsValid: true,
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = testNow.Add(-24 * time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = testNow.Add(30 * 24 * time.Hour)
	}
	if len(spec.dns)+len(spec.srv)+len(spec.xmpp) > 0 {
		tmpl.ExtraExtensions = []pkix.Extension{sanExtension(t, spec.dns, spec.srv, spec.xmpp)}
	}
	return createCert(t, tmpl, spec.issuer, key.Public(), key), key
}

// writePair writes a PEM chain and a PKCS#8 key to dir and returns their
// paths.
func writePair(t testing.TB, dir, name string, chain []*x509.Certificate, key crypto.Signer) (certFile, keyFile string) {
	t.Helper()
	var certPEM []byte
	for _, c := range chain {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// clock is a settable time source for Verifier.Now and Options.Now.
type clock struct{ t atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}

func (c *clock) now() time.Time      { return time.Unix(0, c.t.Load()) }
func (c *clock) set(t time.Time)     { c.t.Store(t.UnixNano()) }
func (c *clock) add(d time.Duration) { c.t.Add(int64(d)) }
