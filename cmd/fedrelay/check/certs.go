package check

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/s2s/certs"
)

// expirySoon is how close to its expiry a certificate gets a warning.
const expirySoon = 14 * 24 * time.Hour

// certs checks the fronted domains' certificates and the internal CA.
func (c *checker) certs() {
	trust := c.verifier(Certs)
	for _, d := range c.cfg.Domains {
		if d.CertFile == "" {
			c.add(Warn, Certs, d.Name, "no cert_file/key_file: the relay generates a self-signed certificate at start, "+
				"so peers will authenticate %s by dialback%s", d.Name, secureAuthNote)
			continue
		}
		c.domainCert(d, trust)
	}
	if c.cfg.Internal.CACertFile != "" {
		c.internalCA()
	}
}

// secureAuthNote reminds that peers which insist on certificates refuse
// dialback.
const secureAuthNote = ", and peers that require certificates (secure auth) will refuse it"

// verifier returns the relay's peer verifier (system roots and tls.ca_file)
// switched on whatever tls.verify_peers says: the question is what peers
// that do verify will make of the certificates. A broken tls.ca_file is a
// finding (once); the system roots alone are used then.
func (c *checker) verifier(check string) *certs.Verifier {
	if c.trust != nil {
		return c.trust
	}
	tc := c.cfg.TLS
	tc.VerifyPeers = true
	v, err := certs.NewVerifier(tc)
	if err != nil {
		c.add(Fail, check, "tls.ca_file", "%v", err)
		v = &certs.Verifier{}
	}
	c.trust = v
	return v
}

// domainCert checks one domain's cert_file and key_file.
func (c *checker) domainCert(d config.Domain, trust *certs.Verifier) {
	chain, err := readChain(d.CertFile)
	if err != nil {
		c.add(Fail, Certs, d.Name, "cert_file %s: %v", d.CertFile, err)
		return
	}
	leaf := chain[0]
	now := c.opts.Now()
	var fails, warns []string

	key, err := readKey(d.KeyFile)
	switch {
	case err != nil:
		fails = append(fails, fmt.Sprintf("key_file %s: %v", d.KeyFile, err))
	case !keyMatches(key, leaf):
		fails = append(fails, fmt.Sprintf("key does not match the certificate (key_file %s is not the key of cert_file %s)", d.KeyFile, d.CertFile))
	default:
		if _, err := tls.LoadX509KeyPair(d.CertFile, d.KeyFile); err != nil {
			fails = append(fails, fmt.Sprintf("the relay cannot load cert_file and key_file: %v", err))
		}
	}

	expires := fmt.Sprintf("expires in %s (%s)", days(leaf.NotAfter.Sub(now)), leaf.NotAfter.UTC().Format(time.DateOnly))
	dated := true
	switch {
	case now.After(leaf.NotAfter):
		dated = false
		fails = append(fails, fmt.Sprintf("certificate expired on %s, %s ago: peers refuse it",
			leaf.NotAfter.UTC().Format(time.DateOnly), days(now.Sub(leaf.NotAfter))))
	case now.Before(leaf.NotBefore):
		dated = false
		fails = append(fails, fmt.Sprintf("certificate is not valid before %s: peers refuse it until then",
			leaf.NotBefore.UTC().Format(time.RFC3339)))
	case leaf.NotAfter.Sub(now) < expirySoon:
		warns = append(warns, expires+": renew it")
	}
	if !serverAuth(leaf) {
		fails = append(fails, "its extended key usage does not allow serverAuth (TLS server): peers refuse it")
	}
	for i := 0; i+1 < len(chain); i++ {
		if chain[i].CheckSignatureFrom(chain[i+1]) != nil {
			warns = append(warns, fmt.Sprintf("cert_file %s is not in order: certificate %d is not signed by the one after it "+
				"(put the domain's certificate first, then each issuer)", d.CertFile, i+1))
			break
		}
	}

	// Trust and names are judged at a moment the leaf is valid, so that an
	// expired certificate is not also reported as untrusted and misnamed.
	at := now
	if !dated {
		at = leaf.NotAfter.Add(-time.Second)
		if now.Before(leaf.NotBefore) {
			at = leaf.NotBefore.Add(time.Second)
		}
	}
	tv := *trust
	tv.Now = func() time.Time { return at }
	var trustNote string
	peer, err := tv.VerifyChain(tls.ConnectionState{PeerCertificates: chain})
	switch {
	case err == nil:
		trustNote = "chain to a trusted root"
	case selfSigned(leaf):
		trustNote = "self-signed"
		warns = append(warns, "self-signed: peers will not trust it and will authenticate "+d.Name+" by dialback"+secureAuthNote)
	case errors.Is(err, certs.ErrExpired):
		// A date problem of the leaf is reported above; one of the chain
		// is reported here.
		if dated {
			fails = append(fails, fmt.Sprintf("a certificate of the chain is expired or not yet valid: %s", reason(err)))
		}
	case errors.Is(err, certs.ErrUsage):
		// Reported above as a missing serverAuth, or the chain's CAs
		// restrict it.
		if serverAuth(leaf) {
			fails = append(fails, fmt.Sprintf("the chain's extended key usages do not allow serverAuth: %s", reason(err)))
		}
	default:
		fails = append(fails, fmt.Sprintf("no chain to a trusted root (system roots, tls.ca_file): %s; "+
			"is an intermediate certificate missing from cert_file?", reason(err)))
	}
	if peer == nil {
		// Check the names on the leaf alone, anchored on itself.
		self := &certs.Verifier{Roots: x509.NewCertPool(), Now: tv.Now}
		self.Roots.AddCert(leaf)
		peer, _ = self.VerifyChain(tls.ConnectionState{PeerCertificates: chain[:1]})
	}
	nameNote := ""
	if peer != nil {
		if err := peer.VerifyDomain(d.Name); err != nil {
			fails = append(fails, fmt.Sprintf("certificate is not valid for %s: %s", d.Name, reason(err)))
		} else {
			nameNote = "certificate valid for " + d.Name
		}
	}

	if len(fails) > 0 {
		for _, f := range fails {
			c.add(Fail, Certs, d.Name, "%s", f)
		}
		for _, w := range warns {
			c.add(Warn, Certs, d.Name, "%s", w)
		}
		return
	}
	summary := strings.Join(nonEmpty(nameNote, trustNote, expires), ", ")
	if len(warns) == 0 {
		c.add(OK, Certs, d.Name, "%s", summary)
		return
	}
	// The summary says already when it expires and that it is self-signed.
	for i, w := range warns {
		w = strings.TrimPrefix(w, expires+": ")
		warns[i] = strings.TrimPrefix(w, trustNote+": ")
	}
	c.add(Warn, Certs, d.Name, "%s: %s", summary, strings.Join(warns, "; "))
}

// internalCA checks internal.ca_cert_file and ca_key_file: a CA that may
// sign certificates, with its key, valid now.
func (c *checker) internalCA() {
	const subject = "internal CA"
	in := c.cfg.Internal
	chain, err := readChain(in.CACertFile)
	if err != nil {
		c.add(Fail, Certs, subject, "internal.ca_cert_file %s: %v", in.CACertFile, err)
		return
	}
	ca := chain[0]
	name := ca.Subject.String()
	if name == "" {
		name = "(empty subject)"
	}
	now := c.opts.Now()
	failed := false
	fail := func(format string, args ...any) {
		failed = true
		c.add(Fail, Certs, subject, "%s: "+format, append([]any{name}, args...)...)
	}
	key, err := readKey(in.CAKeyFile)
	switch {
	case err != nil:
		fail("internal.ca_key_file %s: %v", in.CAKeyFile, err)
	case !keyMatches(key, ca):
		fail("key does not match the certificate (internal.ca_key_file %s is not the key of %s)", in.CAKeyFile, in.CACertFile)
	}
	if !ca.BasicConstraintsValid || !ca.IsCA {
		fail("not a CA certificate (basic constraints): it cannot sign the internal face's certificates")
	} else if ca.KeyUsage != 0 && ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		fail("its key usage does not allow signing certificates (keyCertSign)")
	}
	expires := fmt.Sprintf("expires in %s (%s)", days(ca.NotAfter.Sub(now)), ca.NotAfter.UTC().Format(time.DateOnly))
	switch {
	case now.After(ca.NotAfter):
		fail("expired on %s: the relay cannot sign certificates with it", ca.NotAfter.UTC().Format(time.DateOnly))
	case now.Before(ca.NotBefore):
		fail("not valid before %s", ca.NotBefore.UTC().Format(time.RFC3339))
	case failed:
	case ca.NotAfter.Sub(now) < expirySoon:
		c.add(Warn, Certs, subject, "%s: %s: renew it (the certificates it signs end with it)", name, expires)
		return
	}
	if !failed {
		c.add(OK, Certs, subject, "%s: a CA with its key, may sign certificates, %s", name, expires)
	}
}

// readChain reads the PEM certificates of a file, leaf first.
func readChain(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var chain []*x509.Certificate
	for n := 1; ; n++ {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %v", n, err)
		}
		chain = append(chain, cert)
	}
	if len(chain) == 0 {
		return nil, errors.New("no PEM certificate in it")
	}
	return chain, nil
}

// readKey reads the first private key of a PEM file: PKCS #8, PKCS #1 (RSA)
// or SEC 1 (EC).
func readKey(path string) (crypto.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM private key in it")
		}
		if !strings.HasSuffix(b.Type, "PRIVATE KEY") {
			continue
		}
		if b.Type == "ENCRYPTED PRIVATE KEY" || b.Headers["Proc-Type"] != "" {
			return nil, errors.New("the private key is encrypted; the relay needs it unencrypted")
		}
		if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
			return k, nil
		}
		if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
			return k, nil
		}
		if k, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
			return k, nil
		}
		return nil, fmt.Errorf("the %s block is not a PKCS #8, PKCS #1 or SEC 1 key", b.Type)
	}
}

// keyMatches reports whether key is the private half of cert's public key.
func keyMatches(key crypto.PrivateKey, cert *x509.Certificate) bool {
	s, ok := key.(crypto.Signer)
	if !ok {
		return false
	}
	pub, ok := s.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}

// serverAuth reports whether the certificate may serve as a TLS server's:
// EKU serverAuth or anyExtendedKeyUsage, or no EKU at all.
func serverAuth(c *x509.Certificate) bool {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return true
	}
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageServerAuth || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

// selfSigned reports whether the certificate is its own issuer and signed
// by its own key. (CheckSignatureFrom would refuse a leaf that is not a CA,
// as generated self-signed certificates are not.)
func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// reason is a certs.PeerError without its "certs: peer certificate for x:"
// preamble, which the finding's subject already says.
func reason(err error) string {
	var pe *certs.PeerError
	if !errors.As(err, &pe) {
		return err.Error()
	}
	if pe.Err == nil {
		return pe.Reason.Error()
	}
	return pe.Reason.Error() + " (" + pe.Err.Error() + ")"
}

func nonEmpty(ss ...string) []string {
	out := ss[:0]
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
