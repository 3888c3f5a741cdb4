//go:build interop

package interop_test

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// publicDNS is the "public" DNS of the test: an authoritative server for
// test. in process, on UDP and TCP. b.test's Prosody, c.test's ejabberd
// (SRV only) and the relay resolve through it.
type publicDNS struct {
	mu      sync.Mutex
	records map[string][]dns.RR // by lower-case owner name
	log     io.Writer
	servers []*dns.Server
}

// newPublicDNS parses the zone, one RR per line in zone-file syntax.
func newPublicDNS(zone string, log io.Writer) (*publicDNS, error) {
	d := &publicDNS{records: map[string][]dns.RR{}, log: log}
	for _, line := range strings.Split(zone, "\n") {
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		rr, err := dns.NewRR(line)
		if err != nil {
			return nil, fmt.Errorf("zone line %q: %w", line, err)
		}
		name := strings.ToLower(rr.Header().Name)
		d.records[name] = append(d.records[name], rr)
	}
	return d, nil
}

// start serves on addr (UDP and TCP) until stop.
func (d *publicDNS) start(addr string) error {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("test DNS: %w", err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		return fmt.Errorf("test DNS: %w", err)
	}
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	d.servers = []*dns.Server{
		{PacketConn: pc, Handler: d, NotifyStartedFunc: notify},
		{Listener: l, Handler: d, NotifyStartedFunc: notify},
	}
	for _, s := range d.servers {
		go s.ActivateAndServe()
	}
	for range d.servers {
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			d.stop()
			return fmt.Errorf("test DNS on %s did not start", addr)
		}
	}
	return nil
}

func (d *publicDNS) stop() {
	for _, s := range d.servers {
		s.Shutdown()
	}
}

// ServeDNS answers from the records: the RRs of the asked type, NXDOMAIN
// for names that do not exist, an empty answer with the SOA for other
// types of existing names, and A records of SRV targets as glue.
func (d *publicDNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	d.mu.Lock()
	recs, exists := d.records[name]
	for _, rr := range recs {
		if rr.Header().Rrtype == q.Qtype || q.Qtype == dns.TypeANY {
			m.Answer = append(m.Answer, dns.Copy(rr))
			if srv, ok := rr.(*dns.SRV); ok {
				for _, g := range d.records[strings.ToLower(srv.Target)] {
					if g.Header().Rrtype == dns.TypeA {
						m.Extra = append(m.Extra, dns.Copy(g))
					}
				}
			}
		}
	}
	d.mu.Unlock()
	switch {
	case !dns.IsSubDomain("test.", name):
		m.Rcode = dns.RcodeRefused
	case !exists && name != "test.":
		m.Rcode = dns.RcodeNameError
	}
	if len(m.Answer) == 0 && m.Rcode != dns.RcodeRefused {
		soa, _ := dns.NewRR("test. 60 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 5")
		m.Ns = []dns.RR{soa}
	}
	fmt.Fprintf(d.log, "%s %s %s %s -> %s, %d answers\n", time.Now().Format("15:04:05.000000"), w.RemoteAddr(),
		q.Name, dns.TypeToString[q.Qtype], dns.RcodeToString[m.Rcode], len(m.Answer))
	w.WriteMsg(m)
}

// remove deletes every record of the owner name.
func (d *publicDNS) remove(name string) {
	d.mu.Lock()
	delete(d.records, strings.ToLower(name))
	d.mu.Unlock()
}

// set replaces the records of the owner name of each line (zone-file
// syntax, all of one name) on the running server.
func (d *publicDNS) set(lines ...string) {
	var rrs []dns.RR
	for _, line := range lines {
		rr, err := dns.NewRR(line)
		if err != nil {
			panic(fmt.Sprintf("zone line %q: %v", line, err))
		}
		rrs = append(rrs, rr)
	}
	name := strings.ToLower(rrs[0].Header().Name)
	d.mu.Lock()
	d.records[name] = rrs
	d.mu.Unlock()
}
