package s2s

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/policy"
	"github.com/fedrelay/fedrelay/s2s/certs"
	"github.com/fedrelay/fedrelay/s2s/resolve"
)

// DANE authenticates a remote domain's certificate by TLSA records
// validated by DNSSEC (RFC 7673, RFC 7671). An error says why it does not:
// no usable records, an unsigned or bogus answer, or a certificate that
// matches none of them.
type DANE interface {
	// Outbound checks the certificate the receiving server presented on
	// a stream to domain opened at cand.
	Outbound(ctx context.Context, domain string, cand resolve.Candidate, state tls.ConnectionState) error
	// Inbound checks the certificate an initiating server presented for
	// domain, against the TLSA records of domain's own S2S service.
	Inbound(ctx context.Context, domain string, state tls.ConnectionState) error
}

// errNoTLS: a stream without TLS carries no certificate to authenticate.
var errNoTLS = errors.New("no TLS")

// peerTrust is how the receiving server of an outbound stream proved it is
// the remote domain: policy.AuthExternal by a certificate valid for it, by
// DANE or by a pinned key; policy.AuthDialback when only DNS vouches for it
// (how says why, for logs and for the bounce).
type peerTrust struct {
	auth policy.Auth
	how  string
}

// authenticatePeer finds out whether the receiving server of o is the
// remote domain. DANE is asked only when the certificate does not
// authenticate the domain and dialback-grade trust would not do.
func (s *Server) authenticatePeer(ctx context.Context, o *outStream, p *policy.Policy) peerTrust {
	tc, ok := o.conn.(*tls.Conn)
	if !ok {
		return peerTrust{policy.AuthDialback, "no TLS, so no certificate"}
	}
	state := tc.ConnectionState()
	trust := p.Trust(o.remote)
	if len(trust.Pins) > 0 {
		if len(state.PeerCertificates) > 0 && trust.Pinned(state.PeerCertificates[0].RawSubjectPublicKeyInfo) {
			return peerTrust{policy.AuthExternal, "pinned key (" + trust.Rule + ")"}
		}
		return peerTrust{policy.AuthDialback, "certificate key is not one pinned by " + trust.Rule}
	}
	var err error
	aside(func() { err = s.Verifier.VerifyPeer(state, o.remote) })
	if err == nil {
		return peerTrust{policy.AuthExternal, "certificate"}
	}
	how := "certificate not valid for it (" + err.Error() + ")"
	if s.DANE == nil {
		return peerTrust{policy.AuthDialback, how}
	}
	if d := p.Stream(policy.StreamState{Face: policy.Federation, Dir: policy.Out, Remote: o.remote,
		TLS: true, Auth: policy.AuthDialback}); d.Allowed {
		return peerTrust{policy.AuthDialback, how}
	}
	if err := s.DANE.Outbound(ctx, o.remote, o.cand, state); err != nil {
		return peerTrust{policy.AuthDialback, how + "; DANE: " + err.Error()}
	}
	return peerTrust{policy.AuthExternal, "DANE"}
}

// checkPeer applies the policy to an outbound stream towards a remote
// domain once TLS is up and before the relay authenticates to it: the
// receiving server must be authenticated as federation.secure_auth and the
// domain's rule (require_tls, require_auth) demand. Nothing is written to a
// peer refused here; the link bounces its stanzas with the reason.
func (s *Server) checkPeer(ctx context.Context, o *outStream) error {
	p := s.Router.Policy()
	o.trust = s.authenticatePeer(ctx, o, p)
	return s.judgePeer(p, o, o.local)
}

// judgePeer applies policy p to the pair (local → o.remote) on o, whose
// receiving server proved its identity as o.trust says: for a new stream
// (checkPeer), or for another pair on a stream that is up (multiplexing).
func (s *Server) judgePeer(p *policy.Policy, o *outStream, local string) error {
	t := o.trust
	st := policy.StreamState{Face: policy.Federation, Dir: policy.Out, Remote: o.remote, TLS: o.tls, Auth: t.auth}
	d := p.Stream(st)
	s.auditOut(d.Record(time.Now(), st, local), o)
	if d.Allowed {
		return nil
	}
	var why string
	switch d.Reason {
	case policy.ReasonInsecure:
		why = fmt.Sprintf("%s could not be authenticated: %s; federation.secure_auth requires a certificate valid for it, DANE or a pinned key (a rule with insecure: true allows dialback alone)", o.remote, t.how)
	case policy.ReasonAuth:
		why = fmt.Sprintf("%s authenticated by %s only (%s), which %s does not accept", o.remote, t.auth, t.how, d.Rule)
	case policy.ReasonTLS:
		why = fmt.Sprintf("the stream to %s is not encrypted and %s requires TLS", o.remote, d.Rule)
	default:
		why = fmt.Sprintf("federation with %s is not allowed (%s)", o.remote, d.Rule)
	}
	return &refusedPeer{why: why}
}

// refusedPeer is an outbound stream the policy refused after TLS.
type refusedPeer struct{ why string }

func (e *refusedPeer) Error() string { return e.why }

// certTrusted reports whether the peer of an inbound federation stream
// proved by its certificate that it is domain: the chain is valid for
// domain, or, when the domain's rule pins keys, the certificate's key is
// pinned (and then only that).
func (c *inConn) certTrusted(domain string) bool {
	if !c.tlsOn.Load() {
		return false // no certificate yet; what startTLS sets is read only after tlsOn
	}
	trust := c.s.Router.Policy().Trust(domain)
	if len(trust.Pins) > 0 {
		return c.leafSPKI != nil && trust.Pinned(c.leafSPKI)
	}
	return c.peer != nil && c.peer.VerifyDomain(domain) == nil
}

// authOf is how domain is authenticated on this stream so far: by
// certificate (valid, pinned, or matched by DANE) or by dialback alone.
func (c *inConn) authOf(domain string) policy.Auth {
	if c.certValid(domain) {
		return policy.AuthExternal
	}
	c.mu.Lock()
	dane := c.daneOK[domain]
	c.mu.Unlock()
	if dane {
		return policy.AuthExternal
	}
	return policy.AuthDialback
}

// daneMayHelp reports whether DANE is worth asking about domain before a
// dialback verification: the certificate did not do, and dialback alone
// would not be enough.
func (c *inConn) daneMayHelp(pair dialback.Pair) bool {
	if c.face != policy.Federation || c.s.DANE == nil || !c.tlsOn.Load() || c.authOf(pair.From) == policy.AuthExternal {
		return false
	}
	st := policy.StreamState{Face: c.face, Dir: c.dirIn(), Remote: pair.From, TLS: true, Auth: policy.AuthDialback}
	return !c.s.Router.Policy().Stream(st).Allowed
}

// tryDANE checks the peer's certificate against domain's TLSA records and
// remembers a match for the stream. It runs on a verification goroutine.
func (c *inConn) tryDANE(ctx context.Context, domain string) {
	if len(c.peerChain) == 0 {
		return
	}
	// The stream keeps the certificates as sent, not parsed (see
	// startTLS): parsed again for each check, which is rare.
	var state tls.ConnectionState
	for _, der := range c.peerChain {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return // crypto/tls parsed it once already
		}
		state.PeerCertificates = append(state.PeerCertificates, cert)
	}
	if err := c.s.DANE.Inbound(ctx, domain, state); err != nil {
		c.events.log(c.logger(), slog.LevelInfo, "DANE does not authenticate the peer", "domain", domain, "err", err)
		return
	}
	c.mu.Lock()
	if c.daneOK == nil {
		c.daneOK = make(map[string]bool)
	}
	c.daneOK[domain] = true
	c.mu.Unlock()
}

// connTLS returns the stream's TLS connection, from any goroutine.
func (c *inConn) connTLS() (*tls.Conn, bool) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	tc, ok := c.conn.(*tls.Conn)
	return tc, ok
}

// resolverDANE is the DANE of a relay: TLSA records from the resolver,
// validated as dns.dnssec says, matched by the certificate verifier.
type resolverDANE struct {
	r *resolve.Resolver
	v *certs.Verifier
}

// NewDANE returns the DANE that looks TLSA records up with r and matches
// certificates with v.
func NewDANE(r *resolve.Resolver, v *certs.Verifier) DANE { return resolverDANE{r, v} }

func (d resolverDANE) Outbound(ctx context.Context, domain string, cand resolve.Candidate, state tls.ConnectionState) error {
	records, err := d.r.DANE(ctx, domain, cand)
	if err != nil {
		return err
	}
	// RFC 7673 §4.1: the source domain or the SRV target may be the
	// certificate's reference identifier (for DANE-TA).
	names := []string{domain}
	if cand.Source == resolve.FromSRV && cand.Host != domain {
		names = append(names, cand.Host)
	}
	var verr error
	aside(func() { verr = d.v.VerifyDANE(state, records, names) })
	return verr
}

func (d resolverDANE) Inbound(ctx context.Context, domain string, state tls.ConnectionState) error {
	records, err := d.r.DANEForDomain(ctx, domain)
	if err != nil {
		return err
	}
	var verr error
	aside(func() { verr = d.v.VerifyDANE(state, records, []string{domain}) })
	return verr
}
