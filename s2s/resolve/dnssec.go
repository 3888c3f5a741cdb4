package resolve

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// dnssecMode is how answers are trusted for DANE (config.DNS.DNSSEC).
type dnssecMode uint8

const (
	// dnssecValidate: queries carry DO and CD, and the relay checks the
	// signatures itself from the root trust anchors down.
	dnssecValidate dnssecMode = iota
	// dnssecTrustAD: queries carry DO and AD, and an answer is secure when
	// the nameserver set AD in it.
	dnssecTrustAD
	// dnssecOff: no DANE.
	dnssecOff
)

func parseDNSSECMode(s string) (dnssecMode, error) {
	switch s {
	case "", "validate":
		return dnssecValidate, nil
	case "trust-ad":
		return dnssecTrustAD, nil
	case "off":
		return dnssecOff, nil
	}
	return 0, fmt.Errorf("resolve: dns.dnssec: %q: must be validate, trust-ad or off", s)
}

// Bounds on the work a stranger's DNS can make the validator do.
const (
	// maxChainZones is the longest chain of zones, the root included,
	// from a trust anchor to the signer of an answer.
	maxChainZones = 16
	// maxCNAMEs is the longest CNAME chain followed in an answer.
	maxCNAMEs = 8
	// maxSigsTried is how many RRSIGs over one RRset are tried against
	// keys (those failing the cheap checks first do not count).
	maxSigsTried = 4
	// maxKeysTried is how many keys with the RRSIG's (or DS's) key tag and
	// algorithm are tried for it: key tags may collide, but not often.
	maxKeysTried = 4
	// maxDSRecords is how many DS records of a zone are looked at.
	maxDSRecords = 8
	// failedTTL is how long (before the min_ttl/max_ttl clamp) a bogus
	// answer is remembered, so that a broken zone is not asked again for
	// every stream.
	failedTTL = 60
)

// ianaRootAnchors are the root zone's trust anchors published by IANA
// (https://data.iana.org/root-anchors/root-anchors.xml, RFC 9718): the DS
// records of KSK-2017 (key tag 20326) and KSK-2024 (key tag 38696), both
// RSA/SHA-256 with SHA-256 digests. Both are kept so that the root's
// rollover from one to the other needs no new build.
const ianaRootAnchorText = `
. IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D
. IN DS 38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16
`

func ianaRootAnchors() []dns.RR {
	rrs, err := parseAnchors(ianaRootAnchorText, "built-in")
	if err != nil {
		panic("resolve: built-in trust anchors: " + err.Error())
	}
	return rrs
}

// readAnchors reads a file of DS or DNSKEY records for the root zone in
// zone-file syntax (config.DNS.TrustAnchors).
func readAnchors(path string) ([]dns.RR, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("resolve: dns.trust_anchors: %w", err)
	}
	rrs, err := parseAnchors(string(b), path)
	if err != nil {
		return nil, fmt.Errorf("resolve: dns.trust_anchors: %s: %w", path, err)
	}
	return rrs, nil
}

func parseAnchors(text, source string) ([]dns.RR, error) {
	zp := dns.NewZoneParser(strings.NewReader(text), ".", source)
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		return nil, err
	}
	return rrs, checkAnchors(rrs)
}

// checkAnchors accepts DS and DNSKEY records owned by the root, at least one
// of them of an algorithm (and digest) the validator supports.
func checkAnchors(rrs []dns.RR) error {
	usable := false
	for _, rr := range rrs {
		if rr.Header().Name != "." {
			return fmt.Errorf("%s: only records for the root zone \".\" are trust anchors", rr.Header().Name)
		}
		switch a := rr.(type) {
		case *dns.DS:
			usable = usable || supportedAlgorithm(a.Algorithm) && supportedDigest(a.DigestType)
		case *dns.DNSKEY:
			usable = usable || supportedAlgorithm(a.Algorithm)
		default:
			return fmt.Errorf("%s record: only DS and DNSKEY records are trust anchors", dns.TypeToString[rr.Header().Rrtype])
		}
	}
	if !usable {
		return errors.New("no DS or DNSKEY record of a supported algorithm (RSA/SHA-256, RSA/SHA-512, ECDSA P-256 or P-384, Ed25519; DS digests SHA-256 or SHA-384)")
	}
	return nil
}

// supportedAlgorithm: the DNSSEC algorithms validated (RFC 8624 MUST and
// RECOMMENDED ones). RSA/SHA-1 (5, 7) is not: signatures made with it count
// as no signature, so such zones are insecure, never secure.
func supportedAlgorithm(alg uint8) bool {
	switch alg {
	case dns.RSASHA256, dns.RSASHA512, dns.ECDSAP256SHA256, dns.ECDSAP384SHA384, dns.ED25519:
		return true
	}
	return false
}

// supportedDigest: the DS digest types used. SHA-1 (1) is not: a DS with it
// vouches for nothing here.
func supportedDigest(t uint8) bool { return t == dns.SHA256 || t == dns.SHA384 }

// secStatus is the DNSSEC verdict on an answer (RFC 4033 §5, without
// "indeterminate", which is a lookup error here).
type secStatus uint8

const (
	secSecure   secStatus = iota // signed, and the signatures chain to a trust anchor
	secInsecure                  // no usable signatures: unsigned, or not provably signed
	secBogus                     // signatures that do not verify, or a broken chain
	secNoData                    // no records of the type (NXDOMAIN or NODATA), unproven
)

func (s secStatus) String() string {
	switch s {
	case secSecure:
		return "secure"
	case secInsecure:
		return "insecure"
	case secBogus:
		return "bogus"
	}
	return "no data"
}

// secKey names a validated answer in the cache: a fully qualified lower-case
// name and a type.
type secKey struct {
	name  string
	qtype uint16
}

// secSet is the verdict on one answer and the records of the type asked
// (after CNAMEs), secure or not. It is never modified once made.
type secSet struct {
	status secStatus
	// why says what made the answer insecure or bogus, in one line.
	why string
	rrs []dns.RR
	// depth is the number of zones from the trust anchor to the zone that
	// signed the records (1 for the root's own records).
	depth   int
	expires time.Time
}

// rrStep is one RRset of an answer, with the RRSIGs covering it.
type rrStep struct {
	owner  string // fully qualified, lower case
	rrtype uint16
	rrs    []dns.RR
	sigs   []*dns.RRSIG
}

// answerChain picks out of m's answer section the RRsets that answer name
// and qtype: the CNAMEs on the way (at most maxCNAMEs; none for DNSKEY and
// DS, which belong to zone apexes and delegations) and last the records of
// qtype, which may be empty (no data). Owner names are set to their lower
// case form. ok is false when the chain is too long, loops, or a CNAME
// RRset holds more than one record.
func answerChain(m *dns.Msg, name string, qtype uint16) (steps []rrStep, ok bool) {
	owner := dns.CanonicalName(name)
	hops := maxCNAMEs
	if qtype == dns.TypeDNSKEY || qtype == dns.TypeDS || qtype == dns.TypeCNAME {
		hops = 0
	}
	for i := 0; ; i++ {
		st := collect(m.Answer, owner, qtype)
		if len(st.rrs) > 0 || hops == 0 {
			return append(steps, st), true
		}
		c := collect(m.Answer, owner, dns.TypeCNAME)
		if len(c.rrs) == 0 {
			return append(steps, st), true
		}
		if i == hops || len(c.rrs) != 1 {
			return append(steps, rrStep{owner: owner, rrtype: qtype}), false
		}
		steps = append(steps, c)
		owner = dns.CanonicalName(c.rrs[0].(*dns.CNAME).Target)
		for _, s := range steps {
			if s.owner == owner {
				return append(steps, rrStep{owner: owner, rrtype: qtype}), false
			}
		}
	}
}

// collect returns the records of rrtype owned by owner in rrs, and the
// RRSIGs over them. Records of other classes are left out.
func collect(rrs []dns.RR, owner string, rrtype uint16) rrStep {
	st := rrStep{owner: owner, rrtype: rrtype}
	for _, rr := range rrs {
		h := rr.Header()
		if h.Class != dns.ClassINET || !strings.EqualFold(h.Name, owner) {
			continue
		}
		if h.Rrtype == rrtype {
			if _, ok := rr.(*dns.RFC3597); ok {
				continue // a type the library could not parse
			}
			if rrtype == dns.TypeCNAME {
				if _, ok := rr.(*dns.CNAME); !ok {
					continue
				}
			}
			h.Name = owner
			st.rrs = append(st.rrs, rr)
		} else if sig, ok := rr.(*dns.RRSIG); ok && sig.TypeCovered == rrtype {
			h.Name = owner
			st.sigs = append(st.sigs, sig)
		}
	}
	return st
}

// verdict is the outcome of checking the signatures over one RRset.
type verdict struct {
	status secStatus
	why    string
	depth  int
	// expires is when the signature that verified stops being valid.
	expires time.Time
}

// verifyRRset checks the RRSIGs over st at time now (RFC 4035 §5.3): a
// signature of a supported algorithm, within its validity period, whose
// signer is the zone of the owner (an ancestor of it, or the owner itself;
// the owner for a DNSKEY RRset; a proper ancestor for a DS RRset, which the
// parent signs), whose label count is the owner's, made by a key of the
// signer's validated DNSKEY RRset (keys returns it). The first signature
// that verifies makes the RRset secure.
//
// Without such a signature the RRset is bogus if a signature was wrong
// (expired, not verifying, not matching the owner) or the signer's keys are
// bogus, and insecure otherwise: no RRSIG, only unsupported algorithms, a
// signer whose zone is unsigned, or a wildcard expansion (RRSIG labels
// fewer than the owner's), which would need an NSEC or NSEC3 proof that the
// name itself does not exist; the validator proves no denial, so such
// answers are not secure.
func verifyRRset(st rrStep, now time.Time, keys func(signer string) (*secSet, error)) (verdict, error) {
	what := st.owner + " " + dns.TypeToString[st.rrtype]
	if len(st.sigs) == 0 {
		return verdict{status: secInsecure, why: "no RRSIG over " + what}, nil
	}
	labels := dns.CountLabel(st.owner)
	var bogus, insecure string
	tried := 0
	for _, sig := range st.sigs {
		if tried == maxSigsTried {
			break
		}
		signer := dns.CanonicalName(sig.SignerName)
		switch {
		case !supportedAlgorithm(sig.Algorithm):
			insecure = fmt.Sprintf("RRSIG over %s of unsupported algorithm %d", what, sig.Algorithm)
			continue
		case !signerFits(signer, st.owner, st.rrtype):
			bogus = fmt.Sprintf("RRSIG over %s by %s, which is not its zone", what, signer)
			continue
		case int(sig.Labels) < labels:
			insecure = "wildcard answer for " + what + " (no proof of non-existence is checked)"
			continue
		case int(sig.Labels) > labels:
			bogus = fmt.Sprintf("RRSIG over %s counts %d labels", what, sig.Labels)
			continue
		case !sig.ValidityPeriod(now):
			bogus = fmt.Sprintf("RRSIG over %s by %s valid only from %s to %s", what, signer,
				dns.TimeToString(sig.Inception), dns.TimeToString(sig.Expiration))
			continue
		}
		tried++
		ks, err := keys(signer)
		if err != nil {
			return verdict{}, err
		}
		switch ks.status {
		case secBogus:
			bogus = "DNSKEY of " + signer + ": " + ks.why
			continue
		case secInsecure:
			insecure = "DNSKEY of " + signer + ": " + ks.why
			continue
		case secNoData:
			insecure = "no DNSKEY records for " + signer
			continue
		}
		n := 0
		for _, rr := range ks.rrs {
			k, ok := rr.(*dns.DNSKEY)
			if !ok || k.Algorithm != sig.Algorithm || k.Flags&dns.REVOKE != 0 || k.KeyTag() != sig.KeyTag {
				continue
			}
			if n == maxKeysTried {
				break
			}
			n++
			if sig.Verify(k, st.rrs) == nil {
				return verdict{status: secSecure, depth: ks.depth, expires: serialTime(sig.Expiration, now)}, nil
			}
		}
		if n == 0 {
			bogus = fmt.Sprintf("RRSIG over %s by %s key %d: no such key", what, signer, sig.KeyTag)
		} else {
			bogus = fmt.Sprintf("RRSIG over %s by %s key %d does not verify", what, signer, sig.KeyTag)
		}
	}
	if bogus != "" {
		return verdict{status: secBogus, why: bogus}, nil
	}
	return verdict{status: secInsecure, why: insecure}, nil
}

// signerFits applies RFC 4035 §5.3.1 to the signer name as far as it can be
// checked without knowing the zone cuts.
func signerFits(signer, owner string, rrtype uint16) bool {
	switch rrtype {
	case dns.TypeDNSKEY:
		return signer == owner
	case dns.TypeDS:
		return signer != owner && dns.IsSubDomain(signer, owner)
	}
	return dns.IsSubDomain(signer, owner)
}

// serialTime turns an RRSIG time (seconds modulo 2^32, RFC 4034 §3.1.5) into
// the time nearest to now that it stands for.
func serialTime(t uint32, now time.Time) time.Time {
	return now.Add(time.Duration(int32(t-uint32(now.Unix()))) * time.Second)
}

// trustedKeys returns the keys of a DNSKEY RRset that a DS record (or a
// DNSKEY trust anchor) vouches for: same key tag and algorithm, zone key not
// revoked, and the DS digest of the key equal to the record's. supported is
// false when no DS record has a supported algorithm and digest: RFC 4035
// §5.2 then treats the zone as unsigned.
func trustedKeys(keys []dns.RR, vouchers []dns.RR) (trusted []dns.RR, supported bool) {
	nDS := 0
	for _, v := range vouchers {
		var ds *dns.DS
		switch a := v.(type) {
		case *dns.DS:
			ds = a
		case *dns.DNSKEY:
			if !supportedAlgorithm(a.Algorithm) {
				continue
			}
			ds = a.ToDS(dns.SHA256)
		}
		if ds == nil || nDS == maxDSRecords {
			continue
		}
		nDS++
		if !supportedAlgorithm(ds.Algorithm) || !supportedDigest(ds.DigestType) {
			continue
		}
		supported = true
		tried := 0
		for _, rr := range keys {
			k, ok := rr.(*dns.DNSKEY)
			if !ok || k.Algorithm != ds.Algorithm || k.Protocol != 3 || k.Flags&dns.ZONE == 0 ||
				k.Flags&dns.REVOKE != 0 || k.KeyTag() != ds.KeyTag {
				continue
			}
			if tried == maxKeysTried {
				break
			}
			tried++
			if d := k.ToDS(ds.DigestType); d != nil && strings.EqualFold(d.Digest, ds.Digest) && !containsRR(trusted, k) {
				trusted = append(trusted, k)
			}
		}
	}
	return trusted, supported
}

func containsRR(rrs []dns.RR, rr dns.RR) bool {
	for _, x := range rrs {
		if x == rr {
			return true
		}
	}
	return false
}

// secureLookup asks for name and qtype with DNSSEC and returns the verdict
// on the answer, from the cache when it has one. Like fetch, concurrent
// callers asking the same question share one lookup, which runs on the
// Resolver's context; ctx bounds only this caller's wait.
func (r *Resolver) secureLookup(ctx context.Context, name string, qtype uint16) (*secSet, error) {
	name = dns.CanonicalName(name)
	key := secKey{name, qtype}
	if set, ok := r.validated.Get(key); ok && r.now().Before(set.expires) {
		return set, nil
	}
	ch := r.flights.DoChan("dnssec\x00"+name+"\x00"+dns.TypeToString[qtype], func() (any, error) {
		owner := strings.TrimSuffix(name, ".")
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return nil, &Error{Kind: Temporary, Name: owner, Msg: "DNS lookup failed: " + owner + ": resolver closed", Err: ErrClosed}
		}
		r.wg.Add(1)
		r.mu.Unlock()
		defer r.wg.Done()

		m, err := r.client.query(r.base, name, qtype, r.dnssec == dnssecValidate)
		r.stats.query(err)
		if err != nil {
			return nil, err
		}
		set, err := r.judge(r.base, m, name, qtype)
		if err != nil {
			return nil, err
		}
		r.validated.Add(key, set)
		return set, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*secSet), nil
	case <-ctx.Done():
		return nil, queryError(name, qtype, []string{"gave up waiting: " + ctx.Err().Error()}, ctx.Err())
	}
}

// judge gives the verdict on the answer m to name and qtype: in trust-ad
// mode its AD bit, in validate mode the signatures of every RRset on the
// way (CNAMEs included) up to the trust anchors. It fails only when a lookup
// the validation needed failed.
func (r *Resolver) judge(ctx context.Context, m *dns.Msg, name string, qtype uint16) (*secSet, error) {
	now := r.now()
	steps, ok := answerChain(m, name, qtype)
	final := steps[len(steps)-1]
	set := &secSet{rrs: final.rrs}
	ttl, haveTTL := uint32(0), false
	for _, st := range steps {
		for _, rr := range st.rrs {
			if t := rr.Header().Ttl; !haveTTL || t < ttl {
				ttl, haveTTL = t, true
			}
		}
	}
	var sigExpires time.Time
	switch {
	case !ok:
		set.status, set.why = secInsecure, "CNAME chain from "+name+" too long, looping or ambiguous"
	case r.dnssec == dnssecTrustAD:
		switch {
		case len(final.rrs) == 0:
			set.status = secNoData
		case m.AuthenticatedData:
			set.status = secSecure
		default:
			set.status, set.why = secInsecure, "answer for "+name+" "+dns.TypeToString[qtype]+" without the AD bit"
		}
	default:
		keys := func(signer string) (*secSet, error) { return r.secureLookup(ctx, signer, dns.TypeDNSKEY) }
		set.status = secSecure
		for _, st := range steps {
			if len(st.rrs) == 0 {
				continue
			}
			var v verdict
			var err error
			if st.rrtype == dns.TypeDNSKEY {
				v, err = r.verifyKeys(ctx, st, now)
			} else {
				v, err = verifyRRset(st, now, keys)
			}
			if err != nil {
				return nil, err
			}
			if v.status > set.status { // secure < insecure < bogus
				set.status, set.why = v.status, v.why
			}
			if v.status == secSecure {
				set.depth = max(set.depth, v.depth)
				if sigExpires.IsZero() || v.expires.Before(sigExpires) {
					sigExpires = v.expires
				}
			}
		}
		if len(final.rrs) == 0 && set.status != secBogus {
			set.status, set.why = secNoData, ""
		}
	}

	switch set.status {
	case secNoData:
		ttl, haveTTL = 0, false
		for _, rr := range m.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				ttl, haveTTL = min(soa.Hdr.Ttl, soa.Minttl), true
			}
		}
		if !haveTTL {
			ttl = failedTTL
		}
	case secBogus:
		ttl = failedTTL
	}
	set.expires = now.Add(clampTTL(ttl, r.minTTL, r.maxTTL))
	if set.status == secSecure && sigExpires.Before(set.expires) {
		set.expires = sigExpires
	}
	return set, nil
}

// verifyKeys validates a zone's DNSKEY RRset (RFC 4035 §5.2): one of its
// keys must match a trust anchor (the root) or a validated DS record of the
// zone, and sign the whole RRset.
func (r *Resolver) verifyKeys(ctx context.Context, st rrStep, now time.Time) (verdict, error) {
	zone := st.owner
	vouchers, depth := r.anchors, 1
	if zone != "." {
		ds, err := r.secureLookup(ctx, zone, dns.TypeDS)
		if err != nil {
			return verdict{}, err
		}
		switch ds.status {
		case secNoData:
			return verdict{status: secInsecure, why: "no DS record for " + zone + ": unsigned or unprovable delegation"}, nil
		case secInsecure:
			return verdict{status: secInsecure, why: "DS of " + zone + ": " + ds.why}, nil
		case secBogus:
			return verdict{status: secBogus, why: "DS of " + zone + ": " + ds.why}, nil
		}
		vouchers, depth = ds.rrs, ds.depth+1
		if depth > maxChainZones {
			return verdict{status: secBogus, why: fmt.Sprintf("%s is more than %d zones below the root", zone, maxChainZones)}, nil
		}
	}
	trusted, supported := trustedKeys(st.rrs, vouchers)
	switch {
	case !supported:
		return verdict{status: secInsecure, why: "the DS records of " + zone + " use no supported algorithm or digest"}, nil
	case len(trusted) == 0 && zone == ".":
		return verdict{status: secBogus, why: "no root DNSKEY matches the trust anchors"}, nil
	case len(trusted) == 0:
		return verdict{status: secBogus, why: "no DNSKEY of " + zone + " matches its DS records"}, nil
	}
	anchored := &secSet{status: secSecure, rrs: trusted, depth: depth}
	return verifyRRset(st, now, func(string) (*secSet, error) { return anchored, nil })
}
