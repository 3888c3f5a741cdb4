package resolve

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// Reasons DANE offers no TLSA records for a candidate. DANE and
// DANEForDomain return them inside a *DANEError; test with errors.Is. None
// of them is a reason to refuse a peer by itself: DANE is one more way to
// authenticate one, and without it the peer is judged as if DANE did not
// exist (RFC 7673 §3, RFC 7671 §4).
var (
	// ErrDANEDisabled: dns.dnssec is off.
	ErrDANEDisabled = errors.New("DANE disabled (dns.dnssec: off)")
	// ErrDANENotApplicable: the candidate does not come from DNS (a
	// dns.overrides target), or the domain is an IP literal.
	ErrDANENotApplicable = errors.New("DANE does not apply")
	// ErrNoTLSA: the SRV and address records are secure but the TLSA
	// lookup found no records (an absence DANE does not need to prove), or
	// none with known parameters.
	ErrNoTLSA = errors.New("no TLSA records")
	// ErrDNSSECInsecure: an answer DANE depends on is not DNSSEC-signed, or
	// not provably so (no AD bit in trust-ad mode; no signature, an unsigned
	// delegation, an unsupported algorithm or a wildcard in validate mode).
	ErrDNSSECInsecure = errors.New("not DNSSEC-secure")
	// ErrDNSSECBogus: an answer DANE depends on failed DNSSEC validation:
	// a signature that does not verify or is outside its validity period,
	// keys that match no DS record or trust anchor.
	ErrDNSSECBogus = errors.New("DNSSEC validation failed")
)

// DANEError says why there are no TLSA records to authenticate a candidate.
// errors.Is(err, ErrDNSSECBogus) and the like select the reason; a lookup
// that failed has reason ErrTemporary and the lookup's *Error as Err.
type DANEError struct {
	// Domain is the XMPP domain, in ASCII form.
	Domain string
	// Name is the DNS name and type whose answer decided
	// ("_5269._tcp.xmpp.example.org TLSA"), "" when no answer did.
	Name string
	// Reason is ErrDANEDisabled, ErrDANENotApplicable, ErrNoTLSA,
	// ErrDNSSECInsecure, ErrDNSSECBogus or ErrTemporary.
	Reason error
	// Detail says more in a few words, or is "".
	Detail string
	// Err is the underlying cause, or nil.
	Err error
}

// Error is one line: "DANE for example.org: _5269._tcp.xmpp.example.org
// TLSA: DNSSEC validation failed: RRSIG over ... does not verify".
func (e *DANEError) Error() string {
	var b strings.Builder
	b.WriteString("DANE for ")
	b.WriteString(e.Domain)
	b.WriteString(": ")
	if e.Name != "" {
		b.WriteString(e.Name)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason.Error())
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(oneLine(e.Detail))
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(oneLine(e.Err.Error()))
	}
	return b.String()
}

// Unwrap returns the reason and the cause, for errors.Is and errors.As.
func (e *DANEError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Reason}
	}
	return []error{e.Reason, e.Err}
}

// DANE returns the TLSA records with which to authenticate the server of
// the XMPP domain reached through cand (RFC 6698, RFC 7671, RFC 7673), or a
// *DANEError saying why there are none. The records are copies, with usage
// 0 to 3, selector 0 or 1 and matching type 0 to 2 (others are left out as
// unusable, RFC 7671 §4.1); which of them authenticate a certificate is the
// caller's decision (certs.Verifier.VerifyDANE).
//
// What must be secure, by dns.dnssec: in "validate" mode the relay checks
// each answer's signatures up to the root trust anchors; in "trust-ad" mode
// it believes the nameserver's AD bit; "off" fails with ErrDANEDisabled.
//
//   - For a candidate from SRV (RFC 7673 §3.1), the SRV RRset of
//     _xmpp-server._tcp.<domain> (StartTLS) or _xmpps-server._tcp.<domain>
//     (DirectTLS) must be secure and hold the candidate's target and port.
//   - For the A/AAAA fallback (no SRV records), the TLSA records are those of
//     the domain itself (RFC 6698 §3), on port 5269.
//   - The target's (or domain's) address records must be secure (RFC 7673
//     §3.2): at least one of the A and AAAA RRsets must be secure and
//     non-empty, and neither may be bogus. The addresses the Dialer used are
//     not compared with them: the TLSA match of the certificate, not the
//     address, authenticates the peer.
//   - The TLSA RRset of _<port>._tcp.<target> must be secure.
//
// Candidates from dns.overrides and IP-literal domains fail with
// ErrDANENotApplicable. No denial of existence is proven (NSEC/NSEC3):
// absent records, unsigned zones, wildcard answers and whatever cannot be
// proven secure all mean no DANE, never a refusal by themselves.
func (r *Resolver) DANE(ctx context.Context, domain string, cand Candidate) ([]*dns.TLSA, error) {
	fail := func(name string, reason error, detail string, err error) error {
		return &DANEError{Domain: domain, Name: name, Reason: reason, Detail: detail, Err: err}
	}
	if r.dnssec == dnssecOff {
		return nil, fail("", ErrDANEDisabled, "", nil)
	}
	name, ip, err := parseDomain(domain)
	if err != nil {
		return nil, fail("", ErrDANENotApplicable, "", err)
	}
	if ip.IsValid() {
		return nil, fail("", ErrDANENotApplicable, "IP-literal domain", nil)
	}
	domain = name
	if _, err := netip.ParseAddr(cand.Host); err == nil || cand.Host == "" {
		return nil, fail("", ErrDANENotApplicable, "candidate "+cand.Address()+" is not a host name", nil)
	}

	host := strings.ToLower(cand.Host)
	switch cand.Source {
	case FromOverride:
		return nil, fail("", ErrDANENotApplicable, "candidate "+cand.Address()+" is a dns.overrides target", nil)
	case FromFallback:
		if host != name {
			return nil, fail("", ErrDANENotApplicable, "fallback candidate "+cand.Address()+" is not the domain", nil)
		}
	case FromSRV:
		svc := servicePrefix[svcXMPP]
		if cand.Mode == DirectTLS {
			svc = servicePrefix[svcXMPPS]
		}
		owner := svc + name
		set, err := r.secureLookup(ctx, owner, dns.TypeSRV)
		if err := setError(owner, dns.TypeSRV, set, err, fail); err != nil {
			return nil, err
		}
		listed := false
		for _, rr := range set.rrs {
			if s, ok := rr.(*dns.SRV); ok && s.Port == cand.Port && trimDot(s.Target) == host {
				listed = true
				break
			}
		}
		if !listed {
			return nil, fail(owner+" SRV", ErrDNSSECInsecure, "the secure SRV records do not list "+cand.Address(), nil)
		}
	default:
		return nil, fail("", ErrDANENotApplicable, "candidate of unknown source", nil)
	}

	if err := r.secureAddrs(ctx, host, fail); err != nil {
		return nil, err
	}

	tlsaName := "_" + strconv.Itoa(int(cand.Port)) + "._tcp." + host
	set, err := r.secureLookup(ctx, tlsaName, dns.TypeTLSA)
	if err := setError(tlsaName, dns.TypeTLSA, set, err, fail); err != nil {
		if errors.Is(err, errNoData) {
			return nil, fail(tlsaName+" TLSA", ErrNoTLSA, "", nil)
		}
		return nil, err
	}
	var out []*dns.TLSA
	for _, rr := range set.rrs {
		t, ok := rr.(*dns.TLSA)
		if !ok || t.Usage > 3 || t.Selector > 1 || t.MatchingType > 2 {
			continue
		}
		out = append(out, dns.Copy(t).(*dns.TLSA))
	}
	if len(out) == 0 {
		return nil, fail(tlsaName+" TLSA", ErrNoTLSA, "no record with known usage, selector and matching type", nil)
	}
	return out, nil
}

// errNoData marks the error setError makes of a secure empty answer.
var errNoData = errors.New("no records")

// setError turns a lookup that failed or an answer that is not secure into
// the DANEError fail makes; a missing RRset is ErrDNSSECInsecure, since its
// absence is not proven, and wraps errNoData.
func setError(owner string, qtype uint16, set *secSet, err error,
	fail func(name string, reason error, detail string, err error) error) error {
	what := owner + " " + dns.TypeToString[qtype]
	if err != nil {
		return fail(what, ErrTemporary, "", err)
	}
	switch set.status {
	case secSecure:
		return nil
	case secBogus:
		return fail(what, ErrDNSSECBogus, set.why, nil)
	case secNoData:
		return fail(what, ErrDNSSECInsecure, "no records", errNoData)
	}
	return fail(what, ErrDNSSECInsecure, set.why, nil)
}

// secureAddrs checks the address records of host for DANE (RFC 7673 §3.2):
// a secure non-empty A or AAAA RRset, and no bogus one.
func (r *Resolver) secureAddrs(ctx context.Context, host string,
	fail func(name string, reason error, detail string, err error) error) error {
	var sets [2]*secSet
	var errs [2]error
	qtypes := [2]uint16{dns.TypeAAAA, dns.TypeA}
	var wg sync.WaitGroup
	for i, qt := range qtypes {
		wg.Go(func() { sets[i], errs[i] = r.secureLookup(ctx, host, qt) })
	}
	wg.Wait()
	secure := false
	for i, set := range sets {
		if errs[i] == nil && set.status == secBogus {
			return fail(host+" "+dns.TypeToString[qtypes[i]], ErrDNSSECBogus, set.why, nil)
		}
		secure = secure || errs[i] == nil && set.status == secSecure && len(set.rrs) > 0
	}
	if secure {
		return nil
	}
	for i, err := range errs {
		if err != nil {
			return fail(host+" "+dns.TypeToString[qtypes[i]], ErrTemporary, "", err)
		}
	}
	why := "neither A nor AAAA records are secure"
	for _, set := range sets {
		if set.why != "" {
			why += ": " + set.why
			break
		}
	}
	return fail(host+" A/AAAA", ErrDNSSECInsecure, why, nil)
}

// maxDANETargets bounds the candidates DANEForDomain looks at.
const maxDANETargets = 8

// DANEForDomain gathers the TLSA records of every candidate of an XMPP
// domain for which DANE gives some (at most 8 candidates, in Lookup order,
// looked up in parallel), without duplicates: for authenticating an
// inbound peer, which does not say through which of its servers it came.
// When there are none it returns the *DANEError of a bogus answer if there
// was one, else that of the first candidate; a failed Lookup is a
// *DANEError with reason ErrTemporary, or ErrDANENotApplicable when the
// domain has no S2S service.
func (r *Resolver) DANEForDomain(ctx context.Context, domain string) ([]*dns.TLSA, error) {
	if r.dnssec == dnssecOff {
		return nil, &DANEError{Domain: domain, Reason: ErrDANEDisabled}
	}
	cands, err := r.Lookup(ctx, domain)
	if err != nil {
		reason := ErrTemporary
		if KindOf(err) != Temporary {
			reason = ErrDANENotApplicable
		}
		return nil, &DANEError{Domain: domain, Reason: reason, Err: err}
	}
	// The same target may appear under both SRV names; ask once per
	// target, port and source.
	type target struct {
		host   string
		port   uint16
		source Source
	}
	var picked []Candidate
	seen := map[target]bool{}
	for _, c := range cands {
		t := target{c.Host, c.Port, c.Source}
		if seen[t] {
			continue
		}
		seen[t] = true
		picked = append(picked, c)
		if len(picked) == maxDANETargets {
			break
		}
	}
	recs := make([][]*dns.TLSA, len(picked))
	errs := make([]error, len(picked))
	var wg sync.WaitGroup
	for i, c := range picked {
		wg.Go(func() { recs[i], errs[i] = r.DANE(ctx, domain, c) })
	}
	wg.Wait()

	var out []*dns.TLSA
	for _, rs := range recs {
		for _, t := range rs {
			dup := false
			for _, o := range out {
				if o.Usage == t.Usage && o.Selector == t.Selector && o.MatchingType == t.MatchingType &&
					strings.EqualFold(o.Certificate, t.Certificate) {
					dup = true
					break
				}
			}
			if !dup {
				out = append(out, t)
			}
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	for _, err := range errs {
		if errors.Is(err, ErrDNSSECBogus) {
			return nil, err
		}
	}
	if len(errs) == 0 {
		return nil, &DANEError{Domain: domain, Reason: ErrDANENotApplicable, Detail: "no candidates"}
	}
	return nil, errs[0]
}
