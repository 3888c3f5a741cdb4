package resolve_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/s2s/resolve"
	"github.com/fedrelay/fedrelay/s2s/resolve/resolvetest"
)

// zone covers the resolution cases. Its SOA has TTL 120 and MINIMUM 60, so
// negative answers are cached for 60 s (RFC 2308: the lower of the two).
const zone = `
$ORIGIN test.
@                              120 SOA ns.test. admin.test. 1 7200 3600 1209600 60

; Both SRV sets, several priorities and weights.
_xmpps-server._tcp.mixed       300 SRV 10 60 5270 tls1.mixed.test.
_xmpps-server._tcp.mixed       300 SRV 20 1 5270 tls2.mixed.test.
_xmpp-server._tcp.mixed        300 SRV 10 30 5269 tcp1.mixed.test.
_xmpp-server._tcp.mixed        300 SRV 10 10 5269 tcp2.mixed.test.
_xmpp-server._tcp.mixed        300 SRV 10 0 5269 tcp0.mixed.test.
_xmpp-server._tcp.mixed        300 SRV 30 5 5269 tcp3.mixed.test.

; "." for _xmpp-server: no S2S service at all.
_xmpp-server._tcp.noservice    300 SRV 0 0 0 .
_xmpps-server._tcp.noservice   300 SRV 0 0 5270 xmpp.noservice.test.
noservice                      300 A 192.0.2.1

; "." for _xmpps-server: STARTTLS only.
_xmpps-server._tcp.notls       300 SRV 0 0 0 .
_xmpp-server._tcp.notls        300 SRV 5 0 5269 xmpp.notls.test.
notls                          300 A 192.0.2.2

; "." for _xmpps-server and no _xmpp-server: no service, no fallback.
_xmpps-server._tcp.tlsdot      300 SRV 0 0 0 .
tlsdot                         300 A 192.0.2.3

; No SRV at all: A/AAAA fallback.
plain                          300 A 192.0.2.4
plain                          300 AAAA 2001:db8::4

; Exists, but neither SRV nor addresses.
txtonly                        300 TXT "nothing here"

; Short TTLs, below min_ttl.
_xmpp-server._tcp.short        5 SRV 0 0 5269 xmpp.short.test.

; Glue for the SRV target.
_xmpp-server._tcp.glued        300 SRV 0 0 5269 xmpp.glued.test.
xmpp.glued                     300 A 127.0.0.1
xmpp.glued                     300 AAAA ::1

; Only an A record as glue.
_xmpp-server._tcp.halfglued    300 SRV 0 0 5269 xmpp.halfglued.test.
xmpp.halfglued                 300 A 127.0.0.1

; Internationalised: ünïcode.test.
_xmpp-server._tcp.xn--ncode-cta3g 300 SRV 0 0 5269 xmpp.xn--ncode-cta3g.test.

; SERVFAIL for one SRV name, records for the other.
_xmpps-server._tcp.halfbroken  300 SRV 0 0 5270 xmpp.halfbroken.test.

; Truncated over UDP.
_xmpp-server._tcp.big          300 SRV 0 0 5269 xmpp.big.test.
`

func newZoneServer(t testing.TB) *resolvetest.Server {
	s := resolvetest.NewServer(t, zone)
	s.ServFail("_xmpp-server._tcp.broken.test.")
	s.ServFail("_xmpps-server._tcp.broken.test.")
	s.ServFail("_xmpp-server._tcp.halfbroken.test.")
	s.TruncateUDP("_xmpp-server._tcp.big.test.")
	return s
}

func lines(cs []resolve.Candidate) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.String()
	}
	return out
}

func TestLookup(t *testing.T) {
	srv := newZoneServer(t)
	tests := []struct {
		domain string
		want   []string
	}{
		{"notls.test", []string{"5 0 xmpp.notls.test:5269 starttls ttl=300 dnssec=no"}},
		{"plain.test", []string{"0 0 plain.test:5269 starttls ttl=300 dnssec=no"}},
		{"Plain.Test.", []string{"0 0 plain.test:5269 starttls ttl=300 dnssec=no"}},
		{"short.test", []string{"0 0 xmpp.short.test:5269 starttls ttl=30 dnssec=no"}}, // clamped to min_ttl
		{"ünïcode.test", []string{"0 0 xmpp.xn--ncode-cta3g.test:5269 starttls ttl=300 dnssec=no"}},
		{"halfbroken.test", []string{"0 0 xmpp.halfbroken.test:5270 directtls ttl=300 dnssec=no"}},
		{"big.test", []string{"0 0 xmpp.big.test:5269 starttls ttl=300 dnssec=no"}},
		{"192.0.2.9", []string{"0 0 192.0.2.9:5269 starttls ttl=0 dnssec=no"}},
		{"[2001:db8::9]", []string{"0 0 [2001:db8::9]:5269 starttls ttl=0 dnssec=no"}},
	}
	for _, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			r := newResolver(t, dnsConfig(srv.Addr), resolve.Options{Now: newClock().Now})
			cs, err := r.Lookup(context.Background(), tt.domain)
			if err != nil {
				t.Fatal(err)
			}
			if got := lines(cs); !slices.Equal(got, tt.want) {
				t.Errorf("Lookup(%q) =\n%s\nwant\n%s", tt.domain, strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestLookupFallbackAddrs(t *testing.T) {
	srv := newZoneServer(t)
	r := newResolver(t, dnsConfig(srv.Addr), resolve.Options{})
	cs, err := r.Lookup(context.Background(), "plain.test")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{netip.MustParseAddr("2001:db8::4"), netip.MustParseAddr("192.0.2.4")}
	if len(cs) != 1 || cs[0].Source != resolve.FromFallback || !slices.Equal(cs[0].Addrs, want) {
		t.Fatalf("Lookup(plain.test) = %+v, want one fallback candidate with %v", cs, want)
	}
}

func TestLookupErrors(t *testing.T) {
	srv := newZoneServer(t)
	tests := []struct {
		domain string
		kind   resolve.Kind
		is     error
		msg    string
	}{{
		domain: "noservice.test",
		kind:   resolve.NoService,
		is:     resolve.ErrNoService,
		msg:    `no S2S service: _xmpp-server._tcp.noservice.test has target "."`,
	}, {
		domain: "tlsdot.test",
		kind:   resolve.NoService,
		is:     resolve.ErrNotFound,
		msg:    `no S2S service: _xmpps-server._tcp.tlsdot.test has target "." and _xmpp-server._tcp.tlsdot.test has no records`,
	}, {
		domain: "nowhere.test",
		kind:   resolve.NotFound,
		is:     resolve.ErrNotFound,
		msg:    "domain not found: nowhere.test has no _xmpp-server or _xmpps-server SRV records and does not exist (NXDOMAIN)",
	}, {
		domain: "txtonly.test",
		kind:   resolve.NotFound,
		is:     resolve.ErrNotFound,
		msg:    "domain not found: txtonly.test has no _xmpp-server or _xmpps-server SRV records and has no A or AAAA records",
	}, {
		domain: "broken.test",
		kind:   resolve.Temporary,
		is:     resolve.ErrTemporary,
		msg:    "DNS lookup failed: _xmpp-server._tcp.broken.test SRV: " + srv.Addr + ": SERVFAIL",
	}, {
		domain: "bad..name",
		kind:   resolve.NotFound,
		is:     resolve.ErrNotFound,
		msg:    `invalid domain "bad..name": `,
	}}
	for _, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			r := newResolver(t, dnsConfig(srv.Addr), resolve.Options{})
			cs, err := r.Lookup(context.Background(), tt.domain)
			if err == nil {
				t.Fatalf("Lookup(%q) = %v, want an error", tt.domain, lines(cs))
			}
			if k := resolve.KindOf(err); k != tt.kind {
				t.Errorf("KindOf = %v, want %v", k, tt.kind)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
			if tt.kind != resolve.Temporary && errors.Is(err, resolve.ErrTemporary) {
				t.Errorf("%v is also ErrTemporary", err)
			}
			if tt.kind == resolve.Temporary && errors.Is(err, resolve.ErrNotFound) {
				t.Errorf("%v is also ErrNotFound", err)
			}
			if !strings.HasPrefix(err.Error(), tt.msg) || strings.Contains(err.Error(), "\n") {
				t.Errorf("message %q, want one line starting %q", err, tt.msg)
			}
		})
	}
}

// "." for _xmpps-server must not lead to the A/AAAA fallback.
func TestLookupNoFallbackAfterDot(t *testing.T) {
	srv := newZoneServer(t)
	r := newResolver(t, dnsConfig(srv.Addr), resolve.Options{})
	if _, err := r.Lookup(context.Background(), "tlsdot.test"); !errors.Is(err, resolve.ErrNoService) {
		t.Fatalf("err = %v, want ErrNoService", err)
	}
	if n := srv.Count("tlsdot.test.", dns.TypeA) + srv.Count("tlsdot.test.", dns.TypeAAAA); n != 0 {
		t.Errorf("%d address queries for tlsdot.test, want none", n)
	}
	if _, err := r.Lookup(context.Background(), "noservice.test"); !errors.Is(err, resolve.ErrNoService) {
		t.Fatalf("err = %v, want ErrNoService", err)
	}
	if n := srv.Count("noservice.test.", dns.TypeA) + srv.Count("noservice.test.", dns.TypeAAAA); n != 0 {
		t.Errorf("%d address queries for noservice.test, want none", n)
	}
}

// TestLookupOrderDistribution checks RFC 2782 ordering over many lookups:
// priorities strictly in order, and within priority 10 the first pick
// distributed as weight/(total+1), the weight-0 record taking the draws of 0.
func TestLookupOrderDistribution(t *testing.T) {
	srv := newZoneServer(t)
	r := newResolver(t, dnsConfig(srv.Addr), resolve.Options{IntN: seeded(42)})
	const runs = 20000
	first := map[string]int{}
	for range runs {
		cs, err := r.Lookup(context.Background(), "mixed.test")
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) != 6 {
			t.Fatalf("%d candidates, want 6", len(cs))
		}
		var group []string
		for _, c := range cs[:4] {
			if c.Priority != 10 {
				t.Fatalf("order %v: priority 10 records must come first", lines(cs))
			}
			group = append(group, c.Host)
		}
		slices.Sort(group)
		if !slices.Equal(group, []string{"tcp0.mixed.test", "tcp1.mixed.test", "tcp2.mixed.test", "tls1.mixed.test"}) {
			t.Fatalf("priority 10 group %v", group)
		}
		if cs[4].Host != "tls2.mixed.test" || cs[4].Mode != resolve.DirectTLS || cs[5].Host != "tcp3.mixed.test" || cs[5].Mode != resolve.StartTLS {
			t.Fatalf("order %v: then tls2 (directtls, 20), tcp3 (starttls, 30)", lines(cs))
		}
		first[cs[0].Host]++
	}
	if n := srv.Total(); n != 2 {
		t.Errorf("%d queries for %d lookups, want 2 (then cached)", n, runs)
	}
	t.Logf("first picks in %d lookups: %v", runs, first)
	for host, w := range map[string]float64{"tls1.mixed.test": 60, "tcp1.mixed.test": 30, "tcp2.mixed.test": 10, "tcp0.mixed.test": 1} {
		want := runs * w / 101
		// ±6 standard deviations of a binomial count: with a fixed seed
		// this is exact anyway; the margin only tolerates another PRNG.
		sd := math.Sqrt(runs * (w / 101) * (1 - w/101))
		if got := float64(first[host]); got < want-6*sd || got > want+6*sd {
			t.Errorf("%s first %v times in %d, want %.0f ± %.0f", host, got, runs, want, 6*sd)
		}
	}
}

func TestLookupModes(t *testing.T) {
	srv := newZoneServer(t)
	r := newResolver(t, dnsConfig(srv.Addr), resolve.Options{})
	cs, err := r.Lookup(context.Background(), "mixed.test")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		want := resolve.StartTLS
		if strings.HasPrefix(c.Host, "tls") {
			want = resolve.DirectTLS
		}
		if c.Mode != want || c.Source != resolve.FromSRV {
			t.Errorf("%s: mode %v source %v, want %v from SRV", c.Host, c.Mode, c.Source, want)
		}
	}
}

// The query carries EDNS0 with 1232 bytes and the DO bit; the AD bit of the
// answer becomes Candidate.Secure.
func TestLookupDNSSECFlags(t *testing.T) {
	srv := newZoneServer(t)
	srv.SetSecure(true)
	r := newResolver(t, dnsConfig(srv.Addr), resolve.Options{})
	cs, err := r.Lookup(context.Background(), "notls.test")
	if err != nil {
		t.Fatal(err)
	}
	if !cs[0].Secure || !strings.HasSuffix(cs[0].String(), "dnssec=yes") {
		t.Errorf("candidate %v: want Secure from the AD bit", cs[0])
	}
	q := srv.LastQuery()
	opt := q.IsEdns0()
	if opt == nil || !opt.Do() || opt.UDPSize() != 1232 || !q.RecursionDesired {
		t.Errorf("query %v: want RD, EDNS0 with 1232 bytes and DO", q)
	}
}

func TestLookupTruncatedRetriesTCP(t *testing.T) {
	srv := newZoneServer(t)
	r := newResolver(t, dnsConfig(srv.Addr), resolve.Options{})
	if _, err := r.Lookup(context.Background(), "big.test"); err != nil {
		t.Fatal(err)
	}
	name := "_xmpp-server._tcp.big.test."
	if u, c := srv.CountNet(name, dns.TypeSRV, "udp"), srv.CountNet(name, dns.TypeSRV, "tcp"); u != 1 || c != 1 {
		t.Errorf("%d UDP and %d TCP queries, want 1 and 1", u, c)
	}
}

func TestLookupTimeout(t *testing.T) {
	silent := resolvetest.NewSilentServer(t)
	cfg := dnsConfig(silent)
	cfg.Timeout = 50 * time.Millisecond
	cfg.Retries = 1
	r := newResolver(t, cfg, resolve.Options{})
	start := time.Now()
	_, err := r.Lookup(context.Background(), "example.test")
	elapsed := time.Since(start)
	if !errors.Is(err, resolve.ErrTemporary) || resolve.KindOf(err) != resolve.Temporary {
		t.Fatalf("err = %v, want ErrTemporary", err)
	}
	want := fmt.Sprintf("DNS lookup timed out: _xmpp-server._tcp.example.test SRV: %s: no answer (2 times)", silent)
	if err.Error() != want {
		t.Errorf("message\n%s\nwant\n%s", err, want)
	}
	// Two rounds of 50 ms, the two SRV names in parallel.
	if elapsed < 100*time.Millisecond || elapsed > 2*time.Second {
		t.Errorf("took %v, want about 100ms", elapsed)
	}
}

// The caller's context bounds its wait, whatever the DNS timeouts.
func TestLookupContextDeadline(t *testing.T) {
	silent := resolvetest.NewSilentServer(t)
	cfg := dnsConfig(silent)
	cfg.Timeout = time.Second
	r := newResolver(t, cfg, resolve.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.Lookup(ctx, "example.test")
	if !errors.Is(err, resolve.ErrTemporary) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrTemporary and DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("took %v after a 50ms deadline", d)
	}
	// Close cancels the queries still in flight and waits for them.
	r.Close()
}

func TestLookupNextServer(t *testing.T) {
	srv := newZoneServer(t)
	silent := resolvetest.NewSilentServer(t)
	failing := resolvetest.NewServer(t, "")
	failing.ServFail("_xmpp-server._tcp.notls.test.")
	failing.ServFail("_xmpps-server._tcp.notls.test.")
	cfg := dnsConfig(silent, failing.Addr, srv.Addr)
	cfg.Timeout = 50 * time.Millisecond
	r := newResolver(t, cfg, resolve.Options{})
	cs, err := r.Lookup(context.Background(), "notls.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Host != "xmpp.notls.test" {
		t.Errorf("Lookup = %v", lines(cs))
	}
	if n := failing.Count("_xmpp-server._tcp.notls.test.", dns.TypeSRV); n != 1 {
		t.Errorf("%d queries to the failing server, want 1", n)
	}
}

func TestCacheExpiry(t *testing.T) {
	srv := newZoneServer(t)
	clk := newClock()
	r := newResolver(t, dnsConfig(srv.Addr), resolve.Options{Now: clk.Now})
	ctx := context.Background()
	srvName := "_xmpp-server._tcp.notls.test."

	lookup := func(wantTTL string) {
		t.Helper()
		cs, err := r.Lookup(ctx, "notls.test")
		if err != nil {
			t.Fatal(err)
		}
		if got := cs[0].String(); !strings.Contains(got, " "+wantTTL+" ") {
			t.Errorf("candidate %q, want %s", got, wantTTL)
		}
	}
	lookup("ttl=300")
	clk.Advance(299 * time.Second)
	lookup("ttl=1")
	if n := srv.Count(srvName, dns.TypeSRV); n != 1 {
		t.Fatalf("%d queries within the TTL, want 1", n)
	}
	clk.Advance(time.Second)
	lookup("ttl=300")
	if n := srv.Count(srvName, dns.TypeSRV); n != 2 {
		t.Fatalf("%d queries after the TTL, want 2", n)
	}
}

// Negative answers are cached for min(SOA TTL, SOA MINIMUM) = 60 s.
func TestNegativeCacheExpiry(t *testing.T) {
	srv := newZoneServer(t)
	clk := newClock()
	cfg := dnsConfig(srv.Addr)
	cfg.MinTTL = 0
	r := newResolver(t, cfg, resolve.Options{Now: clk.Now})
	ctx := context.Background()
	names := []string{"_xmpp-server._tcp.nowhere.test.", "_xmpps-server._tcp.nowhere.test."}
	counts := func() []int {
		return []int{
			srv.Count(names[0], dns.TypeSRV), srv.Count(names[1], dns.TypeSRV),
			srv.Count("nowhere.test.", dns.TypeA), srv.Count("nowhere.test.", dns.TypeAAAA),
		}
	}
	for i, step := range []struct {
		advance time.Duration
		want    []int
	}{
		{0, []int{1, 1, 1, 1}},
		{59 * time.Second, []int{1, 1, 1, 1}},
		{time.Second, []int{2, 2, 2, 2}},
	} {
		clk.Advance(step.advance)
		if _, err := r.Lookup(ctx, "nowhere.test"); !errors.Is(err, resolve.ErrNotFound) {
			t.Fatalf("step %d: err = %v", i, err)
		}
		if got := counts(); !slices.Equal(got, step.want) {
			t.Errorf("step %d: queries %v, want %v", i, got, step.want)
		}
	}
}

func TestLookupIDNA(t *testing.T) {
	srv := newZoneServer(t)
	r := newResolver(t, dnsConfig(srv.Addr), resolve.Options{})
	if _, err := r.Lookup(context.Background(), "ÜNÏCODE.test"); err != nil {
		t.Fatal(err)
	}
	if n := srv.Count("_xmpp-server._tcp.xn--ncode-cta3g.test.", dns.TypeSRV); n != 1 {
		t.Errorf("%d queries for the A-label name, want 1 (queries: %v)", n, srv.Queries())
	}
}

func TestToASCII(t *testing.T) {
	for in, want := range map[string]string{
		"example.org":       "example.org",
		"Example.ORG.":      "example.org",
		"ünïcode.test":      "xn--ncode-cta3g.test",
		"xn--ncode-cta3g.t": "xn--ncode-cta3g.t",
		"faß.de":            "xn--fa-hia.de",
	} {
		if got, err := resolve.ToASCII(in); err != nil || got != want {
			t.Errorf("ToASCII(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", ".", "a..b", "-a.b", "a_b.c", "a b", strings.Repeat("a", 64) + ".b", "xn--zz.test", "0\xe500", "192.0.2.1.", "host.123", "³"} {
		if got, err := resolve.ToASCII(in); err == nil {
			t.Errorf("ToASCII(%q) = %q, want an error", in, got)
		}
	}
}

// Concurrent lookups of one domain send one query per name.
func TestLookupSingleflight(t *testing.T) {
	srv := newZoneServer(t)
	srv.SetDelay(100 * time.Millisecond)
	r := newResolver(t, dnsConfig(srv.Addr), resolve.Options{})
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			if _, err := r.Lookup(context.Background(), "plain.test"); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"_xmpp-server._tcp.plain.test.", dns.TypeSRV},
		{"_xmpps-server._tcp.plain.test.", dns.TypeSRV},
		{"plain.test.", dns.TypeA},
		{"plain.test.", dns.TypeAAAA},
	} {
		if got := srv.Count(q.name, q.qtype); got != 1 {
			t.Errorf("%s %s: %d queries, want 1", q.name, dns.TypeToString[q.qtype], got)
		}
	}
}

func TestOverrides(t *testing.T) {
	srv := newZoneServer(t)
	cfg := dnsConfig(srv.Addr)
	cfg.Overrides = map[string][]string{
		"Partner.Test": {"127.0.0.1:5269", "tls://xmpp.partner.test:5270", "[::1]:5269"},
		"ünïcode.test": {"tls://192.0.2.7:5223"},
	}
	r := newResolver(t, cfg, resolve.Options{})
	for domain, want := range map[string][]string{
		"partner.test": {
			"0 0 127.0.0.1:5269 starttls ttl=0 dnssec=no",
			"0 0 xmpp.partner.test:5270 directtls ttl=0 dnssec=no",
			"0 0 [::1]:5269 starttls ttl=0 dnssec=no",
		},
		"xn--ncode-cta3g.test": {"0 0 192.0.2.7:5223 directtls ttl=0 dnssec=no"},
	} {
		cs, err := r.Lookup(context.Background(), domain)
		if err != nil {
			t.Fatal(err)
		}
		if got := lines(cs); !slices.Equal(got, want) {
			t.Errorf("Lookup(%s) = %q, want %q", domain, got, want)
		}
		for _, c := range cs {
			if c.Source != resolve.FromOverride {
				t.Errorf("%v: source %v", c, c.Source)
			}
		}
	}
	if n := srv.Total(); n != 0 {
		t.Errorf("%d DNS queries for overridden domains, want 0", n)
	}
}

func TestNewRejectsBadOverride(t *testing.T) {
	cfg := dnsConfig("127.0.0.1:53")
	cfg.Overrides = map[string][]string{"partner.test": {"http://x:1"}}
	if _, err := resolve.New(cfg, resolve.Options{}); err == nil || !strings.Contains(err.Error(), "dns.overrides.partner.test") {
		t.Errorf("New = %v, want an error naming the override", err)
	}
}

func TestNewResolvConf(t *testing.T) {
	path := t.TempDir() + "/resolv.conf"
	writeFile(t, path, "nameserver 192.0.2.53\nnameserver 2001:db8::53\n")
	r, err := resolve.New(config.DNS{}, resolve.Options{ResolvConf: path})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, want := r.Servers(), []string{"192.0.2.53:53", "[2001:db8::53]:53"}; !slices.Equal(got, want) {
		t.Errorf("Servers = %v, want %v", got, want)
	}
	if _, err := resolve.New(config.DNS{}, resolve.Options{ResolvConf: path + ".missing"}); err == nil {
		t.Error("New with no servers and no resolv.conf succeeded")
	}
}

func TestClosed(t *testing.T) {
	srv := newZoneServer(t)
	r := newResolver(t, dnsConfig(srv.Addr), resolve.Options{})
	if _, err := r.Lookup(context.Background(), "notls.test"); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, err := r.Lookup(context.Background(), "notls.test"); err != nil {
		t.Errorf("cached lookup after Close: %v", err)
	}
	if _, err := r.Lookup(context.Background(), "plain.test"); !errors.Is(err, resolve.ErrClosed) || !errors.Is(err, resolve.ErrTemporary) {
		t.Errorf("err = %v, want ErrClosed (temporary)", err)
	}
}

// Names under .invalid are not found without asking any server (RFC 6761
// §6.4): the resolver here points at a port where nothing answers, so a
// query would have given a temporary failure instead.
func TestLookupSpecialUseInvalid(t *testing.T) {
	r := newResolver(t, dnsConfig("127.0.0.1:1"), resolve.Options{})
	for _, d := range []string{"nowhere.invalid", "INVALID", "a.b.invalid"} {
		_, err := r.Lookup(context.Background(), d)
		if resolve.KindOf(err) != resolve.NotFound || !errors.Is(err, resolve.ErrNotFound) {
			t.Errorf("Lookup(%q) = %v, want not found without a query", d, err)
		}
	}
}
