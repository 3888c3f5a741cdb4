package certs

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"

	"github.com/miekg/dns"
)

// Reasons DANE does not authenticate a peer, besides those of PeerError
// that a DANE-TA chain can fail with (ErrUntrusted, ErrExpired, ErrUsage,
// ErrNameMismatch).
var (
	// ErrDANEUnusable: none of the TLSA records is DANE-TA(2) or
	// DANE-EE(3) with selector 0 or 1, matching type 0, 1 or 2 and
	// well-formed data.
	ErrDANEUnusable = errors.New("no usable TLSA record")
	// ErrDANEMismatch: usable TLSA records, none matching the peer's
	// certificate (DANE-EE) or a certificate of its chain (DANE-TA).
	ErrDANEMismatch = errors.New("no TLSA record matches the certificate chain")
)

// TLSA certificate usages, selectors and matching types (RFC 6698 §2.1,
// RFC 7218).
const (
	usageDANETA   = 2
	usageDANEEE   = 3
	selectorCert  = 0
	selectorSPKI  = 1
	matchExact    = 0
	matchSHA256   = 1
	matchSHA512   = 2
	maxChainCerts = 8 // certificates of a presented chain looked at for DANE-TA
)

// VerifyDANE checks the certificate the peer presented on a finished
// handshake against TLSA records that the caller obtained securely
// (resolve.Resolver.DANE or DANEForDomain), per RFC 6698, RFC 7671 and RFC
// 7673. names are the reference identifiers for DANE-TA: the XMPP domain,
// and for a candidate from SRV also its target host name, which RFC 7673
// §4.2 allows. nil means the peer is authenticated as if by a certificate
// valid for the domain; a *PeerError says why not.
//
//   - DANE-EE(3): the leaf certificate (selector 0) or its public key
//     (selector 1) matches, exactly or by SHA-256 or SHA-512 digest. Nothing
//     else is checked: not the names, not the validity dates, not the key
//     usage (RFC 7671 §5.1).
//   - DANE-TA(2): a certificate the peer sent after its leaf matches, the
//     leaf chains to it (crypto/x509, with it as the only root and the other
//     presented certificates as intermediates, at the Verifier's time,
//     serverAuth or clientAuth usage), and the leaf identifies one of names
//     as Peer.VerifyDomain checks it (DNS-ID, SRV-ID, XmppAddr; the chain's
//     name constraints). The trust anchor must be in the presented chain
//     (RFC 7671 §5.2.2); it is never the leaf itself. Validity dates are
//     checked along the whole chain, the trust anchor's included.
//   - PKIX-TA(0) and PKIX-EE(1) are not used: they only narrow what PKIX
//     validation accepts, and the relay turns to DANE when PKIX validation
//     has failed or vouches for nothing (Verifier.VerifyPeer), so they could
//     never authenticate a peer that VerifyPeer refused. Records with them,
//     or with unknown selectors or matching types, are unusable and ignored
//     (RFC 7671 §4.1).
//
// A Verifier with Disabled set refuses with ErrDisabled.
func (v *Verifier) VerifyDANE(state tls.ConnectionState, records []*dns.TLSA, names []string) error {
	domain := ""
	if len(names) > 0 {
		domain = names[0]
	}
	if v.Disabled {
		return &PeerError{Domain: domain, Reason: ErrDisabled}
	}
	certs := state.PeerCertificates
	if len(certs) == 0 {
		return &PeerError{Domain: domain, Reason: ErrNoCertificate}
	}
	if len(certs) > maxChainCerts {
		certs = certs[:maxChainCerts]
	}
	type usable struct {
		rec  *dns.TLSA
		data []byte
	}
	var tas []usable
	n := 0
	for _, rec := range records {
		data, ok := tlsaData(rec)
		if !ok {
			continue
		}
		n++
		switch rec.Usage {
		case usageDANEEE:
			if tlsaMatches(rec, data, certs[0]) {
				return nil
			}
		case usageDANETA:
			tas = append(tas, usable{rec, data})
		}
	}
	if n == 0 {
		return &PeerError{Domain: domain, Reason: ErrDANEUnusable}
	}
	var chainErr error
	for _, ta := range tas {
		for _, c := range certs[1:] {
			if !tlsaMatches(ta.rec, ta.data, c) {
				continue
			}
			err := v.verifyFromAnchor(certs, c, names)
			if err == nil {
				return nil
			}
			if chainErr == nil {
				chainErr = err
			}
		}
	}
	if chainErr != nil {
		return chainErr
	}
	return &PeerError{Domain: domain, Reason: ErrDANEMismatch}
}

// tlsaData returns the association data of a DANE-TA or DANE-EE record of
// known selector and matching type, decoded, or false.
func tlsaData(rec *dns.TLSA) ([]byte, bool) {
	if rec == nil || rec.Usage != usageDANETA && rec.Usage != usageDANEEE ||
		rec.Selector != selectorCert && rec.Selector != selectorSPKI {
		return nil, false
	}
	data, err := hex.DecodeString(rec.Certificate)
	if err != nil {
		return nil, false
	}
	switch rec.MatchingType {
	case matchExact:
		return data, len(data) > 0
	case matchSHA256:
		return data, len(data) == sha256.Size
	case matchSHA512:
		return data, len(data) == sha512.Size
	}
	return nil, false
}

// tlsaMatches reports whether cert is the certificate or key rec (whose
// decoded data is data) designates.
func tlsaMatches(rec *dns.TLSA, data []byte, cert *x509.Certificate) bool {
	selected := cert.Raw
	if rec.Selector == selectorSPKI {
		selected = cert.RawSubjectPublicKeyInfo
	}
	switch rec.MatchingType {
	case matchSHA256:
		sum := sha256.Sum256(selected)
		return bytes.Equal(sum[:], data)
	case matchSHA512:
		sum := sha512.Sum512(selected)
		return bytes.Equal(sum[:], data)
	}
	return bytes.Equal(selected, data)
}

// verifyFromAnchor checks that the leaf of certs chains to anchor and
// identifies one of names.
func (v *Verifier) verifyFromAnchor(certs []*x509.Certificate, anchor *x509.Certificate, names []string) error {
	domain := ""
	if len(names) > 0 {
		domain = names[0]
	}
	opts := x509.VerifyOptions{
		Roots:         x509.NewCertPool(),
		Intermediates: x509.NewCertPool(),
		CurrentTime:   v.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	opts.Roots.AddCert(anchor)
	for _, c := range certs[1:] {
		if c != anchor {
			opts.Intermediates.AddCert(c)
		}
	}
	chains, err := certs[0].Verify(opts)
	if err != nil {
		return &PeerError{Domain: domain, Reason: chainReason(err), Err: err}
	}
	if len(names) == 0 {
		return &PeerError{Reason: ErrNameMismatch, Err: errors.New("no reference identifier to check a DANE-TA chain against")}
	}
	p := v.newPeer(certs[0], chains)
	var first error
	for _, name := range names {
		err := p.VerifyDomain(name)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}
