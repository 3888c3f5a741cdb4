package harness

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/fedrelay/fedrelay/s2s/resolve/resolvetest"
)

// DNS is an in-process nameserver for the test domains (UDP and TCP on
// 127.0.0.1), answering from a zone the test changes as it goes: SRV
// records of _xmpp-server._tcp and _xmpps-server._tcp, the A records of
// their targets (also sent as glue), and NXDOMAIN with an SOA for every
// other name. Records have TTL 0, so that a relay configured by StartRelay
// (dns.min_ttl 0s) sees every change at once.
//
// It builds on s2s/resolve/resolvetest, the resolver's own test server, and
// adds the XMPP vocabulary.
type DNS struct {
	srv *resolvetest.Server

	mu      sync.Mutex
	domains map[string][]string // records per XMPP domain, as zone lines
}

// StartDNS starts an empty nameserver, stopped when the test ends.
func StartDNS(t testing.TB) *DNS {
	t.Helper()
	d := &DNS{domains: map[string][]string{}}
	d.srv = resolvetest.NewServer(t, d.zone())
	d.srv.SetGlue(true)
	return d
}

// Addr is the nameserver's host:port, for dns.servers.
func (d *DNS) Addr() string { return d.srv.Addr }

// Server is the underlying test server: query counts, failure switches.
func (d *DNS) Server() *resolvetest.Server { return d.srv }

// SetSRV replaces domain's records with _xmpp-server._tcp (STARTTLS) SRV
// records for targets, given as "ip:port"; the first target has the
// highest priority. A target prefixed "tls://" gets an _xmpps-server._tcp
// (direct TLS, XEP-0368) record instead.
func (d *DNS) SetSRV(t testing.TB, domain string, targets ...string) {
	t.Helper()
	var lines []string
	for i, target := range targets {
		service, addr := "_xmpp-server", target
		if rest, ok := strings.CutPrefix(target, "tls://"); ok {
			service, addr = "_xmpps-server", rest
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil || net.ParseIP(host) == nil {
			t.Fatalf("DNS: target %q is not ip:port", target)
		}
		name := fmt.Sprintf("host%d.%s.", i, domain)
		lines = append(lines,
			fmt.Sprintf("%s._tcp.%s. 0 IN SRV %d 0 %s %s", service, domain, i, port, name),
			fmt.Sprintf("%s 0 IN A %s", name, host))
	}
	d.set(t, domain, lines)
}

// SetNoService gives domain the SRV record "." for _xmpp-server._tcp: the
// domain decidedly offers no S2S service (RFC 2782).
func (d *DNS) SetNoService(t testing.TB, domain string) {
	t.Helper()
	d.set(t, domain, []string{fmt.Sprintf("_xmpp-server._tcp.%s. 0 IN SRV 0 0 0 .", domain)})
}

// Remove deletes every record of domain: it no longer exists (NXDOMAIN).
func (d *DNS) Remove(t testing.TB, domain string) {
	t.Helper()
	d.set(t, domain, nil)
}

func (d *DNS) set(t testing.TB, domain string, lines []string) {
	t.Helper()
	d.mu.Lock()
	if lines == nil {
		delete(d.domains, domain)
	} else {
		d.domains[domain] = lines
	}
	zone := d.zone()
	d.mu.Unlock()
	if err := d.srv.SetZone(zone); err != nil {
		t.Fatalf("DNS: zone: %v\n%s", err, zone)
	}
}

// zone renders the zone; d.mu is held (or d is not shared yet).
func (d *DNS) zone() string {
	lines := []string{"test. 0 IN SOA ns.test. hostmaster.test. 1 60 60 60 0"}
	for _, dom := range slices.Sorted(maps.Keys(d.domains)) {
		lines = append(lines, d.domains[dom]...)
	}
	return strings.Join(lines, "\n") + "\n"
}
