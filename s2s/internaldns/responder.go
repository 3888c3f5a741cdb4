// Package internaldns is the relay's DNS responder for its internal face
// (internal.dns_listen). Internal servers resolve every remote domain
// through it and are sent to the relay's internal face: an SRV answer for
// _xmpp-server._tcp.<remote domain> (RFC 6120 §3.2.1, RFC 2782) whose
// target resolves to the internal face's address. An operator points the
// internal servers' resolver here and changes nothing else.
//
// Internal domains resolve to their configured routes, so internal servers
// reach each other directly. _xmpps-server (XEP-0368) gets an empty answer:
// the internal face speaks STARTTLS.
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

	mu      sync.Mutex
	servers []*dns.Server
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
	r.answer(m, strings.ToLower(q.Name), q.Qtype)
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

// target returns the host address and port a domain leads to.
func (r *Responder) target(domain string) (netip.Addr, uint16, bool) {
	if route, ok := r.Route(domain); ok {
		ap, err := netip.ParseAddrPort(route)
		if err != nil {
			return netip.Addr{}, 0, false // a route by host name is not ours to answer
		}
		return ap.Addr(), ap.Port(), true
	}
	return r.Face.Addr(), r.Face.Port(), true
}

func (r *Responder) answer(m *dns.Msg, name string, qtype uint16) {
	hdr := func(n string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: n, Rrtype: t, Class: dns.ClassINET, Ttl: r.ttl()}
	}
	switch {
	case strings.HasPrefix(name, "_xmpp-server._tcp."):
		domain := strings.TrimSuffix(strings.TrimPrefix(name, "_xmpp-server._tcp."), ".")
		if domain == "" || qtype != dns.TypeSRV {
			return
		}
		addr, port, ok := r.target(domain)
		if !ok {
			m.Rcode = dns.RcodeNameError
			return
		}
		target := dns.Fqdn(domain)
		m.Answer = append(m.Answer, &dns.SRV{Hdr: hdr(name, dns.TypeSRV), Priority: 0, Weight: 0, Port: port, Target: target})
		if rr := addrRR(hdr, target, addr); rr != nil {
			m.Extra = append(m.Extra, rr)
		}
	case strings.HasPrefix(name, "_"):
		// _xmpps-server and anything else: the name exists, with no data.
	default:
		domain := strings.TrimSuffix(name, ".")
		addr, _, ok := r.target(domain)
		if !ok {
			m.Rcode = dns.RcodeNameError
			return
		}
		if (qtype == dns.TypeA && addr.Is4()) || (qtype == dns.TypeAAAA && addr.Is6() && !addr.Is4In6()) {
			m.Answer = append(m.Answer, addrRR(hdr, name, addr))
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
