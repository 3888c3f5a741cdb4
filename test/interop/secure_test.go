//go:build interop

package interop_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// newCA makes a CA certificate (PEM) named cn and its key.
func newCA(cn string) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	return ca, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// newInternalCA makes the relay's internal CA in dir: its certificate (PEM,
// also returned for the servers that trust it) and key files.
func newInternalCA(dir string) (certPEM []byte, certFile, keyFile string, err error) {
	_, key, certPEM, err := newCA("fedrelay interop internal CA")
	if err != nil {
		return nil, "", "", err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "internal-ca.crt"), filepath.Join(dir, "internal-ca.key")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return nil, "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, "", "", err
	}
	return certPEM, certFile, keyFile, nil
}

// testPKI is the "public" CA of the test: the certificates of b.test,
// c.test and of the relay's internal domains in 8-secure-federation, which
// the servers and the relay (tls.ca_file) trust.
type testPKI struct {
	caPEM  []byte
	caFile string
	ca     *x509.Certificate
	key    *ecdsa.PrivateKey
}

func newTestPKI(dir string) (*testPKI, error) {
	ca, key, caPEM, err := newCA("fedrelay interop public test CA")
	if err != nil {
		return nil, err
	}
	p := &testPKI{ca: ca, key: key, caPEM: caPEM, caFile: filepath.Join(dir, "public-ca.crt")}
	return p, os.WriteFile(p.caFile, p.caPEM, 0o644)
}

// issue returns a certificate (PEM) for name, a DNS name such as b.test or
// *.corp.test, usable as TLS server and client (S2S streams go both ways),
// and its key. XEP-0178 also wants the XmppAddr otherName; Prosody,
// ejabberd and the relay accept the dNSName alone.
func (p *testPKI) issue(name string) (certPEM, keyPEM []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, key.Public(), p.key)
	if err != nil {
		panic(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// issueFiles writes issue's certificate and key to files in dir.
func (p *testPKI) issueFiles(dir, name string) (certFile, keyFile string, err error) {
	crt, key := p.issue(name)
	base := strings.ReplaceAll(name, "*", "wildcard")
	certFile, keyFile = filepath.Join(dir, base+".crt"), filepath.Join(dir, base+".key")
	if err := os.WriteFile(certFile, crt, 0o644); err != nil {
		return "", "", err
	}
	return certFile, keyFile, os.WriteFile(keyFile, key, 0o600)
}

// 7. Secure authentication on the internal side, two internal domains
// behind the relay with their servers' shipped secure setting: d.test is a
// Prosody with s2s_secure_auth = true that trusts the relay's internal CA
// (s2s_ssl.cafile), e.corp.test an ejabberd with s2s_use_starttls:
// required and ca_file that CA (TLS on every stream, then dialback: ejabberd
// has no certificate-only mode). Every stream between d.test and the relay
// must then carry a certificate that chains to that CA and names the
// remote domain: the one the relay presents as TLS server when d.test,
// which sends no SNI, opens a stream to b.test or c.test (chosen by the
// stream's 'to'), and the one it presents as TLS client on its own links to
// d.test. Messages, subscriptions, pings and disco#info flow both ways
// between each internal domain and b.test (Prosody) and c.test (ejabberd),
// and d.test's log shows the relay's certificates checked and found valid.
//
// Sub-test without-ca: the relay restarted without internal.ca_cert_file
// presents self-signed certificates, and d.test refuses them both ways
// (the messages come back as errors and are not delivered); with the CA
// again, messages flow again.
func (l *lab) secureAuth(t *testing.T) {
	l.watchLogs(t)
	erin := l.login(t, l.erin, "s7")
	frank := l.login(t, l.frank, "s7")
	bob := l.login(t, l.bob, "s7")
	carol := l.login(t, l.carol, "s7")
	dlog := filepath.Join(l.d.dir, "prosody.log")
	from := fileSize(dlog)
	pairs := []struct{ from, to *Client }{{erin, bob}, {bob, erin}, {erin, carol}, {carol, erin},
		{frank, bob}, {bob, frank}, {frank, carol}, {carol, frank}}
	for _, p := range pairs {
		body := l.token("secure hello from " + p.from.Name)
		took := l.deliver(t, p.from, p.to, body)
		t.Logf("%s → %s delivered in %v", bare(p.from.JID), bare(p.to.JID), took.Round(time.Millisecond))
	}
	for _, p := range [][2]*Client{{erin, bob}, {frank, carol}, {carol, erin}, {bob, frank}} {
		subscribe(t, p[0], p[1])
		t.Logf("%s and %s subscribed to each other and see each other online", bare(p[0].JID), bare(p[1].JID))
	}
	for _, p := range pairs {
		ping(t, p.from, p.to.JID)
	}
	for _, p := range pairs {
		disco(t, p.from, p.to.JID[strings.IndexByte(p.to.JID, '@')+1:strings.IndexByte(p.to.JID, '/')])
	}
	t.Log("pings between the users and disco#info of the servers answered both ways")
	noErrors(t, erin, frank, bob, carol)
	if bad := grepFrom(dlog, from, "Forbidding insecure connection"); len(bad) > 0 {
		t.Errorf("d.test refused a connection with the relay's internal CA in place:\n\t%s", strings.Join(bad, "\n\t"))
	}
	for _, what := range []string{"certificate chain validation result: valid", "certificate identity validation result: valid"} {
		if n := len(grepFrom(dlog, from, what)); n < 2 {
			t.Errorf("d.test's log has %d lines %q, want one for each direction at least", n, what)
		}
	}
	// ejabberd's s2s_use_starttls: required makes TLS mandatory on every
	// stream; it has no certificate-only mode, and the relay's minted
	// certificates are for TLS, not SASL EXTERNAL: dialback over TLS.
	elog := filepath.Join(l.e.dir, "logs", "ejabberd.log")
	for _, d := range []string{"b.test", "c.test"} {
		for _, what := range []string{"Accepted inbound s2s dialback authentication " + d + " -> e.corp.test",
			"Accepted outbound s2s dialback authentication e.corp.test -> " + d} {
			if len(grepAll(elog, 0, "(tls|", what)) == 0 {
				t.Errorf("e.corp.test's log: no %q on a TLS stream", what)
			}
		}
	}

	t.Run("without-ca", func(t *testing.T) {
		restart := func(noCA bool) {
			t.Helper()
			if err := l.relay.shutdown(); err != nil {
				t.Errorf("shutdown: %v", err)
			}
			l.relay.noCA = noCA
			if err := l.relay.start(nil); err != nil {
				t.Fatal(err)
			}
		}
		restart(true)
		// Whatever happens, later scenarios get the relay with its CA.
		t.Cleanup(func() {
			if l.relay.noCA {
				restart(false)
			}
		})
		from := fileSize(dlog)
		for _, p := range []struct{ from, to *Client }{{erin, bob}, {bob, erin}} {
			body := l.token("insecure, from " + p.from.Name)
			id, err := p.from.Message(bare(p.to.JID), body)
			if err != nil {
				t.Fatal(err)
			}
			i, el := await(t, wait, want{p.from, "error for " + id, isErrorFor(id)},
				want{p.to, "message " + body, isMessage(bare(p.from.JID), body)})
			if i == 1 {
				t.Errorf("%s → %s delivered although the relay has no internal CA: %s", p.from.Name, p.to.Name, el)
				continue
			}
			t.Logf("%s → %s came back: %s", p.from.Name, p.to.Name, el)
		}
		refused := grepFrom(dlog, from, "Forbidding insecure connection")
		if len(refused) == 0 {
			t.Errorf("d.test's log has no \"Forbidding insecure connection\" after the relay lost its CA")
		} else {
			t.Logf("d.test: %s", strings.TrimSpace(refused[0]))
		}

		restart(false)
		t.Log("relay restarted with its internal CA")
		for _, p := range []struct{ from, to *Client }{{erin, bob}, {bob, erin}} {
			l.deliver(t, p.from, p.to, l.token("secure again, from "+p.from.Name))
		}
	})
}
