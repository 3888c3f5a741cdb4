package resolve

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"

	"github.com/fedrelay/fedrelay/config"
)

// Defaults for zero fields of config.DNS (config.Load always fills them).
const (
	defaultTimeout   = 5 * time.Second
	defaultCacheSize = 10000
)

// Options are the parts of a Resolver that tests replace. The zero value is
// what a relay uses.
type Options struct {
	// Now is the clock for cache expiry; nil means time.Now.
	Now func() time.Time
	// IntN returns a uniform random integer in [0, n) for the RFC 2782
	// weighted ordering; nil means math/rand/v2.IntN. It must be safe for
	// concurrent use.
	IntN func(n int) int
	// ResolvConf is the file read for nameservers when config.DNS.Servers
	// is empty; "" means /etc/resolv.conf.
	ResolvConf string
	// DialContext opens the sockets to nameservers; nil means a
	// net.Dialer.
	DialContext func(ctx context.Context, network, address string) (net.Conn, error)
	// TrustAnchors replace the root trust anchors (the built-in IANA ones,
	// or those of config.DNS.TrustAnchors): DS or DNSKEY records owned by
	// ".". Tests sign their own root with them.
	TrustAnchors []dns.RR
}

// Resolver finds where to connect for a remote XMPP domain: SRV lookup of
// _xmpps-server._tcp and _xmpp-server._tcp, RFC 2782 ordering, the A/AAAA
// fallback, and static overrides, with a bounded TTL-honouring cache. It is
// safe for concurrent use. Close it to stop queries in flight.
type Resolver struct {
	client    client
	cache     *lru.Cache[cacheKey, *rrset]
	flights   singleflight.Group
	overrides map[string][]Candidate
	minTTL    time.Duration
	maxTTL    time.Duration
	now       func() time.Time
	intN      func(int) int

	// DNSSEC for DANE (dnssec.go): how answers are trusted, the root
	// trust anchors, and the validated RRsets by name and type.
	dnssec    dnssecMode
	anchors   []dns.RR
	validated *lru.Cache[secKey, *secSet]

	// base is the context of queries in flight: they are shared by all
	// callers waiting for the same answer, so no caller's context may
	// cancel them. Close cancels base and waits.
	base   context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup

	stats Stats
}

// New returns a Resolver configured by cfg: the nameservers in cfg.Servers
// (host:port) or else those of /etc/resolv.conf, cfg.Timeout per query to
// one server (zero: 5s), cfg.Retries more rounds over the servers after
// timeouts, a cache of cfg.CacheSize answers (zero: 10000) whose TTLs are
// clamped to [cfg.MinTTL, cfg.MaxTTL] (MaxTTL zero: no upper bound), and
// cfg.Overrides, which replace DNS for the domains they name. cfg.DNSSEC
// ("validate" when empty) and cfg.TrustAnchors say how DANE trusts DNSSEC
// (see DANE). It fails when no nameserver is known, an override does not
// parse, or the trust anchors cannot be read.
func New(cfg config.DNS, opts Options) (*Resolver, error) {
	servers := slices.Clone(cfg.Servers)
	if len(servers) == 0 {
		path := opts.ResolvConf
		if path == "" {
			path = "/etc/resolv.conf"
		}
		cc, err := dns.ClientConfigFromFile(path)
		if err != nil {
			return nil, fmt.Errorf("resolve: no dns.servers configured and %s unreadable: %w", path, err)
		}
		for _, s := range cc.Servers {
			servers = append(servers, net.JoinHostPort(s, cc.Port))
		}
		if len(servers) == 0 {
			return nil, fmt.Errorf("resolve: no dns.servers configured and no nameserver in %s", path)
		}
	}
	for i, s := range servers {
		if _, _, err := net.SplitHostPort(s); err != nil {
			servers[i] = net.JoinHostPort(strings.Trim(s, "[]"), "53")
		}
	}

	size := cfg.CacheSize
	if size <= 0 {
		size = defaultCacheSize
	}
	cache, err := lru.New[cacheKey, *rrset](size)
	if err != nil {
		return nil, fmt.Errorf("resolve: %w", err)
	}

	overrides := make(map[string][]Candidate, len(cfg.Overrides))
	for domain, targets := range cfg.Overrides {
		name, err := ToASCII(domain)
		if err != nil {
			return nil, fmt.Errorf("resolve: dns.overrides: %q: %v", domain, err)
		}
		if len(targets) == 0 {
			return nil, fmt.Errorf("resolve: dns.overrides.%s: no targets", name)
		}
		cs := make([]Candidate, 0, len(targets))
		for _, t := range targets {
			c, err := ParseOverride(t)
			if err != nil {
				return nil, fmt.Errorf("resolve: dns.overrides.%s: %q: %v", name, t, err)
			}
			cs = append(cs, c)
		}
		overrides[name] = cs
	}

	mode, err := parseDNSSECMode(cfg.DNSSEC)
	if err != nil {
		return nil, err
	}
	anchors := opts.TrustAnchors
	switch {
	case len(anchors) > 0:
		if err := checkAnchors(anchors); err != nil {
			return nil, fmt.Errorf("resolve: trust anchors: %w", err)
		}
	case cfg.TrustAnchors != "":
		if anchors, err = readAnchors(cfg.TrustAnchors); err != nil {
			return nil, err
		}
	default:
		anchors = ianaRootAnchors()
	}
	validated, err := lru.New[secKey, *secSet](size)
	if err != nil {
		return nil, fmt.Errorf("resolve: %w", err)
	}

	r := &Resolver{
		client: client{
			servers: servers,
			timeout: cfg.Timeout,
			retries: max(cfg.Retries, 0),
			dial:    opts.DialContext,
		},
		cache:     cache,
		overrides: overrides,
		minTTL:    max(cfg.MinTTL, 0),
		maxTTL:    max(cfg.MaxTTL, 0),
		now:       opts.Now,
		intN:      opts.IntN,
		dnssec:    mode,
		anchors:   anchors,
		validated: validated,
	}
	if r.client.timeout <= 0 {
		r.client.timeout = defaultTimeout
	}
	if r.client.dial == nil {
		var d net.Dialer
		r.client.dial = d.DialContext
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.intN == nil {
		r.intN = rand.IntN
	}
	r.base, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// Close cancels the queries in flight and waits for them to end. Lookups
// after Close still return cached answers; those that need a query fail
// with ErrClosed.
func (r *Resolver) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	return nil
}

// Servers returns the nameservers asked, as host:port.
func (r *Resolver) Servers() []string { return slices.Clone(r.client.servers) }

// Lookup returns the candidates for reaching the XMPP domain's server, in
// the order to try them (RFC 6120 §3.2, XEP-0368, RFC 2782):
//
//   - an overridden domain gets its dns.overrides targets, in order;
//   - an IP-literal domain gets that address on port 5269;
//   - otherwise _xmpps-server._tcp and _xmpp-server._tcp are asked in
//     parallel and their records merged and ordered by priority and weight.
//     A lone "." target of _xmpp-server fails with ErrNoService; one of
//     _xmpps-server only removes direct TLS;
//   - only when neither SRV name has records does the domain's own A/AAAA on
//     port 5269 become the one candidate.
//
// domain may be internationalised; it is converted with ToASCII. SRV
// candidates carry glue addresses when the answer had them; the Dialer looks
// up the rest. Failures are *Error values: Kind NotFound or NoService when
// the domain does not exist or offers no S2S service, Temporary when DNS
// could not tell.
func (r *Resolver) Lookup(ctx context.Context, domain string) ([]Candidate, error) {
	name, ip, err := parseDomain(domain)
	if err != nil {
		return nil, err
	}
	if ip.IsValid() {
		return []Candidate{{
			Host:   ip.String(),
			Port:   DefaultPort,
			Source: FromFallback,
			Addrs:  []netip.Addr{ip},
			known:  familyBoth,
		}}, nil
	}
	if name == "invalid" || strings.HasSuffix(name, ".invalid") {
		// RFC 6761 §6.4: resolvers answer names under .invalid with
		// NXDOMAIN without asking anyone, so an offline relay still gives
		// a definite remote-server-not-found.
		return nil, &Error{Kind: NotFound, Name: name,
			Msg: fmt.Sprintf("domain not found: %s is under the special-use domain .invalid (RFC 6761)", name)}
	}
	if cs, ok := r.overrides[name]; ok {
		out := make([]Candidate, len(cs))
		for i, c := range cs {
			c.Addrs = slices.Clone(c.Addrs)
			out[i] = c
		}
		return out, nil
	}

	tlsKey := cacheKey{svcXMPPS, name, dns.TypeSRV}
	tcpKey := cacheKey{svcXMPP, name, dns.TypeSRV}
	now := r.now()
	xmpps, okS := r.cached(tlsKey, now)
	xmpp, okT := r.cached(tcpKey, now)
	var errS, errT error
	if !okS || !okT {
		xmpps, xmpp, errS, errT = r.fetchPair(ctx, tlsKey, tcpKey, xmpps, xmpp)
		now = r.now()
	}

	if errT == nil && xmpp.noService() {
		return nil, &Error{
			Kind: NoService,
			Name: tcpKey.owner(),
			Msg:  fmt.Sprintf("no S2S service: %s has target %q", tcpKey.owner(), "."),
		}
	}
	noTLS := errS == nil && xmpps.noService()
	var tlsRecs, tcpRecs []srvRecord
	if errS == nil && !noTLS {
		tlsRecs = xmpps.srvs
	}
	if errT == nil {
		tcpRecs = xmpp.srvs
	}
	if cs := r.candidates(tlsRecs, xmpps, tcpRecs, xmpp, now); len(cs) > 0 {
		return cs, nil
	}
	switch {
	case errT != nil:
		// Without knowing whether the SRV records exist, falling back to
		// A/AAAA could reach the wrong server.
		return nil, errT
	case errS != nil:
		return nil, errS
	case noTLS:
		return nil, &Error{
			Kind: NoService,
			Name: tlsKey.owner(),
			Msg: fmt.Sprintf("no S2S service: %s has target %q and %s has no records",
				tlsKey.owner(), ".", tcpKey.owner()),
		}
	}
	return r.fallback(ctx, name)
}

// fetchPair asks for whichever of the two SRV answers is not yet known (nil),
// in parallel when both are missing.
func (r *Resolver) fetchPair(ctx context.Context, tlsKey, tcpKey cacheKey, xmpps, xmpp *rrset) (*rrset, *rrset, error, error) {
	var errS, errT error
	switch {
	case xmpps != nil:
		xmpp, errT = r.fetch(ctx, tcpKey)
	case xmpp != nil:
		xmpps, errS = r.fetch(ctx, tlsKey)
	default:
		var wg sync.WaitGroup
		wg.Go(func() { xmpps, errS = r.fetch(ctx, tlsKey) })
		xmpp, errT = r.fetch(ctx, tcpKey)
		wg.Wait()
	}
	return xmpps, xmpp, errS, errT
}

// parseDomain returns the ASCII form of an XMPP domain, or its address when
// it is an IP literal ("192.0.2.1", "[2001:db8::1]").
func parseDomain(domain string) (string, netip.Addr, error) {
	if strings.HasPrefix(domain, "[") && strings.HasSuffix(domain, "]") {
		ip, err := netip.ParseAddr(domain[1 : len(domain)-1])
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return "", netip.Addr{}, invalidDomain(domain, "not an IPv6 address in brackets")
		}
		return "", ip, nil
	}
	if digitsAndDots(domain) {
		// Digits and dots only: an IPv4 literal, or nothing valid.
		if ip, err := netip.ParseAddr(domain); err == nil && ip.Is4() {
			return "", ip, nil
		}
	}
	name, err := ToASCII(domain)
	if err != nil {
		return "", netip.Addr{}, invalidDomain(domain, err.Error())
	}
	return name, netip.Addr{}, nil
}

func digitsAndDots(s string) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '.' {
			return false
		}
	}
	return true
}

func invalidDomain(domain, why string) *Error {
	return &Error{Kind: NotFound, Name: domain, Msg: fmt.Sprintf("invalid domain %q: %s", domain, why)}
}

// candidates merges the usable records of both SRV answers (a "." target
// mixed with real ones means nothing) and returns them as candidates in RFC
// 2782 order. A failed query for one name costs only its own candidates.
func (r *Resolver) candidates(tlsRecs []srvRecord, tlsSet *rrset, tcpRecs []srvRecord, tcpSet *rrset, now time.Time) []Candidate {
	var buf [16]ranked
	rs := buf[:0]
	for i, s := range tlsRecs {
		if s.target != "." {
			rs = append(rs, ranked{s.priority, s.weight, i})
		}
	}
	for i, s := range tcpRecs {
		if s.target != "." {
			rs = append(rs, ranked{s.priority, s.weight, len(tlsRecs) + i})
		}
	}
	if len(rs) == 0 {
		return nil
	}
	order(rs, r.intN)
	cs := make([]Candidate, len(rs))
	for i, x := range rs {
		set, mode, s := tlsSet, DirectTLS, srvRecord{}
		if x.src < len(tlsRecs) {
			s = tlsRecs[x.src]
		} else {
			set, mode, s = tcpSet, StartTLS, tcpRecs[x.src-len(tlsRecs)]
		}
		c := &cs[i]
		*c = Candidate{
			Host:     s.target,
			Port:     s.port,
			Mode:     mode,
			Priority: s.priority,
			Weight:   s.weight,
			TTL:      set.ttlAt(now),
			Secure:   set.secure,
			Source:   FromSRV,
		}
		if g := s.glue; g.known != 0 && now.Before(set.glueExpires) {
			c.Addrs, c.known = slices.Clone(g.addrs), g.known
		}
	}
	return cs
}

// fallback is the RFC 6120 §3.2.2 candidate: the domain itself on 5269,
// when it has addresses.
func (r *Resolver) fallback(ctx context.Context, name string) ([]Candidate, error) {
	res, err := r.addrs(ctx, name, familyBoth)
	if err != nil {
		if e, ok := err.(*Error); ok && e.Kind == NotFound {
			why := "has no A or AAAA records"
			if res.nxdomain {
				why = "does not exist (NXDOMAIN)"
			}
			return nil, &Error{
				Kind: NotFound,
				Name: name,
				Msg:  fmt.Sprintf("domain not found: %s has no _xmpp-server or _xmpps-server SRV records and %s", name, why),
			}
		}
		return nil, err
	}
	return []Candidate{{
		Host:   name,
		Port:   DefaultPort,
		Mode:   StartTLS,
		TTL:    res.ttl,
		Secure: res.secure,
		Source: FromFallback,
		Addrs:  res.addrs,
		known:  familyBoth,
	}}, nil
}

// LookupAddrs returns the IPv6 and IPv4 addresses of host (AAAA then A
// records, asked in parallel and cached), as the Dialer uses them for SRV
// targets. host may be an IP address. It fails with a NotFound *Error when
// host has neither, and a Temporary one when DNS could not tell.
func (r *Resolver) LookupAddrs(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []netip.Addr{ip.Unmap()}, nil
	}
	name, err := ToASCII(host)
	if err != nil {
		return nil, invalidDomain(host, err.Error())
	}
	res, err := r.addrs(ctx, name, familyBoth)
	return res.addrs, err
}

// addrResult is the combined outcome of A and AAAA lookups.
type addrResult struct {
	addrs    []netip.Addr  // IPv6 first
	secure   bool          // every answer with addresses was authenticated
	ttl      time.Duration // the shortest cache lifetime of those answers
	nxdomain bool
}

// addrs looks up the families in need of host (ASCII, no trailing dot).
// Addresses of one family are enough; an error is returned only when there
// are none.
func (r *Resolver) addrs(ctx context.Context, host string, need family) (addrResult, error) {
	now := r.now()
	var sets [2]*rrset // AAAA, A
	var errs [2]error
	qtypes := [2]uint16{dns.TypeAAAA, dns.TypeA}
	wanted := [2]bool{need&familyV6 != 0, need&familyV4 != 0}
	var wg sync.WaitGroup
	for i, qt := range qtypes {
		if !wanted[i] {
			continue
		}
		key := cacheKey{svcNone, host, qt}
		if set, ok := r.cached(key, now); ok {
			sets[i] = set
			continue
		}
		wg.Go(func() { sets[i], errs[i] = r.fetch(ctx, key) })
	}
	wg.Wait()

	now = r.now()
	res := addrResult{secure: true, nxdomain: true}
	first := true
	var failed error
	for i, set := range sets {
		if errs[i] != nil {
			failed = errs[i]
			res.secure, res.nxdomain = false, false
			continue
		}
		if set == nil {
			continue
		}
		res.nxdomain = res.nxdomain && set.nxdomain
		if len(set.addrs) == 0 {
			continue // the TTL and AD bit describe the records used
		}
		res.addrs = append(res.addrs, set.addrs...)
		res.secure = res.secure && set.secure
		if t := set.ttlAt(now); first || t < res.ttl {
			res.ttl, first = t, false
		}
	}
	if len(res.addrs) > 0 {
		return res, nil
	}
	res.secure = false
	if failed != nil {
		return res, failed
	}
	why := "has no A or AAAA records"
	if res.nxdomain {
		why = "does not exist (NXDOMAIN)"
	}
	return res, &Error{Kind: NotFound, Name: host, Msg: fmt.Sprintf("host not found: %s %s", host, why)}
}

// cached returns an unexpired answer from the cache.
func (r *Resolver) cached(key cacheKey, now time.Time) (*rrset, bool) {
	set, ok := r.cache.Get(key)
	if !ok || !now.Before(set.expires) {
		r.stats.CacheMisses.Add(1)
		return nil, false
	}
	r.stats.CacheHits.Add(1)
	return set, true
}

// fetch asks the nameservers, sharing one query among all callers asking for
// the same name and type at the same time, and caches the answer. The query
// runs on the Resolver's own context; ctx only bounds how long this caller
// waits for it.
func (r *Resolver) fetch(ctx context.Context, key cacheKey) (*rrset, error) {
	fqdn := key.owner() + "."
	ch := r.flights.DoChan(fqdn+"\x00"+dns.TypeToString[key.qtype], func() (any, error) {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return nil, &Error{Kind: Temporary, Name: key.owner(), Msg: "DNS lookup failed: " + key.owner() + ": resolver closed", Err: ErrClosed}
		}
		r.wg.Add(1)
		r.mu.Unlock()
		defer r.wg.Done()

		m, err := r.client.query(r.base, fqdn, key.qtype, false)
		r.stats.query(err)
		if err != nil {
			return nil, err
		}
		set := parseAnswer(m, fqdn, key.qtype, r.now(), r.minTTL, r.maxTTL)
		if set.cacheable {
			r.cache.Add(key, set)
		}
		return set, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*rrset), nil
	case <-ctx.Done():
		return nil, queryError(fqdn, key.qtype, []string{"gave up waiting: " + ctx.Err().Error()}, ctx.Err())
	}
}
