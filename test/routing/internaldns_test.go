package routing_test

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fedrelay/fedrelay/s2s/internaldns"
	"github.com/fedrelay/fedrelay/test/harness"
)

// TestInternalDNSResponder: internal.dns_listen answers the internal
// servers' queries (s2s/internaldns): every remote domain's
// _xmpp-server._tcp SRV leads to the internal face (target
// fedrelay.internal.), an internal domain's to its configured route,
// _xmpps-server has no records (the internal face speaks STARTTLS), and
// other names are refused. Over UDP and TCP.
func TestInternalDNSResponder(t *testing.T) {
	s := harness.StartSite(t, `internal: {listen: ["$INTERNAL_IP:0"], dns_listen: "$INTERNAL_IP:0"}`, "remote.test")
	if s.Relay.DNSAddr == "" {
		t.Fatal("no internal DNS responder address")
	}
	faceIP, facePort := splitAddr(t, s.Relay.InternalAddr)
	routeIP, routePort := splitAddr(t, s.Internal.Addr)

	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			c := &dns.Client{Net: network, Timeout: 5 * time.Second}
			query := func(name string, qtype uint16) *dns.Msg {
				t.Helper()
				m := new(dns.Msg)
				m.SetQuestion(name, qtype)
				r, _, err := c.Exchange(m, s.Relay.DNSAddr)
				if err != nil {
					t.Fatalf("%s %s: %v", name, dns.TypeToString[qtype], err)
				}
				return r
			}
			srv := func(domain, wantIP string, wantPort uint16) {
				t.Helper()
				r := query("_xmpp-server._tcp."+domain+".", dns.TypeSRV)
				if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
					t.Fatalf("SRV %s: %s", domain, r)
				}
				rr, ok := r.Answer[0].(*dns.SRV)
				if !ok || rr.Port != wantPort {
					t.Errorf("SRV %s: %s, want port %d", domain, r.Answer[0], wantPort)
					return
				}
				var glue string
				for _, x := range r.Extra {
					if a, ok := x.(*dns.A); ok && a.Hdr.Name == rr.Target {
						glue = a.A.String()
					}
				}
				if glue == "" {
					// No glue: the target must resolve here too.
					if a := query(rr.Target, dns.TypeA); len(a.Answer) == 1 {
						glue = a.Answer[0].(*dns.A).A.String()
					}
				}
				if glue != wantIP {
					t.Errorf("SRV %s: target %s is %q, want %s", domain, rr.Target, glue, wantIP)
				}
			}
			srv("remote.test", faceIP, facePort)
			srv("anything.example", faceIP, facePort)
			srv("a.test", routeIP, routePort)

			if r := query("a.test.", dns.TypeA); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != routeIP {
				t.Errorf("A a.test: %s, want %s", r, routeIP)
			}
			if r := query("_xmpps-server._tcp.remote.test.", dns.TypeSRV); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
				t.Errorf("_xmpps-server: %s, want no records", r)
			}
			// The SRV target of remote domains is the responder's own name;
			// every other name is refused, never answered with the relay's
			// address (before, any name was).
			if r := query(internaldns.DefaultTarget, dns.TypeA); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != faceIP {
				t.Errorf("A %s: %s, want %s", internaldns.DefaultTarget, r, faceIP)
			}
			for _, name := range []string{"remote.test.", "www.anything.example.", "google.com."} {
				r := query(name, dns.TypeA)
				for _, rr := range r.Answer {
					if a, ok := rr.(*dns.A); ok && a.A.String() == faceIP {
						t.Errorf("A %s: the relay's address (%s)", name, r)
					}
				}
				if r.Rcode != dns.RcodeRefused {
					t.Errorf("A %s: %s, want REFUSED", name, dns.RcodeToString[r.Rcode])
				}
			}
		})
	}
	s.Relay.WaitBalanced(t)
}

func splitAddr(t *testing.T, addr string) (string, uint16) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return host, uint16(p)
}
