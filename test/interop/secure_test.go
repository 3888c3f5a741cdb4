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

// newInternalCA makes the relay's internal CA in dir: its certificate (PEM,
// also returned for the servers that trust it) and key files.
func newInternalCA(dir string) (certPEM []byte, certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "fedrelay interop internal CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, "", "", err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, "", "", err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	certFile, keyFile = filepath.Join(dir, "internal-ca.crt"), filepath.Join(dir, "internal-ca.key")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return nil, "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, "", "", err
	}
	return certPEM, certFile, keyFile, nil
}

// 7. Secure authentication on the internal side: d.test is a Prosody with
// s2s_secure_auth = true that trusts the relay's internal CA
// (s2s_ssl.cafile). Every stream between d.test and the relay must then
// carry a certificate that chains to that CA and names the remote domain:
// the one the relay presents as TLS server when d.test, which sends no SNI,
// opens a stream to b.test or c.test (chosen by the stream's 'to'), and the
// one it presents as TLS client on its own links to d.test. Messages flow
// both ways with Prosody and ejabberd users, and d.test's log shows the
// relay's certificates checked and found valid.
//
// Sub-test without-ca: the relay restarted without internal.ca_cert_file
// presents self-signed certificates, and d.test refuses them both ways
// (the messages come back as errors and are not delivered); with the CA
// again, messages flow again.
func (l *lab) secureAuth(t *testing.T) {
	l.watchLogs(t)
	erin := l.login(t, l.erin, "s7")
	bob := l.login(t, l.bob, "s7")
	carol := l.login(t, l.carol, "s7")
	dlog := filepath.Join(l.d.dir, "prosody.log")
	from := fileSize(dlog)
	for _, p := range []struct{ from, to *Client }{{erin, bob}, {bob, erin}, {erin, carol}, {carol, erin}} {
		body := l.token("secure hello from " + p.from.Name)
		took := l.deliver(t, p.from, p.to, body)
		t.Logf("%s → %s delivered in %v", bare(p.from.JID), bare(p.to.JID), took.Round(time.Millisecond))
	}
	noErrors(t, erin, bob, carol)
	if bad := grepFrom(dlog, from, "Forbidding insecure connection"); len(bad) > 0 {
		t.Errorf("d.test refused a connection with the relay's internal CA in place:\n\t%s", strings.Join(bad, "\n\t"))
	}
	for _, what := range []string{"certificate chain validation result: valid", "certificate identity validation result: valid"} {
		if n := len(grepFrom(dlog, from, what)); n < 2 {
			t.Errorf("d.test's log has %d lines %q, want one for each direction at least", n, what)
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
