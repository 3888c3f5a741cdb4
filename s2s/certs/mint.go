package certs

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"golang.org/x/net/idna"
)

// minted is a certificate the store generated, with the time after which it
// is replaced by a fresh one.
type minted struct {
	cert    *tls.Certificate
	renewAt time.Time
}

// clockSkew backdates generated certificates so that a peer whose clock is a
// little behind does not see them as not yet valid.
const clockSkew = time.Hour

// mint generates a certificate for the XMPP domain name (lower-case ASCII):
// an ECDSA P-256 key; SANs DNS-ID name, SRV-ID _xmpp-server.name and
// XmppAddr name (Unicode form, as in a JID); EKU serverAuth and clientAuth so
// it serves both as server and as client certificate; signed by issuer, or
// self-signed when issuer is nil. No wildcard: every name gets its own
// certificate, so none claims more than the name it was asked for.
func mint(name string, issuer *tls.Certificate, now time.Time, validity time.Duration) (*minted, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	xmppName := name
	if u, err := idna.Lookup.ToUnicode(name); err == nil {
		xmppName = u
	}
	san, err := marshalSAN(sanNames{
		DNS:  []string{name},
		SRV:  []string{srvPrefix + name},
		XMPP: []string{xmppName},
	})
	if err != nil {
		return nil, err
	}
	notBefore, notAfter := now.Add(-clockSkew), now.Add(validity)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	// The common name is for humans reading the certificate (nobody matches
	// on it); it is limited to 64 characters, and with an empty subject the
	// SAN extension must be critical (RFC 5280 §4.2.1.6).
	emptySubject := len(name) > 64
	if !emptySubject {
		tmpl.Subject = pkix.Name{CommonName: name}
	}
	// Our own SAN extension replaces the one crypto/x509 would build from
	// DNSNames, which cannot express otherName.
	tmpl.ExtraExtensions = []pkix.Extension{{Id: oidSubjectAltName, Critical: emptySubject, Value: san}}

	parent, signer := tmpl, crypto.Signer(key)
	if issuer != nil {
		if !now.Before(issuer.Leaf.NotAfter) {
			// Every certificate it signed would be born expired, and
			// replaced at every handshake.
			return nil, fmt.Errorf("the issuer %s expired on %s", issuer.Leaf.Subject,
				issuer.Leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		parent, signer = issuer.Leaf, issuer.PrivateKey.(crypto.Signer)
		if issuer.Leaf.NotAfter.Before(notAfter) {
			notAfter = issuer.Leaf.NotAfter
			tmpl.NotAfter = notAfter
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	chain := [][]byte{der}
	if issuer != nil {
		chain = append(chain, issuer.Certificate...)
	}
	return &minted{
		cert:    &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf},
		renewAt: notAfter.Add(-notAfter.Sub(notBefore) / 3),
	}, nil
}

// checkIssuer makes sure an issuing CA can sign: a parsed CA certificate
// allowed to sign certificates, valid now, with its own key, which can sign.
// It fills issuer.Leaf if need be.
func checkIssuer(issuer *tls.Certificate, now time.Time) error {
	if len(issuer.Certificate) == 0 {
		return errors.New("no certificate")
	}
	if issuer.Leaf == nil {
		leaf, err := x509.ParseCertificate(issuer.Certificate[0])
		if err != nil {
			return err
		}
		issuer.Leaf = leaf
	}
	ca := issuer.Leaf
	if !ca.BasicConstraintsValid || !ca.IsCA {
		return fmt.Errorf("%s is not a CA certificate", ca.Subject)
	}
	if ca.KeyUsage != 0 && ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%s may not sign certificates (key usage)", ca.Subject)
	}
	if now.After(ca.NotAfter) {
		return fmt.Errorf("%s expired on %s", ca.Subject, ca.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(ca.NotBefore) {
		return fmt.Errorf("%s is not valid before %s", ca.Subject, ca.NotBefore.UTC().Format(time.RFC3339))
	}
	signer, ok := issuer.PrivateKey.(crypto.Signer)
	if !ok {
		return fmt.Errorf("the private key of %s cannot sign", ca.Subject)
	}
	if pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(ca.PublicKey) {
		return fmt.Errorf("the private key is not the key of %s", ca.Subject)
	}
	return nil
}

// flight runs one generation per name at a time: callers asking for a name
// being generated wait for that result instead of generating again.
type flight struct {
	mu    sync.Mutex
	calls map[string]*flightCall
}

type flightCall struct {
	done chan struct{}
	m    *minted
	err  error
}

// do returns fn's result for key, running fn only if no call for key is in
// progress; shared tells that the result came from another caller's fn. A
// waiter gives up when ctx is done.
func (f *flight) do(ctx context.Context, key string, fn func() (*minted, error)) (m *minted, shared bool, err error) {
	f.mu.Lock()
	if c, ok := f.calls[key]; ok {
		f.mu.Unlock()
		select {
		case <-c.done:
			return c.m, true, c.err
		case <-ctx.Done():
			return nil, true, ctx.Err()
		}
	}
	if f.calls == nil {
		f.calls = make(map[string]*flightCall)
	}
	// The error stands if fn panics, so that waiters do not take a nil
	// certificate for a result.
	c := &flightCall{done: make(chan struct{}), err: errors.New("certs: certificate generation did not finish")}
	f.calls[key] = c
	f.mu.Unlock()

	defer func() {
		f.mu.Lock()
		delete(f.calls, key)
		f.mu.Unlock()
		close(c.done)
	}()
	c.m, c.err = fn()
	return c.m, false, c.err
}
