package routing_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"testing"

	"github.com/fedrelay/fedrelay/test/harness"
)

// presented opens a stream from → to on addr, negotiates STARTTLS with a
// client that sends no SNI (as Prosody does on S2S), or sni when set, and
// returns the certificate chain the relay presented.
func presented(t *testing.T, addr, from, to, sni string) []*x509.Certificate {
	t.Helper()
	s := harness.Dial(t, addr)
	if err := s.Open(from, to); err != nil {
		t.Fatalf("%s → %s: %v", from, to, err)
	}
	if err := s.StartTLSConfig(from, to, &tls.Config{ServerName: sni, InsecureSkipVerify: true}); err != nil {
		t.Fatalf("%s → %s: %v", from, to, err)
	}
	return s.ConnectionState().PeerCertificates
}

// names is a certificate's DNS-IDs.
func names(chain []*x509.Certificate) string { return fmt.Sprint(chain[0].DNSNames) }

// TestCertificateByStreamTo: a peer that sends no SNI on STARTTLS gets the
// certificate of the domain its stream header's 'to' names. On the
// federation face that is the internal domain it addresses (each has its
// own); on the internal face it is a certificate for the remote domain the
// internal server thinks it reaches, made on demand and, with an internal
// CA, signed by it. SNI, when sent, still decides.
func TestCertificateByStreamTo(t *testing.T) {
	ca := harness.NewCA(t)
	bCert, bKey := ca.Issue(t, "b.test")
	r := harness.StartRelay(t, fmt.Sprintf(`
domains:
  - {name: a.test, route: "127.0.0.1:9"}
  - {name: b.test, route: "127.0.0.1:9", cert_file: %q, key_file: %q}
internal: {ca_cert_file: %q, ca_key_file: %q}
`, bCert, bKey, ca.File(), ca.KeyFile(t)))

	t.Run("federation face", func(t *testing.T) {
		for _, to := range []string{"b.test", "a.test"} {
			if got := names(presented(t, r.FederationAddr, "remote.test", to, "")); got != "["+to+"]" {
				t.Errorf("stream to %s without SNI: the relay presented a certificate for %s", to, got)
			}
		}
		if got := names(presented(t, r.FederationAddr, "remote.test", "b.test", "a.test")); got != "[a.test]" {
			t.Errorf("SNI a.test, stream to b.test: the relay presented a certificate for %s, want the SNI's", got)
		}
	})

	t.Run("internal face", func(t *testing.T) {
		for _, to := range []string{"remote.test", "other.remote.test"} {
			chain := presented(t, r.InternalAddr, "a.test", to, "")
			if got := names(chain); got != "["+to+"]" {
				t.Errorf("stream to %s without SNI: the relay presented a certificate for %s", to, got)
				continue
			}
			// It is the internal CA's, as an internal server with
			// s2s_secure_auth verifies it.
			inter := x509.NewCertPool()
			for _, c := range chain[1:] {
				inter.AddCert(c)
			}
			if _, err := chain[0].Verify(x509.VerifyOptions{Roots: ca.Pool(), Intermediates: inter, DNSName: to}); err != nil {
				t.Errorf("certificate for %s does not verify with the internal CA: %v", to, err)
			}
		}
	})
}
