package resolve

import (
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// cacheKey names one cached answer. The service prefix is kept apart from
// the name so that a cached lookup builds no strings.
type cacheKey struct {
	svc   service
	name  string // lower case, without the trailing dot
	qtype uint16
}

// service is the SRV service label prefixed to a domain, or none.
type service uint8

const (
	svcNone  service = iota
	svcXMPPS         // _xmpps-server._tcp.
	svcXMPP          // _xmpp-server._tcp.
)

var servicePrefix = [...]string{svcNone: "", svcXMPPS: "_xmpps-server._tcp.", svcXMPP: "_xmpp-server._tcp."}

// owner is the DNS name asked, without the trailing dot.
func (k cacheKey) owner() string { return servicePrefix[k.svc] + k.name }

// rrset is what the cache keeps of one answer: the records of the type asked
// for, parsed, or the fact that there are none. It is never modified once
// stored.
type rrset struct {
	// nxdomain: the name does not exist. A negative answer without it is
	// NODATA: the name exists, with no records of this type.
	nxdomain bool
	srvs     []srvRecord
	addrs    []netip.Addr
	// glueExpires ends the use of the srvs' glue (A/AAAA records of SRV
	// targets from the additional section), whose TTLs may be shorter than
	// the SRV records'.
	glueExpires time.Time
	secure      bool
	// cacheable is false for a negative answer without an SOA record, which
	// RFC 2308 §5 says not to cache.
	cacheable bool
	expires   time.Time
}

type srvRecord struct {
	target   string // lower case, without the trailing dot; "." itself stays "."
	port     uint16
	priority uint16
	weight   uint16
	glue     glueAddrs // the target's addresses from the additional section
}

// glueAddrs are kept with each SRV record rather than in a map by target: a
// cached answer costs a few bytes of glue, not a map's table (a cache of
// 10,000 domains is 10,000 answers).
type glueAddrs struct {
	addrs []netip.Addr
	known family
}

func (s *rrset) negative() bool { return len(s.srvs) == 0 && len(s.addrs) == 0 }

// ttlAt is how long the answer stays cached after now.
func (s *rrset) ttlAt(now time.Time) time.Duration {
	if !s.cacheable || !now.Before(s.expires) {
		return 0
	}
	return s.expires.Sub(now)
}

// noService reports an SRV answer whose only target is "." (RFC 2782:
// "the service is decidedly not available at this domain").
func (s *rrset) noService() bool {
	if len(s.srvs) == 0 {
		return false
	}
	for _, r := range s.srvs {
		if r.target != "." {
			return false
		}
	}
	return true
}

// parseAnswer turns a NOERROR or NXDOMAIN answer to name/qtype into an
// rrset. TTLs follow the records (the lowest in the set, CNAMEs on the way
// included) or, for a negative answer, the SOA in the authority section:
// the lower of its own TTL and its MINIMUM field (RFC 2308 §5). They are
// then clamped to [minTTL, maxTTL]; maxTTL 0 means no upper bound.
func parseAnswer(m *dns.Msg, name string, qtype uint16, now time.Time, minTTL, maxTTL time.Duration) *rrset {
	set := &rrset{secure: m.AuthenticatedData}
	owner := name
	var ttl uint32
	first := true
	lower := func(t uint32) {
		if first || t < ttl {
			ttl, first = t, false
		}
	}
	// Follow a CNAME chain a recursive resolver put in the answer.
	for range 8 {
		next := ""
		for _, rr := range m.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, owner) {
				next = c.Target
				lower(c.Hdr.Ttl)
				break
			}
		}
		if next == "" {
			break
		}
		owner = next
	}
	for _, rr := range m.Answer {
		h := rr.Header()
		if h.Rrtype != qtype || !strings.EqualFold(h.Name, owner) {
			continue
		}
		switch r := rr.(type) {
		case *dns.SRV:
			set.srvs = append(set.srvs, srvRecord{
				target:   trimDot(r.Target),
				port:     r.Port,
				priority: r.Priority,
				weight:   r.Weight,
			})
		case *dns.A:
			if a, ok := netip.AddrFromSlice(r.A.To4()); ok {
				set.addrs = append(set.addrs, a)
			}
		case *dns.AAAA:
			if a, ok := netip.AddrFromSlice(r.AAAA.To16()); ok {
				set.addrs = append(set.addrs, a)
			}
		default:
			continue
		}
		lower(h.Ttl)
	}

	if set.negative() {
		set.nxdomain = m.Rcode == dns.RcodeNameError
		first = true
		for _, rr := range m.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				lower(min(soa.Hdr.Ttl, soa.Minttl))
				set.cacheable = true
			}
		}
	} else {
		set.cacheable = true
		if qtype == dns.TypeSRV {
			glueTTL := parseGlue(m, set.srvs)
			set.glueExpires = now.Add(clampTTL(glueTTL, minTTL, maxTTL))
		}
	}
	if set.cacheable {
		set.expires = now.Add(clampTTL(ttl, minTTL, maxTTL))
	}
	return set
}

// clampTTL converts a record TTL in seconds and clamps it to [lo, hi]; hi 0
// means no upper bound.
func clampTTL(ttl uint32, lo, hi time.Duration) time.Duration {
	d := time.Duration(ttl) * time.Second
	if d < lo {
		d = lo
	}
	if hi > 0 && d > hi {
		d = hi
	}
	return d
}

// parseGlue collects the addresses of SRV targets given in the additional
// section. They are kept with the SRV answer only, never as answers of their
// own, so that one domain's answer cannot plant addresses for another
// domain's names. It fills each record's glue and returns the glue's lowest
// TTL.
func parseGlue(m *dns.Msg, srvs []srvRecord) uint32 {
	var ttl uint32
	found := false
	for _, rr := range m.Extra {
		var a netip.Addr
		var f family
		switch r := rr.(type) {
		case *dns.A:
			a, _ = netip.AddrFromSlice(r.A.To4())
			f = familyV4
		case *dns.AAAA:
			a, _ = netip.AddrFromSlice(r.AAAA.To16())
			f = familyV6
		default:
			continue
		}
		if !a.IsValid() {
			continue
		}
		name := trimDot(rr.Header().Name)
		for i := range srvs {
			if g := &srvs[i].glue; strings.EqualFold(srvs[i].target, name) {
				if !found {
					found, ttl = true, rr.Header().Ttl
				}
				ttl = min(ttl, rr.Header().Ttl)
				g.addrs = append(g.addrs, a)
				g.known |= f
			}
		}
	}
	return ttl
}

// trimDot turns "host.example." into "host.example" in lower case; the root
// "." stays as it is.
func trimDot(s string) string {
	if s == "." {
		return s
	}
	return strings.ToLower(strings.TrimSuffix(s, "."))
}
