package resolve

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzParseAnswer: whatever a nameserver answers (any message that
// unpacks), parseAnswer keeps only records of the asked type owned by the
// asked name (after at most 8 CNAMEs), in lower case, never caches for
// longer than max_ttl nor shorter than min_ttl, and what it builds orders
// into candidates without panicking.
func FuzzParseAnswer(f *testing.F) {
	seed := func(build func(m *dns.Msg)) {
		m := new(dns.Msg)
		m.SetQuestion("_xmpp-server._tcp.example.org.", dns.TypeSRV)
		build(m)
		if b, err := m.Pack(); err == nil {
			f.Add(b)
		}
	}
	seed(func(m *dns.Msg) {
		srv, _ := dns.NewRR("_xmpp-server._tcp.example.org. 300 IN SRV 5 10 5269 xmpp.Example.org.")
		glue, _ := dns.NewRR("xmpp.example.org. 60 IN A 192.0.2.10")
		m.Answer, m.Extra = []dns.RR{srv}, []dns.RR{glue}
	})
	seed(func(m *dns.Msg) {
		c, _ := dns.NewRR("_xmpp-server._tcp.example.org. 30 IN CNAME _x._tcp.other.example.")
		srv, _ := dns.NewRR("_x._tcp.other.example. 300 IN SRV 0 0 0 .")
		m.Answer = []dns.RR{c, srv}
	})
	seed(func(m *dns.Msg) {
		soa, _ := dns.NewRR("example.org. 3600 IN SOA ns.example.org. h.example.org. 1 60 60 60 5")
		m.Rcode, m.Ns = dns.RcodeNameError, []dns.RR{soa}
	})
	const minTTL, maxTTL = 30 * time.Second, time.Hour
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw []byte) {
		m := new(dns.Msg)
		if err := m.Unpack(raw); err != nil {
			return
		}
		for _, qtype := range []uint16{dns.TypeSRV, dns.TypeA, dns.TypeAAAA} {
			set := parseAnswer(m, "_xmpp-server._tcp.example.org.", qtype, now, minTTL, maxTTL)
			if set.cacheable {
				if ttl := set.expires.Sub(now); ttl < minTTL || ttl > maxTTL {
					t.Fatalf("cached for %v, outside [%v, %v]", ttl, minTTL, maxTTL)
				}
			}
			for _, s := range set.srvs {
				if s.target != "." && (strings.HasSuffix(s.target, ".") || s.target != strings.ToLower(s.target)) {
					t.Fatalf("SRV target %q not in normal form", s.target)
				}
			}
			if qtype != dns.TypeSRV && len(set.srvs) > 0 || qtype == dns.TypeSRV && len(set.addrs) > 0 {
				t.Fatalf("records of another type kept for %s", dns.TypeToString[qtype])
			}
			if qtype == dns.TypeSRV {
				r := &Resolver{}
				_ = r.candidates(set.srvs, set, nil, nil, now)
			}
		}
	})
}
