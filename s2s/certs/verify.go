package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/fedrelay/fedrelay/config"
)

// Reasons a peer certificate does not authenticate a domain. VerifyPeer and
// friends return them inside a *PeerError; test with errors.Is. Each one is a
// reason to fall back to dialback, worth a log line saying which.
var (
	// ErrNoCertificate: the peer presented no certificate (normal for a
	// dialback-only peer).
	ErrNoCertificate = errors.New("no certificate")
	// ErrUntrusted: no chain from the certificate to a trusted root.
	ErrUntrusted = errors.New("untrusted chain")
	// ErrExpired: the certificate, or a certificate of its chain, is expired
	// or not yet valid.
	ErrExpired = errors.New("expired or not yet valid")
	// ErrUsage: the chain's extended key usages allow neither serverAuth nor
	// clientAuth (a code-signing certificate, say).
	ErrUsage = errors.New("extended key usage allows neither serverAuth nor clientAuth")
	// ErrNameMismatch: the certificate is valid but identifies other
	// domains, or the domain itself is not a valid XMPP domain.
	ErrNameMismatch = errors.New("name mismatch")
	// ErrDisabled: peer verification is off (tls.verify_peers: false).
	ErrDisabled = errors.New("verification disabled")
)

// PeerError says why a peer certificate does not authenticate a domain.
// errors.Is(err, ErrExpired) and the like select the reason; errors.As
// reaches the crypto/x509 error, when there is one.
type PeerError struct {
	// Domain is the domain that was checked, "" when the chain failed
	// before any name was looked at.
	Domain string
	// Reason is one of ErrNoCertificate, ErrUntrusted, ErrExpired,
	// ErrUsage, ErrNameMismatch and ErrDisabled.
	Reason error
	// Err is the underlying cause, or nil.
	Err error
}

// Error says which domain failed and why, with the underlying cause:
// "certs: peer certificate for example.org: untrusted chain: x509: ...".
func (e *PeerError) Error() string {
	var b strings.Builder
	b.WriteString("certs: peer certificate")
	if e.Domain != "" {
		b.WriteString(" for ")
		b.WriteString(e.Domain)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason.Error())
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the reason and the cause, for errors.Is and errors.As.
func (e *PeerError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Reason}
	}
	return []error{e.Reason, e.Err}
}

// Verifier checks the certificates of S2S peers: chain validation against
// trusted roots, then RFC 9525 / XEP-0178 identity matching. Build it with
// NewVerifier from the configuration, or as a literal; the zero value
// verifies against the system roots at the current time. A Verifier is safe
// for concurrent use once built.
//
// Extended key usage: a chain is accepted when it allows serverAuth or
// clientAuth, or says nothing (no EKU, or anyExtendedKeyUsage). An inbound
// peer presents its server certificate as a TLS client certificate, and
// public CAs now issue serverAuth-only certificates (Let's Encrypt by default
// since February 2026):
// requiring clientAuth (the mistake ejabberd and Metronome made) would push
// every such peer to dialback. Asking crypto/x509 for {ServerAuth,
// ClientAuth} rather than ExtKeyUsageAny keeps its per-chain EKU nesting check
// and still refuses a certificate made for something else entirely, such as
// code signing.
type Verifier struct {
	// Roots are the trusted roots; nil means the system roots.
	Roots *x509.CertPool
	// Now returns the time at which certificates must be valid; nil means
	// time.Now. Tests set it.
	Now func() time.Time
	// Disabled makes every check fail with ErrDisabled, so that every peer
	// authenticates by dialback (tls.verify_peers: false).
	Disabled bool
}

// NewVerifier returns a Verifier for tc: the system roots plus the PEM
// certificates of tc.CAFile, disabled unless tc.VerifyPeers. It reads
// tc.CAFile (once) and fails if it holds no certificate.
func NewVerifier(tc config.TLS) (*Verifier, error) {
	v := &Verifier{Disabled: !tc.VerifyPeers}
	if tc.CAFile == "" {
		return v, nil
	}
	pem, err := os.ReadFile(tc.CAFile)
	if err != nil {
		return nil, fmt.Errorf("certs: read tls.ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("certs: tls.ca_file %s: no PEM certificate in it", tc.CAFile)
	}
	v.Roots = pool
	return v, nil
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// VerifyPeer checks that the certificate the peer presented on a finished
// handshake authenticates domain: for an inbound stream the header 'from'
// (RFC 6120 §13.7.2.1), for an outbound one the domain dialled, never the SRV
// target. nil means SASL EXTERNAL may be offered or used; a *PeerError says
// why not, and the stream should fall back to dialback.
func (v *Verifier) VerifyPeer(state tls.ConnectionState, domain string) error {
	p, err := v.VerifyChain(state)
	if err != nil {
		return addDomain(err, domain)
	}
	return p.VerifyDomain(domain)
}

// ValidFor reports whether the peer certificate of state authenticates
// domain. It is the XEP-0344 check for a piggybacked db:result: when true,
// answer valid without asking the Authoritative server. It verifies the chain
// each time; a caller checking many domains on one stream keeps the *Peer of
// VerifyChain instead.
func (v *Verifier) ValidFor(state tls.ConnectionState, domain string) bool {
	return v.VerifyPeer(state, domain) == nil
}

// VerifyChain validates the peer's chain once, for a stream that will check
// several domains against it (the header domain, then piggybacked db:result
// domains under XEP-0344). The intermediates are those the peer sent after
// its leaf.
func (v *Verifier) VerifyChain(state tls.ConnectionState) (*Peer, error) {
	if v.Disabled {
		return nil, &PeerError{Reason: ErrDisabled}
	}
	if len(state.PeerCertificates) == 0 {
		return nil, &PeerError{Reason: ErrNoCertificate}
	}
	leaf := state.PeerCertificates[0]
	opts := x509.VerifyOptions{
		Roots:       v.Roots,
		CurrentTime: v.now(),
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if len(state.PeerCertificates) > 1 {
		opts.Intermediates = x509.NewCertPool()
		for _, c := range state.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
	}
	chains, err := leaf.Verify(opts)
	if err != nil {
		return nil, &PeerError{Reason: chainReason(err), Err: err}
	}
	return v.newPeer(leaf, chains), nil
}

// newPeer makes the Peer of a leaf and its verified chains.
func (v *Verifier) newPeer(leaf *x509.Certificate, chains [][]*x509.Certificate) *Peer {
	p := &Peer{v: v, names: certNames(leaf), constraints: constraintsOf(chains)}
	// The stream may outlive the handshake: remember when the best chain
	// stops being valid, so that VerifyDomain can refuse after that.
	for _, chain := range chains {
		from, until := chain[0].NotBefore, chain[0].NotAfter
		for _, c := range chain[1:] {
			if c.NotBefore.After(from) {
				from = c.NotBefore
			}
			if c.NotAfter.Before(until) {
				until = c.NotAfter
			}
		}
		if until.After(p.notAfter) {
			p.notBefore, p.notAfter = from, until
		}
	}
	return p
}

func chainReason(err error) error {
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) {
		switch inv.Reason {
		case x509.Expired:
			return ErrExpired
		case x509.IncompatibleUsage:
			return ErrUsage
		}
	}
	return ErrUntrusted
}

func addDomain(err error, domain string) error {
	var pe *PeerError
	if errors.As(err, &pe) && pe.Domain == "" {
		pe.Domain = domain
	}
	return err
}

// Peer is a peer certificate whose chain VerifyChain has validated; only
// VerifyChain makes one. It is immutable and safe for concurrent use.
//
// It keeps what VerifyDomain needs (the leaf's names, the chains' validity
// and name constraints), not the certificates: a stream keeps its Peer for
// as long as it lives.
type Peer struct {
	v                   *Verifier
	names               sanNames
	constraints         nameConstraints
	notBefore, notAfter time.Time
}

// VerifyDomain checks that the certificate identifies domain (DNS-ID,
// SRV-ID "_xmpp-server.<domain>" or XmppAddr; wildcards only as a whole
// left-most DNS label; never the common name), comparing IDNA ASCII forms
// case-insensitively, and that its chain is still valid now.
func (p *Peer) VerifyDomain(domain string) error {
	if len(domain) > maxDomainBytes {
		return &PeerError{Domain: domain[:64] + "…", Reason: ErrNameMismatch, Err: errors.New("domain too long")}
	}
	ref, err := config.NormalizeDomain(domain)
	if err != nil {
		return &PeerError{Domain: domain, Reason: ErrNameMismatch, Err: err}
	}
	if now := p.v.now(); now.Before(p.notBefore) || now.After(p.notAfter) {
		return &PeerError{Domain: domain, Reason: ErrExpired,
			Err: fmt.Errorf("chain valid from %s until %s", p.notBefore.UTC().Format(time.RFC3339),
				p.notAfter.UTC().Format(time.RFC3339))}
	}
	switch matchNames(p.names, ref) {
	case idDNS:
		return nil
	case idSRV, idXMPP:
		if p.constraints.permit(ref) {
			return nil
		}
		return &PeerError{Domain: domain, Reason: ErrNameMismatch,
			Err: errors.New("the issuing CA's name constraints exclude the domain")}
	}
	return &PeerError{Domain: domain, Reason: ErrNameMismatch, Err: presented(p.names)}
}

// presented lists what a certificate does name, for the log line of a
// mismatch, a few names of each kind at most.
func presented(n sanNames) error {
	const most = 6
	list := func(s []string) string {
		if len(s) > most {
			return strings.Join(s[:most], " ") + fmt.Sprintf(" (+%d)", len(s)-most)
		}
		return strings.Join(s, " ")
	}
	return fmt.Errorf("certificate names DNS-ID [%s] SRV-ID [%s] XmppAddr [%s]",
		list(n.DNS), list(n.SRV), list(n.XMPP))
}
