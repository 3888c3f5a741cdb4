// Package internaldns is the relay's DNS responder for its internal face
// (internal.dns_listen). Internal servers resolve every remote domain
// through it and are sent to the relay's internal face: an SRV answer for
// _xmpp-server._tcp.<remote domain> (RFC 6120 §3.2.1, RFC 2782) whose
// target is Target (fedrelay.internal., under the private-use .internal
// top-level domain), which resolves to the internal face's address. An
// operator points the internal servers' resolver here and changes nothing
// else.
//
// Internal domains resolve to their configured routes, so internal servers
// reach each other directly. _xmpps-server (XEP-0368) gets an empty answer:
// the internal face speaks STARTTLS. Every other name is refused: the
// responder is not a resolver, and answering any name with the relay's
// address (as it once did) hid mistakes. An internal server that needs
// other names sends only its S2S lookups here (unbound's forward-zone, a
// stub zone), or gets them from a resolver that forwards those here.
package internaldns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// Responder answers the queries. Fill the fields, then Serve.
type Responder struct {
	// Face is the internal face's address, given as the target of every
	// remote domain.
	Face netip.AddrPort
	// Route returns the route (host:port) of an internal domain and
	// whether the domain is internal.
	Route func(domain string) (string, bool)
	// TTL of the answers, in seconds; short so that configuration changes
	// reach the internal servers quickly. Zero means 60.
	TTL uint32
	// Target is the name given as the SRV target of remote domains
	// (DefaultTarget when empty); it resolves to Face.
	Target string

	mu      sync.Mutex
	servers []*dns.Server
}

// DefaultTarget is the SRV target of remote domains when Target is empty.
const DefaultTarget = "fedrelay.internal."

func (r *Responder) target() string {
	if r.Target == "" {
		return DefaultTarget
	}
	return dns.Fqdn(strings.ToLower(r.Target))
}

// ServeDNS implements dns.Handler.
func (r *Responder) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = false
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	if q.Qclass != dns.ClassINET {
		m.Rcode = dns.RcodeRefused
		w.WriteMsg(m)
		return
	}
	name := strings.ToLower(q.Name)
	if !r.owns(name) {
		m.Authoritative = false
		m.Rcode = dns.RcodeRefused
		w.WriteMsg(m)
		return
	}
	r.answer(m, name, q.Name, q.Qtype)
	if len(m.Answer) == 0 && m.Rcode == dns.RcodeSuccess {
		m.Ns = append(m.Ns, r.soa(q.Name))
	}
	w.WriteMsg(m)
}

func (r *Responder) ttl() uint32 {
	if r.TTL == 0 {
		return 60
	}
	return r.TTL
}

// owns reports whether name (lower case, fully qualified) is answered here:
// the S2S service names of every domain, Target, and the internal domains.
func (r *Responder) owns(name string) bool {
	if strings.HasPrefix(name, "_xmpp-server._tcp.") || strings.HasPrefix(name, "_xmpps-server._tcp.") || name == r.target() {
		return true
	}
	_, internal := r.Route(strings.TrimSuffix(name, "."))
	return internal
}

// dest returns the host address and port a domain leads to.
func (r *Responder) dest(domain string) (netip.Addr, uint16, bool) {
	if route, ok := r.Route(domain); ok {
		ap, err := netip.ParseAddrPort(route)
		if err != nil {
			return netip.Addr{}, 0, false // a route by host name is not ours to answer
		}
		return ap.Addr(), ap.Port(), true
	}
	return r.Face.Addr(), r.Face.Port(), true
}

// answer fills m for name (lower case); the answers' owner is the name as
// asked, since resolvers that randomise its case (DNS 0x20) check it.
func (r *Responder) answer(m *dns.Msg, name, asked string, qtype uint16) {
	hdr := func(n string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: n, Rrtype: t, Class: dns.ClassINET, Ttl: r.ttl()}
	}
	switch {
	case strings.HasPrefix(name, "_xmpp-server._tcp."):
		domain := strings.TrimSuffix(strings.TrimPrefix(name, "_xmpp-server._tcp."), ".")
		if domain == "" || qtype != dns.TypeSRV {
			return
		}
		addr, port, ok := r.dest(domain)
		if !ok {
			m.Rcode = dns.RcodeNameError
			return
		}
		target := dns.Fqdn(domain)
		if _, internal := r.Route(domain); !internal {
			target = r.target()
		}
		m.Answer = append(m.Answer, &dns.SRV{Hdr: hdr(asked, dns.TypeSRV), Priority: 0, Weight: 0, Port: port, Target: target})
		if rr := addrRR(hdr, target, addr); rr != nil {
			m.Extra = append(m.Extra, rr)
		}
	case strings.HasPrefix(name, "_"):
		// _xmpps-server and anything else: the name exists, with no data.
	case name == r.target():
		addr := r.Face.Addr()
		if (qtype == dns.TypeA && (addr.Is4() || addr.Is4In6())) || (qtype == dns.TypeAAAA && addr.Is6() && !addr.Is4In6()) {
			m.Answer = append(m.Answer, addrRR(hdr, asked, addr))
		}
	default: // an internal domain
		domain := strings.TrimSuffix(name, ".")
		addr, _, ok := r.dest(domain)
		if !ok {
			m.Rcode = dns.RcodeNameError
			return
		}
		if (qtype == dns.TypeA && addr.Is4()) || (qtype == dns.TypeAAAA && addr.Is6() && !addr.Is4In6()) {
			m.Answer = append(m.Answer, addrRR(hdr, asked, addr))
		}
	}
}

func addrRR(hdr func(string, uint16) dns.RR_Header, name string, a netip.Addr) dns.RR {
	if a.Is4() || a.Is4In6() {
		return &dns.A{Hdr: hdr(name, dns.TypeA), A: net.IP(a.Unmap().AsSlice())}
	}
	return &dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: net.IP(a.AsSlice())}
}

func (r *Responder) soa(name string) dns.RR {
	return &dns.SOA{
		Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: r.ttl()},
		Ns:  "fedrelay.invalid.", Mbox: "hostmaster.fedrelay.invalid.", Serial: 1,
		Refresh: 3600, Retry: 600, Expire: 86400, Minttl: r.ttl(),
	}
}

// Serve answers on pc (UDP) and l (TCP) until Shutdown. Either may be nil.
func (r *Responder) Serve(pc net.PacketConn, l net.Listener) error {
	errc := make(chan error, 2)
	n := 0
	start := func(s *dns.Server, run func() error) {
		r.mu.Lock()
		r.servers = append(r.servers, s)
		r.mu.Unlock()
		n++
		go func() { errc <- run() }()
	}
	if pc != nil {
		s := &dns.Server{PacketConn: pc, Handler: r}
		start(s, s.ActivateAndServe)
	}
	if l != nil {
		s := &dns.Server{Listener: l, Handler: r}
		start(s, s.ActivateAndServe)
	}
	var first error
	for range n {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Shutdown stops the servers started by Serve.
func (r *Responder) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	servers := r.servers
	r.servers = nil
	r.mu.Unlock()
	var errs []error
	for _, s := range servers {
		if err := s.ShutdownContext(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
