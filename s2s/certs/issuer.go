package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// IssuerExpiryWarning is how close to its end an issuing CA makes
// LoadIssuer and NewStore warn: the certificates it signs end with it, and
// once it has expired the store can generate none.
const IssuerExpiryWarning = 30 * 24 * time.Hour

// ErrIssuerKey is in the chain of LoadIssuer's errors that concern the key
// file rather than the certificate file.
var ErrIssuerKey = errors.New("the CA's key")

// issuerKeyError is an error of the CA's key file.
type issuerKeyError struct{ error }

func (e issuerKeyError) Unwrap() []error { return []error{e.error, ErrIssuerKey} }

// LoadIssuer reads an internal CA, for Options.Issuer: its certificate (PEM,
// the CA first, then any intermediates up to the root, which are sent after
// every certificate it signs) and its private key (PEM: PKCS #8, PKCS #1 or
// SEC 1; RSA, ECDSA or Ed25519). It fails, saying why, when a file cannot be
// read or parsed, the key is not the certificate's, the certificate is not
// a CA allowed to sign certificates, or it is not valid at now. Warnings
// say what will need attention soon (the CA expires within
// IssuerExpiryWarning).
func LoadIssuer(certFile, keyFile string, now time.Time) (*tls.Certificate, []string, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, issuerKeyError{err}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, explainPairError(err, certPEM)
	}
	if err := checkIssuer(&cert, now); err != nil {
		return nil, nil, err
	}
	return &cert, issuerWarnings(&cert, now), nil
}

// explainPairError turns crypto/tls's errors about a certificate and key
// pair into ones an operator can act on.
func explainPairError(err error, certPEM []byte) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "does not match public key"):
		subject := "the certificate"
		if b, _ := pem.Decode(certPEM); b != nil {
			if c, perr := x509.ParseCertificate(b.Bytes); perr == nil {
				subject = c.Subject.String()
			}
		}
		return issuerKeyError{fmt.Errorf("the private key is not the key of %s", subject)}
	case strings.Contains(msg, "failed to find any PEM data in certificate input"):
		return errors.New("no PEM CERTIFICATE block in the certificate file")
	case strings.Contains(msg, "failed to find any PEM data in key input"),
		strings.Contains(msg, "failed to find PEM block with type ending in"):
		return issuerKeyError{errors.New("no PEM PRIVATE KEY block in the key file")}
	case strings.Contains(msg, "private key") && !strings.Contains(msg, "certificate input"):
		return issuerKeyError{err}
	}
	return err
}

// issuerWarnings reports an issuer that expires within IssuerExpiryWarning.
func issuerWarnings(issuer *tls.Certificate, now time.Time) []string {
	end := issuer.Leaf.NotAfter
	if left := end.Sub(now); left < IssuerExpiryWarning {
		in := fmt.Sprintf("%d days", int(left.Hours()/24))
		if left < 48*time.Hour {
			in = left.Round(time.Minute).String()
		}
		return []string{fmt.Sprintf("the internal CA %s expires on %s (in %s): the certificates it signs end then, "+
			"and after that none can be generated; renew it", issuer.Leaf.Subject,
			end.UTC().Format(time.RFC3339), in)}
	}
	return nil
}
