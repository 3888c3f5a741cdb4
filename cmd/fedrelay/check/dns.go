package check

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fedrelay/fedrelay/s2s/resolve"
)

// listenAddr is one federation listening address of the configuration.
type listenAddr struct {
	conf   string       // as configured
	addrs  []netip.Addr // its host, resolved if it is a name; one unspecified address for 0.0.0.0 and ::
	port   uint16
	direct bool // listen_tls
	err    error
}

func (l listenAddr) key() string {
	if l.direct {
		return "federation.listen_tls"
	}
	return "federation.listen"
}

// any reports whether the listener takes connections on every local
// address of addr's family (0.0.0.0 for IPv4; :: for both, as Linux binds
// it dual-stack).
func (l listenAddr) any(addr netip.Addr) bool {
	for _, a := range l.addrs {
		if a.IsUnspecified() && (a.Is6() || addr.Is4()) {
			return true
		}
	}
	return false
}

// federationListeners parses federation.listen and listen_tls; host names
// are resolved with the system resolver, as net.Listen would.
func (c *checker) federationListeners(ctx context.Context) []listenAddr {
	var out []listenAddr
	add := func(list []string, direct bool) {
		for _, s := range list {
			l := listenAddr{conf: s, direct: direct}
			host, port, err := net.SplitHostPort(s)
			if err == nil {
				var p uint64
				p, err = strconv.ParseUint(port, 10, 16)
				l.port = uint16(p)
			}
			if err == nil {
				switch ip, perr := netip.ParseAddr(host); {
				case host == "":
					l.addrs = []netip.Addr{netip.IPv6Unspecified()}
				case perr == nil:
					l.addrs = []netip.Addr{ip.Unmap()}
				default:
					lctx, cancel := context.WithTimeout(ctx, c.cfg.Limits.ConnectTimeout)
					l.addrs, err = net.DefaultResolver.LookupNetIP(lctx, "ip", host)
					cancel()
					for i, a := range l.addrs {
						l.addrs[i] = a.Unmap()
					}
				}
			}
			l.err = err
			out = append(out, l)
		}
	}
	add(c.cfg.Federation.Listen, false)
	add(c.cfg.Federation.ListenTLS, true)
	return out
}

// dns checks the public SRV records of every fronted domain against the
// federation listeners.
func (c *checker) dns(ctx context.Context) {
	dc := c.cfg.DNS
	dc.Overrides = nil // they steer the relay's own connections, not the world's
	r, err := resolve.New(dc, resolve.Options{ResolvConf: c.opts.ResolvConf})
	if err != nil {
		c.add(Fail, DNS, "resolver", "%v", err)
		return
	}
	defer r.Close()
	ls := c.federationListeners(ctx)
	for _, l := range ls {
		if l.err != nil {
			c.add(Fail, DNS, l.key(), "%s: %v", l.conf, l.err)
		}
	}
	local, err := c.opts.LocalAddrs()
	if err != nil {
		c.add(Warn, DNS, "local addresses", "cannot list this host's addresses (%v): only loopback counts as local", err)
	}
	j := &judge{ls: ls, local: local, allowPrivate: c.allowPrivate()}
	for _, d := range c.cfg.Domains {
		c.dnsDomain(ctx, r, d.Name, j)
	}
}

// lookupTimeout bounds one domain's lookups: every server asked, with the
// retries, for the SRV names and then the targets' addresses.
func (c *checker) lookupTimeout() time.Duration {
	dc := c.cfg.DNS
	t := dc.Timeout
	if t <= 0 {
		t = 5 * time.Second
	}
	return max(c.cfg.Limits.ConnectTimeout, 2*t*time.Duration(max(dc.Retries, 0)+1)*time.Duration(max(len(dc.Servers), 1)))
}

func (c *checker) dnsDomain(ctx context.Context, r *resolve.Resolver, name string, j *judge) {
	ctx, cancel := context.WithTimeout(ctx, c.lookupTimeout())
	defer cancel()
	cs, err := r.Lookup(ctx, name)
	if err != nil {
		switch resolve.KindOf(err) {
		case resolve.NoService:
			c.add(Fail, DNS, name, "%v: the domain says it offers no server-to-server service, so no peer will connect", err)
		case resolve.NotFound:
			c.add(Fail, DNS, name, "%v: peers cannot find the relay; publish _xmpp-server._tcp.%s (and _xmpps-server._tcp.%s) "+
				"SRV records pointing at it", err, name, name)
		default:
			c.add(Fail, DNS, name, "cannot tell: %v", err)
		}
		return
	}
	if len(cs) == 1 && cs[0].Source == resolve.FromFallback {
		c.add(Warn, DNS, name, "no _xmpp-server._tcp or _xmpps-server._tcp SRV records: peers fall back to the A/AAAA "+
			"records of %s on port %d (RFC 6120 §3.2.2); SRV records pointing at the relay are better", name, resolve.DefaultPort)
		c.dnsTarget(ctx, r, name, name+" (A/AAAA fallback)", cs[0], j)
		return
	}
	// A report in a stable order: STARTTLS records first, then by priority,
	// weight (heaviest first), target and port. Peers try them in RFC 2782
	// order, which is partly random.
	slices.SortStableFunc(cs, func(a, b resolve.Candidate) int {
		return cmp.Or(cmp.Compare(a.Mode, b.Mode), cmp.Compare(a.Priority, b.Priority), cmp.Compare(b.Weight, a.Weight),
			cmp.Compare(a.Host, b.Host), cmp.Compare(a.Port, b.Port))
	})
	var starttls, direct int
	for _, cand := range cs {
		if cand.Mode == resolve.DirectTLS {
			direct++
		} else {
			starttls++
		}
	}
	if starttls == 0 {
		c.add(Warn, DNS, name, "no _xmpp-server._tcp SRV records: only peers that do direct TLS (XEP-0368) use the "+
			"_xmpps-server._tcp records; the others fall back to %s's A/AAAA records on port %d", name, resolve.DefaultPort)
	}
	if direct == 0 && slices.ContainsFunc(j.ls, func(l listenAddr) bool { return l.direct }) {
		c.add(Info, DNS, name, "no _xmpps-server._tcp SRV records: the direct TLS listener (federation.listen_tls) "+
			"is not advertised; peers use STARTTLS")
	}
	for _, cand := range cs {
		svc := "_xmpp-server._tcp."
		if cand.Mode == resolve.DirectTLS {
			svc = "_xmpps-server._tcp."
		}
		c.dnsTarget(ctx, r, name, svc+name, cand, j)
	}
}

// dnsTarget resolves one candidate's addresses and judges each.
func (c *checker) dnsTarget(ctx context.Context, r *resolve.Resolver, domain, owner string, cand resolve.Candidate, j *judge) {
	addrs := cand.Addrs
	if len(addrs) == 0 || cand.Source == resolve.FromSRV {
		// Glue may hold only one family: ask for both.
		var err error
		if addrs, err = r.LookupAddrs(ctx, cand.Host); err != nil {
			c.add(Fail, DNS, domain, "%s points at %s, which has no address: %v", owner, cand.Address(), err)
			return
		}
	}
	for _, a := range addrs {
		ap := netip.AddrPortFrom(a.Unmap(), cand.Port)
		target := ap.String()
		if _, err := netip.ParseAddr(cand.Host); err != nil {
			target = cand.Address() + " (" + ap.Addr().String() + ")"
		}
		v, why := j.judge(ap, cand.Mode == resolve.DirectTLS)
		c.add(v, DNS, domain, "%s points at %s: %s", owner, target, why)
	}
}

// allowPrivate parses dns.allow_private (already validated).
func (c *checker) allowPrivate() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range c.cfg.DNS.AllowPrivate {
		if p, err := netip.ParsePrefix(s); err == nil {
			ps = append(ps, p)
		} else if a, err := netip.ParseAddr(s); err == nil {
			ps = append(ps, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return ps
}

// judge compares a published address with the listeners.
type judge struct {
	ls           []listenAddr
	local        []netip.Addr
	allowPrivate []netip.Prefix
}

func (j *judge) isLocal(a netip.Addr) bool {
	return a.IsLoopback() || slices.Contains(j.local, a)
}

// judge says whether a peer connecting to ap, in the mode its record
// gives, reaches the relay.
func (j *judge) judge(ap netip.AddrPort, direct bool) (Verdict, string) {
	v, why := j.reach(ap, direct)
	if v == Fail {
		return v, why
	}
	a := ap.Addr()
	if (a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsUnspecified()) &&
		!slices.ContainsFunc(j.allowPrivate, func(p netip.Prefix) bool { return p.Contains(a) }) {
		return Warn, why + "; but " + a.String() + " is a loopback, private or link-local address: peers on the internet cannot reach it " +
			"(list it in dns.allow_private if the federation is private)"
	}
	return v, why
}

func (j *judge) reach(ap netip.AddrPort, direct bool) (Verdict, string) {
	mode, other := "STARTTLS", "direct TLS"
	if direct {
		mode, other = other, mode
	}
	a, port := ap.Addr(), ap.Port()
	local := j.isLocal(a)
	var same, samePort []listenAddr
	for _, l := range j.ls {
		if l.err != nil || l.direct != direct {
			continue
		}
		same = append(same, l)
		if l.port == port {
			samePort = append(samePort, l)
		}
	}
	for _, l := range samePort {
		if slices.Contains(l.addrs, a) {
			return OK, fmt.Sprintf("the relay listens there (%s %s)", l.key(), l.conf)
		}
	}
	for _, l := range samePort {
		if l.any(a) {
			if local {
				return OK, fmt.Sprintf("an address of this host, where the relay listens (%s %s)", l.key(), l.conf)
			}
			return Warn, fmt.Sprintf("not an address of this host; the relay listens on every address (%s %s): "+
				"fine if %s is forwarded here (NAT, load balancer), which a check on this host cannot see", l.key(), l.conf, a)
		}
	}
	if len(samePort) > 0 {
		l := samePort[0]
		if !local {
			return Warn, fmt.Sprintf("not an address of this host; the relay listens on %s (%s): fine if %s is forwarded "+
				"there (NAT, load balancer), which a check on this host cannot see", l.conf, l.key(), a)
		}
		return Fail, fmt.Sprintf("an address of this host where the relay does not listen (%s: %s)", l.key(), confs(samePort))
	}
	for _, l := range j.ls {
		if l.err == nil && l.direct != direct && l.port == port && (slices.Contains(l.addrs, a) || l.any(a)) {
			want := "_xmpp-server._tcp"
			if l.direct {
				want = "_xmpps-server._tcp"
			}
			return Fail, fmt.Sprintf("that is the relay's %s listener (%s %s), but peers will speak %s to it; "+
				"publish it as %s", other, l.key(), l.conf, mode, want)
		}
	}
	if len(same) == 0 {
		key := "federation.listen"
		if direct {
			key = "federation.listen_tls"
		}
		return Fail, fmt.Sprintf("the relay has no %s listener (%s is empty)", mode, key)
	}
	return Fail, fmt.Sprintf("the relay does not listen on port %d for %s (%s: %s)", port, mode, same[0].key(), confs(same))
}

func confs(ls []listenAddr) string {
	s := make([]string, len(ls))
	for i, l := range ls {
		s[i] = l.conf
	}
	return strings.Join(s, ", ")
}
