// Package resolvetest runs small in-process DNS servers on 127.0.0.1 for
// tests of SRV resolution: a zone given as master-file text, answered over
// UDP and TCP, with switches for the failures a resolver must handle
// (SERVFAIL, truncation, glue, DNSSEC-authenticated answers, slowness) and a
// count of every query received; and DNSSEC-signed test zones (Zone) whose
// records and signatures the servers serve.
package resolvetest

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Query identifies a question the server received.
type Query struct {
	Name string // lower-case, fully qualified ("_xmpp-server._tcp.example.org.")
	Type uint16 // dns.TypeSRV, dns.TypeA, ...
	Net  string // "udp" or "tcp"
}

type rrKey struct {
	name  string
	qtype uint16
}

// Server is a DNS server for one or more test zones. Names are matched
// case-insensitively. A name that owns records of another type gets NOERROR
// with no answer (NODATA); any other name gets NXDOMAIN. Both carry the SOA
// of the closest enclosing zone in the authority section, so that negative
// answers are cacheable (RFC 2308).
type Server struct {
	// Addr is the host:port the server listens on, over UDP and TCP.
	Addr string

	udp, tcp *dns.Server

	mu       sync.Mutex
	rrs      map[rrKey][]dns.RR
	names    map[string]bool
	soas     []*dns.SOA
	glue     bool
	secure   bool
	delay    time.Duration
	servfail map[string]bool
	truncate map[string]bool
	queries  map[Query]int
	last     *dns.Msg
}

// NewServer starts a server answering from zone, master-file text with
// absolute owner names (or an $ORIGIN line). The server stops when the test
// ends.
func NewServer(t testing.TB, zone string) *Server {
	t.Helper()
	s := &Server{
		servfail: map[string]bool{},
		truncate: map[string]bool{},
		queries:  map[Query]int{},
	}
	if err := s.SetZone(zone); err != nil {
		t.Fatalf("resolvetest: zone: %v", err)
	}
	pc, ln := listenPair(t)
	s.Addr = pc.LocalAddr().String()
	s.udp = s.start(t, &dns.Server{PacketConn: pc})
	s.tcp = s.start(t, &dns.Server{Listener: ln})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.udp.ShutdownContext(ctx)
		s.tcp.ShutdownContext(ctx)
	})
	return s
}

func (s *Server) start(t testing.TB, srv *dns.Server) *dns.Server {
	started := make(chan struct{})
	srv.Handler = s
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("resolvetest: server did not start")
	}
	return srv
}

// SetZone replaces every record the server holds.
func (s *Server) SetZone(zone string) error {
	var all []dns.RR
	zp := dns.NewZoneParser(strings.NewReader(zone), ".", "")
	zp.SetDefaultTTL(300)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		all = append(all, rr)
	}
	if err := zp.Err(); err != nil {
		return err
	}
	s.SetRecords(all)
	return nil
}

// SetRecords replaces every record the server holds with copies of rrs,
// as SetZone does with master-file text. RRSIG records are served beside
// the RRsets they cover when a query sets the DO bit (see Zone.Sign).
func (s *Server) SetRecords(all []dns.RR) {
	rrs := map[rrKey][]dns.RR{}
	names := map[string]bool{}
	var soas []*dns.SOA
	for _, rr := range all {
		rr = dns.Copy(rr)
		h := rr.Header()
		h.Name = strings.ToLower(h.Name)
		k := rrKey{h.Name, h.Rrtype}
		rrs[k] = append(rrs[k], rr)
		// Every ancestor of an owner name exists (empty non-terminals).
		for n := h.Name; n != "."; n = parent(n) {
			names[n] = true
		}
		if soa, ok := rr.(*dns.SOA); ok {
			soas = append(soas, soa)
		}
	}
	s.mu.Lock()
	s.rrs, s.names, s.soas = rrs, names, soas
	s.mu.Unlock()
}

func parent(name string) string {
	if i := strings.IndexByte(name, '.'); i >= 0 && i+1 < len(name) {
		return name[i+1:]
	}
	return "."
}

// SetGlue makes answers to SRV queries carry the targets' A and AAAA records
// in the additional section, as many servers do.
func (s *Server) SetGlue(on bool) { s.mu.Lock(); s.glue = on; s.mu.Unlock() }

// SetSecure sets the AD bit on every answer, as a validating resolver does
// for DNSSEC-signed zones.
func (s *Server) SetSecure(on bool) { s.mu.Lock(); s.secure = on; s.mu.Unlock() }

// SetDelay holds every answer for d before sending it.
func (s *Server) SetDelay(d time.Duration) { s.mu.Lock(); s.delay = d; s.mu.Unlock() }

// ServFail makes every question for name answer SERVFAIL.
func (s *Server) ServFail(name string) {
	s.mu.Lock()
	s.servfail[dns.CanonicalName(name)] = true
	s.mu.Unlock()
}

// TruncateUDP makes UDP answers for name empty with the TC bit set, so that
// a client must ask again over TCP.
func (s *Server) TruncateUDP(name string) {
	s.mu.Lock()
	s.truncate[dns.CanonicalName(name)] = true
	s.mu.Unlock()
}

// Count returns how many questions for name and qtype arrived, over both
// transports.
func (s *Server) Count(name string, qtype uint16) int {
	return s.CountNet(name, qtype, "udp") + s.CountNet(name, qtype, "tcp")
}

// CountNet returns how many questions for name and qtype arrived over
// network ("udp" or "tcp").
func (s *Server) CountNet(name string, qtype uint16, network string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[Query{dns.CanonicalName(name), qtype, network}]
}

// Total returns how many questions arrived altogether.
func (s *Server) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.queries {
		n += c
	}
	return n
}

// Queries returns a copy of the query counts.
func (s *Server) Queries() map[Query]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[Query]int, len(s.queries))
	for q, n := range s.queries {
		out[q] = n
	}
	return out
}

// LastQuery returns a copy of the last query received, nil before the
// first.
func (s *Server) LastQuery() *dns.Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		return nil
	}
	return s.last.Copy()
}

// ResetCounts forgets the queries counted so far.
func (s *Server) ResetCounts() {
	s.mu.Lock()
	s.queries = map[Query]int{}
	s.mu.Unlock()
}

// ServeDNS answers one query; it implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	network := "udp"
	if _, ok := w.LocalAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}

	do := false
	if opt := r.IsEdns0(); opt != nil {
		do = opt.Do()
	}

	s.mu.Lock()
	s.queries[Query{name, q.Qtype, network}]++
	s.last = r.Copy()
	delay := s.delay
	s.fill(m, name, q.Qtype, network, do)
	s.mu.Unlock()

	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), opt.Do())
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	w.WriteMsg(m)
}

// fill builds the answer; s.mu is held. A CNAME at the name asked is
// followed, as a recursive resolver does, for up to 8 steps.
func (s *Server) fill(m *dns.Msg, name string, qtype uint16, network string, do bool) {
	switch {
	case s.servfail[name]:
		m.Rcode = dns.RcodeServerFailure
		return
	case s.truncate[name] && network == "udp":
		m.Truncated = true
		return
	}
	m.AuthenticatedData = s.secure
	for range 8 {
		if len(s.rrs[rrKey{name, qtype}]) > 0 || qtype == dns.TypeCNAME {
			break
		}
		cname := s.rrs[rrKey{name, dns.TypeCNAME}]
		if len(cname) == 0 {
			break
		}
		s.answer(m, name, dns.TypeCNAME, do)
		name = strings.ToLower(cname[0].(*dns.CNAME).Target)
	}
	if ans := s.rrs[rrKey{name, qtype}]; len(ans) > 0 {
		s.answer(m, name, qtype, do)
		if s.glue && qtype == dns.TypeSRV {
			for _, rr := range ans {
				target := strings.ToLower(rr.(*dns.SRV).Target)
				for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
					for _, g := range s.rrs[rrKey{target, t}] {
						m.Extra = append(m.Extra, dns.Copy(g))
					}
				}
			}
		}
		return
	}
	if !s.names[name] {
		m.Rcode = dns.RcodeNameError
	}
	if soa := s.soaFor(name); soa != nil {
		m.Ns = append(m.Ns, dns.Copy(soa))
	}
}

// answer appends the RRset of name and qtype to the answer section, with
// the RRSIGs over it when do is set.
func (s *Server) answer(m *dns.Msg, name string, qtype uint16, do bool) {
	for _, rr := range s.rrs[rrKey{name, qtype}] {
		m.Answer = append(m.Answer, dns.Copy(rr))
	}
	if !do {
		return
	}
	for _, rr := range s.rrs[rrKey{name, dns.TypeRRSIG}] {
		if rr.(*dns.RRSIG).TypeCovered == qtype {
			m.Answer = append(m.Answer, dns.Copy(rr))
		}
	}
}

// soaFor returns the SOA of the closest zone enclosing name.
func (s *Server) soaFor(name string) dns.RR {
	var best *dns.SOA
	for _, soa := range s.soas {
		if dns.IsSubDomain(soa.Hdr.Name, name) && (best == nil || len(soa.Hdr.Name) > len(best.Hdr.Name)) {
			best = soa
		}
	}
	if best == nil {
		return nil
	}
	return best
}

// NewSilentServer returns the address of a UDP and TCP endpoint on
// 127.0.0.1 that accepts queries and never answers, for timeout tests. It
// stops when the test ends.
func NewSilentServer(t testing.TB) string {
	t.Helper()
	pc, ln := listenPair(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65535)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		ln.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return pc.LocalAddr().String()
}

// listenPair opens a UDP socket and a TCP listener on the same port of
// 127.0.0.1, so that one address serves both transports.
func listenPair(t testing.TB) (net.PacketConn, net.Listener) {
	t.Helper()
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("resolvetest: %v", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln
		}
		pc.Close() // the TCP port was taken: try another number
		lastErr = err
	}
	t.Fatalf("resolvetest: %v", lastErr)
	return nil, nil
}
