package bench

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Answer is what the bench's nameserver says about one XMPP domain.
type Answer int

const (
	// Serve: _xmpp-server._tcp SRV to the domain's target, and its A record.
	Serve Answer = iota
	// NXDomain: the domain does not exist (every question).
	NXDomain
	// Silent: no answer at all, the resolver must time out.
	Silent
)

// Zone entry: how a domain answers and where its S2S service is.
type entry struct {
	answer Answer
	ip     net.IP
	port   uint16
}

// Nameserver is the bench's DNS server (UDP and TCP): it gives the relay
// SRV records for the generated domains, as public DNS would, and counts the
// questions asked about each domain.
type Nameserver struct {
	Addr string

	mu      sync.RWMutex
	zone    map[string]entry
	lookup  func(domain string) (Answer, string, bool) // for domains not in zone
	queries sync.Map                                   // domain → *atomic.Int64
	total   atomic.Int64
	servers []*dns.Server
}

// StartNameserver serves on addr (host:port, UDP and TCP).
func StartNameserver(addr string) (*Nameserver, error) {
	ns := &Nameserver{Addr: addr, zone: map[string]entry{}}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		return nil, err
	}
	udp := &dns.Server{PacketConn: pc, Handler: ns}
	tcp := &dns.Server{Listener: l, Handler: ns}
	ns.servers = []*dns.Server{udp, tcp}
	started := make(chan struct{}, 2)
	udp.NotifyStartedFunc = func() { started <- struct{}{} }
	tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	<-started
	<-started
	return ns, nil
}

// Close stops the server.
func (ns *Nameserver) Close() {
	for _, s := range ns.servers {
		s.Shutdown()
	}
}

// Set makes domain answer a, with its S2S service at target (host:port)
// when a is Serve.
func (ns *Nameserver) Set(domain string, a Answer, target string) error {
	e := entry{answer: a}
	if a == Serve {
		host, port, err := net.SplitHostPort(target)
		if err != nil {
			return err
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return err
		}
		e.ip, e.port = net.ParseIP(host).To4(), uint16(p)
		if e.ip == nil {
			return fmt.Errorf("nameserver: %q is not an IPv4 address", host)
		}
	}
	ns.mu.Lock()
	ns.zone[strings.ToLower(domain)] = e
	ns.mu.Unlock()
	return nil
}

// SetLookup answers domains that Set did not name: fn returns the answer
// and target, or false for NXDOMAIN.
func (ns *Nameserver) SetLookup(fn func(domain string) (Answer, string, bool)) {
	ns.mu.Lock()
	ns.lookup = fn
	ns.mu.Unlock()
}

func (ns *Nameserver) find(domain string) (entry, bool) {
	ns.mu.RLock()
	e, ok := ns.zone[domain]
	fn := ns.lookup
	ns.mu.RUnlock()
	if ok || fn == nil {
		return e, ok
	}
	a, target, ok := fn(domain)
	if !ok {
		return e, false
	}
	e.answer = a
	if a == Serve {
		host, port, err := net.SplitHostPort(target)
		if err != nil {
			return e, false
		}
		p, _ := strconv.ParseUint(port, 10, 16)
		e.ip, e.port = net.ParseIP(host).To4(), uint16(p)
	}
	return e, true
}

// Queries returns how many questions named domain (its SRV names and its
// target's A record included).
func (ns *Nameserver) Queries(domain string) int64 {
	if c, ok := ns.queries.Load(strings.ToLower(domain)); ok {
		return c.(*atomic.Int64).Load()
	}
	return 0
}

// Total is the number of questions received.
func (ns *Nameserver) Total() int64 { return ns.total.Load() }

// targetLabel prefixes the SRV target name made for each domain.
const targetLabel = "s2s-target."

// ServeDNS implements dns.Handler.
func (ns *Nameserver) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(strings.TrimSuffix(q.Name, "."))
	domain, srvKind := name, ""
	for _, p := range []string{"_xmpp-server._tcp.", "_xmpps-server._tcp."} {
		if strings.HasPrefix(name, p) {
			domain, srvKind = name[len(p):], p
		}
	}
	target := false
	if strings.HasPrefix(domain, targetLabel) {
		domain, target = domain[len(targetLabel):], true
	}
	ns.total.Add(1)
	c, _ := ns.queries.LoadOrStore(domain, new(atomic.Int64))
	c.(*atomic.Int64).Add(1)

	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	e, ok := ns.find(domain)
	switch {
	case !ok || e.answer == NXDomain:
		m.Rcode = dns.RcodeNameError
	case e.answer == Silent:
		return
	case srvKind == "_xmpp-server._tcp." && q.Qtype == dns.TypeSRV:
		tname := targetLabel + domain + "."
		m.Answer = append(m.Answer, &dns.SRV{
			Hdr:      dns.RR_Header{Name: q.Name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 300},
			Priority: 0, Weight: 0, Port: e.port, Target: tname,
		})
		m.Extra = append(m.Extra, &dns.A{Hdr: dns.RR_Header{Name: tname, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: e.ip})
	case target && q.Qtype == dns.TypeA:
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: e.ip})
	default:
		// _xmpps-server, AAAA, A of the domain itself: the name exists
		// with no record of that type.
		m.Ns = append(m.Ns, &dns.SOA{Hdr: dns.RR_Header{Name: "bench.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
			Ns: "ns.bench.", Mbox: "root.bench.", Serial: uint32(time.Now().Unix()), Refresh: 60, Retry: 60, Expire: 60, Minttl: 60})
	}
	w.WriteMsg(m)
}
