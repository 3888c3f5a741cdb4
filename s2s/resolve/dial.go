package resolve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// ALPN is the protocol name a direct TLS connection offers (XEP-0368).
const ALPN = "xmpp-server"

// DefaultStagger is the delay before the next address is tried while the
// previous attempt is still pending (RFC 8305 §5 recommends 250 ms).
const DefaultStagger = 250 * time.Millisecond

// Dialer connects to a remote domain's server: it resolves the domain,
// tries the candidates in order, races each candidate's addresses
// (IPv6 and IPv4 interleaved, RFC 8305), and does the TLS handshake for
// direct TLS candidates. STARTTLS, authentication and everything after are
// the caller's.
//
// The zero value is not usable: Resolver must be set.
type Dialer struct {
	// Resolver finds the candidates and their addresses. Required.
	Resolver *Resolver
	// TLSConfig returns the TLS configuration for direct TLS connections to
	// domain (the ASCII form), with the certificates and verification the
	// S2S layer wants. The Dialer uses a clone with ServerName set to the
	// domain, never the SRV target (RFC 6120 §13.7.2.1, XEP-0368), and
	// NextProtos set to ["xmpp-server"]. Nil, or a nil result, makes direct
	// TLS candidates fail (and the next candidate be tried).
	TLSConfig func(domain string) *tls.Config
	// Timeout bounds Dial as a whole, resolution included; the deadline of
	// the context passed to Dial applies too. Zero means only the context
	// (set it from limits.connect_timeout).
	Timeout time.Duration
	// Stagger is how long an attempt may be pending before the next address
	// of the same candidate is tried as well; zero means DefaultStagger.
	Stagger time.Duration
	// DialContext opens TCP connections; nil means a net.Dialer. It must
	// return promptly when its context is cancelled.
	DialContext func(ctx context.Context, network, address string) (net.Conn, error)
	// Allowed, if not nil, says whether an address learnt from DNS may be
	// connected to (see PublicOnly); override candidates are not checked.
	Allowed func(netip.Addr) bool
}

// PublicOnly returns an Allowed function that refuses loopback, private
// (RFC 1918, RFC 4193), link-local, unspecified and multicast addresses,
// and IPv4 addresses mapped into IPv6 that are any of those, unless they
// are in one of allow.
func PublicOnly(allow []netip.Prefix) func(netip.Addr) bool {
	return func(a netip.Addr) bool {
		a = a.Unmap()
		for _, p := range allow {
			if p.Contains(a) {
				return true
			}
		}
		return !(a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
			a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified())
	}
}

// Conn is a connection to a candidate. For a DirectTLS candidate Conn is a
// *tls.Conn whose handshake is complete; for StartTLS it is the plain TCP
// connection, on which the stream and STARTTLS come next.
type Conn struct {
	net.Conn
	// Candidate is the candidate that connected; Candidate.Mode tells the
	// caller whether STARTTLS is still to come.
	Candidate Candidate
	// Addr is the address connected to.
	Addr netip.AddrPort
}

// Dial resolves domain and connects to the first candidate that accepts.
// When resolution fails the error is the Resolver's *Error (NotFound,
// NoService or Temporary). When every candidate fails, or the deadline
// passes, it is a *DialError (kind Temporary) holding every attempt's error.
// A direct TLS candidate whose handshake fails is given up for the next one:
// some operators point _xmpps-server at a STARTTLS port.
func (d *Dialer) Dial(ctx context.Context, domain string) (*Conn, error) {
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	cs, err := d.Resolver.Lookup(ctx, domain)
	if err != nil {
		return nil, err
	}
	name := sniName(domain)
	de := &DialError{Domain: name}
	for i, c := range cs {
		conn, attempts := d.dialCandidate(ctx, name, c)
		if conn != nil {
			return conn, nil
		}
		de.Attempts = append(de.Attempts, attempts...)
		if err := ctx.Err(); err != nil {
			de.Err = err
			de.Untried = len(cs) - i - 1
			break
		}
	}
	return nil, de
}

// DialCandidate connects to one candidate of domain, as Dial does for each
// in turn. fedrelay resolve --connect uses it to probe every candidate. On
// failure the error is a *DialError.
func (d *Dialer) DialCandidate(ctx context.Context, domain string, c Candidate) (*Conn, error) {
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	name := sniName(domain)
	conn, attempts := d.dialCandidate(ctx, name, c)
	if conn != nil {
		return conn, nil
	}
	return nil, &DialError{Domain: name, Attempts: attempts, Err: ctx.Err()}
}

// sniName is the name for SNI and certificate checks: the ASCII form of the
// domain, or the domain as given if it does not convert (then it is an IP
// literal, for which crypto/tls sends no SNI).
func sniName(domain string) string {
	if name, ip, err := parseDomain(domain); err == nil && !ip.IsValid() {
		return name
	}
	return domain
}

// dialCandidate resolves c's addresses, races them, and does the TLS
// handshake for direct TLS. It returns the connection, or the failed
// attempts.
func (d *Dialer) dialCandidate(ctx context.Context, domain string, c Candidate) (*Conn, []Attempt) {
	addrs := c.Addrs
	if need := familyBoth &^ c.known; need != 0 {
		res, err := d.Resolver.addrs(ctx, c.Host, need)
		if err != nil && len(addrs) == 0 {
			return nil, []Attempt{{Candidate: c, Err: err}}
		}
		addrs = append(res.addrs, addrs...)
	}
	if len(addrs) == 0 {
		return nil, []Attempt{{Candidate: c, Err: fmt.Errorf("host %s has no addresses", c.Host)}}
	}
	if d.Allowed != nil && c.Source != FromOverride {
		kept := addrs[:0:0]
		for _, a := range addrs {
			if d.Allowed(a) {
				kept = append(kept, a)
			}
		}
		if len(kept) == 0 {
			return nil, []Attempt{{Candidate: c, Err: fmt.Errorf("host %s has only addresses the relay does not connect to from DNS (loopback, private, link-local: dns.allow_private)", c.Host)}}
		}
		addrs = kept
	}
	var cfg *tls.Config
	if c.Mode == DirectTLS {
		if d.TLSConfig != nil {
			cfg = d.TLSConfig(domain)
		}
		if cfg == nil {
			return nil, []Attempt{{Candidate: c, Err: errors.New("direct TLS: no TLS configuration")}}
		}
		cfg = cfg.Clone()
		cfg.ServerName = domain
		cfg.NextProtos = []string{ALPN}
	}

	conn, addr, attempts := d.race(ctx, c, interleave(addrs, c.Port))
	if conn == nil {
		return nil, attempts
	}
	if cfg != nil {
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, append(attempts, Attempt{Candidate: c, Addr: addr,
				Err: fmt.Errorf("TLS handshake with %s: %w", addr, err)})
		}
		conn = tc
	}
	return &Conn{Conn: conn, Candidate: c, Addr: addr}, nil
}

// interleave orders addresses for happy eyeballs (RFC 8305 §4): IPv6 first,
// then alternating families, each family in its own order.
func interleave(addrs []netip.Addr, port uint16) []netip.AddrPort {
	var v6, v4 []netip.Addr
	for _, a := range addrs {
		if a.Is4() || a.Is4In6() {
			v4 = append(v4, a.Unmap())
		} else {
			v6 = append(v6, a)
		}
	}
	out := make([]netip.AddrPort, 0, len(addrs))
	for i := 0; i < len(v6) || i < len(v4); i++ {
		if i < len(v6) {
			out = append(out, netip.AddrPortFrom(v6[i], port))
		}
		if i < len(v4) {
			out = append(out, netip.AddrPortFrom(v4[i], port))
		}
	}
	return out
}

type raceResult struct {
	conn net.Conn
	addr netip.AddrPort
	err  error
}

// race connects to addrs in order, starting the next attempt when the
// previous has been pending for the stagger delay or has failed, whichever
// comes first. The first connection wins; the other attempts are cancelled,
// and any that connect anyway are closed. race returns only after every
// attempt it started has ended.
func (d *Dialer) race(ctx context.Context, c Candidate, addrs []netip.AddrPort) (net.Conn, netip.AddrPort, []Attempt) {
	dial := d.DialContext
	if dial == nil {
		var nd net.Dialer
		dial = nd.DialContext
	}
	stagger := d.Stagger
	if stagger <= 0 {
		stagger = DefaultStagger
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	results := make(chan raceResult, len(addrs))
	next, running := 0, 0
	start := func() {
		a := addrs[next]
		next++
		running++
		go func() {
			conn, err := dial(ctx, "tcp", a.String())
			results <- raceResult{conn, a, err}
		}()
	}
	var attempts []Attempt
	var winner raceResult
	timer := time.NewTimer(0)
	defer timer.Stop()
	start()
	for running > 0 && winner.conn == nil {
		var tick <-chan time.Time
		if next < len(addrs) {
			timer.Reset(stagger)
			tick = timer.C
		}
		select {
		case r := <-results:
			running--
			if r.err == nil {
				winner = r
				break
			}
			attempts = append(attempts, Attempt{Candidate: c, Addr: r.addr, Err: r.err})
			if next < len(addrs) && ctx.Err() == nil {
				start()
			}
		case <-tick:
			if ctx.Err() == nil {
				start()
			}
		}
	}
	cancel()
	for ; running > 0; running-- {
		r := <-results
		if r.conn != nil {
			r.conn.Close() // connected after the winner: not needed
		} else if winner.conn == nil {
			attempts = append(attempts, Attempt{Candidate: c, Addr: r.addr, Err: r.err})
		}
	}
	if winner.conn == nil {
		return nil, netip.AddrPort{}, attempts
	}
	return winner.conn, winner.addr, nil
}
