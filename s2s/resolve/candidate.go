package resolve

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Mode is how a stream to a candidate is encrypted.
type Mode uint8

const (
	// StartTLS: plain TCP, then STARTTLS inside the stream (RFC 6120 §5);
	// from _xmpp-server._tcp records, the A/AAAA fallback, and plain
	// override targets.
	StartTLS Mode = iota
	// DirectTLS: TLS from the first byte with ALPN xmpp-server (XEP-0368);
	// from _xmpps-server._tcp records and tls:// override targets.
	DirectTLS
)

// String returns "starttls" or "directtls".
func (m Mode) String() string {
	if m == DirectTLS {
		return "directtls"
	}
	return "starttls"
}

// Source says where a candidate came from.
type Source uint8

const (
	// FromSRV: an _xmpp-server or _xmpps-server SRV record.
	FromSRV Source = iota
	// FromFallback: the domain's own A/AAAA records on port 5269, used
	// when neither SRV name exists (RFC 6120 §3.2.2), or an IP-literal
	// domain.
	FromFallback
	// FromOverride: a static dns.overrides target.
	FromOverride
)

func (s Source) String() string {
	switch s {
	case FromFallback:
		return "fallback"
	case FromOverride:
		return "override"
	default:
		return "srv"
	}
}

// DefaultPort is the S2S port used when no SRV record names one (RFC 6120
// §3.2.2).
const DefaultPort = 5269

// Candidate is one place a remote domain's server may be reached, in the
// order Lookup returns them.
type Candidate struct {
	// Host is the SRV target, the override host or the domain itself:
	// lower-case ASCII without a trailing dot, or an IP address. It is
	// where to connect, never the name to put in SNI or to verify the
	// certificate against; that is the XMPP domain.
	Host string
	// Port is the TCP port.
	Port uint16
	// Mode is StartTLS or DirectTLS.
	Mode Mode
	// Priority and Weight are the SRV record's; zero for fallback and
	// override candidates.
	Priority uint16
	Weight   uint16
	// TTL is how much longer the answer this candidate came from stays
	// cached (zero for overrides and for answers that may not be cached).
	TTL time.Duration
	// Secure reports that the answer carried the AD bit: the nameserver
	// validated it with DNSSEC. A prerequisite of DANE (RFC 7673); it is
	// only as trustworthy as the path to the nameserver.
	Secure bool
	// Source says where the candidate came from.
	Source Source
	// Addrs are the addresses already known for Host: glue from the SRV
	// answer's additional section, the fallback's A/AAAA records, or an IP
	// override. The Dialer looks up whatever address family is missing.
	Addrs []netip.Addr

	// known records which address families Addrs is complete for.
	known family
}

// family is a set of address families.
type family uint8

const (
	familyV4 family = 1 << iota
	familyV6
	familyBoth = familyV4 | familyV6
)

// Address returns Host and Port joined as host:port ("[::1]:5269" for IPv6).
func (c Candidate) Address() string {
	return net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port)))
}

// String formats c as fedrelay resolve prints it:
// `<priority> <weight> <host>:<port> <starttls|directtls> ttl=<seconds> dnssec=<yes|no>`.
// The TTL is rounded up to whole seconds.
func (c Candidate) String() string {
	var b strings.Builder
	b.Grow(64)
	b.WriteString(strconv.Itoa(int(c.Priority)))
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(int(c.Weight)))
	b.WriteByte(' ')
	b.WriteString(c.Address())
	b.WriteByte(' ')
	b.WriteString(c.Mode.String())
	b.WriteString(" ttl=")
	b.WriteString(strconv.FormatInt(int64((c.TTL+time.Second-1)/time.Second), 10))
	if c.Secure {
		b.WriteString(" dnssec=yes")
	} else {
		b.WriteString(" dnssec=no")
	}
	return b.String()
}
