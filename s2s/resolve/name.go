package resolve

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// ToASCII returns the lower-case ASCII (A-label) form of a domain name, as
// DNS queries and TLS SNI need it: "ünïcode.test" becomes
// "xn--ncode-cta3g.test" (IDNA2008 lookup rules, UTS #46 mapping). One
// trailing dot is accepted and dropped.
func ToASCII(domain string) (string, error) {
	d := strings.TrimSuffix(domain, ".")
	if d == "" {
		return "", errors.New("empty domain name")
	}
	if plainLDH(d) {
		if err := numericTLD(d); err != nil {
			return "", err
		}
		return d, nil // the common case, without allocating
	}
	if !utf8.ValidString(d) {
		return "", errors.New("not valid UTF-8")
	}
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		return "", err
	}
	a = strings.ToLower(a)
	if err := checkLabels(a); err != nil {
		return "", err
	}
	// The A-labels must themselves pass the lookup rules (a name that
	// IDNA maps but cannot take back is no host name).
	if again, err := idna.Lookup.ToASCII(a); err != nil || again != a {
		return "", errors.New("not a valid internationalised name")
	}
	if err := numericTLD(a); err != nil {
		return "", err
	}
	return a, nil
}

// numericTLD rejects a name whose last label is all digits: no top-level
// domain is (RFC 3696 §2), so it is an IPv4 address or garbage, not a name
// to look up.
func numericTLD(a string) error {
	if digitsAndDots(a[strings.LastIndexByte(a, '.')+1:]) {
		return errors.New("the last label is numeric: an IP address is not a host name")
	}
	return nil
}

// checkLabels checks what IDNA lookup rules leave open: the lengths of the
// name and its labels, and letters, digits and hyphens only.
func checkLabels(a string) error {
	if len(a) > 253 {
		return errors.New("name longer than 253 characters")
	}
	for label := range strings.SplitSeq(a, ".") {
		if label == "" || len(label) > 63 {
			return errors.New("empty label or label longer than 63 characters")
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return errors.New("not a host name")
			}
		}
	}
	return nil
}

// plainLDH reports whether s is already a lower-case letters-digits-hyphens
// name that IDNA would leave alone: labels of 1 to 63 characters that do not
// start or end with a hyphen and are not A-labels ("xn--"), which IDNA must
// check.
func plainLDH(s string) bool {
	if len(s) > 253 {
		return false
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			c := s[i]
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return false
			}
			continue
		}
		label := s[start:i]
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' ||
			(len(label) >= 4 && label[2] == '-' && label[3] == '-') {
			return false
		}
		start = i + 1
	}
	return true
}

// ParseOverride parses one dns.overrides target: "host:port" for STARTTLS or
// "tls://host:port" for direct TLS. The host is an IP address (IPv6 in
// brackets) or a host name, which is converted with ToASCII and resolved by
// A/AAAA when dialled. The candidate has Source FromOverride and zero
// priority, weight and TTL.
func ParseOverride(s string) (Candidate, error) {
	c := Candidate{Source: FromOverride, Mode: StartTLS}
	rest := s
	if scheme, after, ok := strings.Cut(s, "://"); ok {
		if scheme != "tls" {
			return Candidate{}, errors.New(`unknown scheme "` + scheme + `://": write host:port or tls://host:port`)
		}
		c.Mode, rest = DirectTLS, after
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		return Candidate{}, errors.New("not host:port or tls://host:port")
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 || port[0] == '+' {
		return Candidate{}, errors.New("port must be a number from 1 to 65535")
	}
	c.Port = uint16(p)
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return Candidate{}, errors.New("IPv6 zones are not supported")
		}
		ip = ip.Unmap()
		c.Host, c.Addrs, c.known = ip.String(), []netip.Addr{ip}, familyBoth
		return c, nil
	}
	if strings.ContainsAny(host, "[]") {
		return Candidate{}, errors.New("host is neither an IP address nor a host name")
	}
	name, err := ToASCII(host)
	if err != nil {
		return Candidate{}, errors.New("host is neither an IP address nor a host name: " + err.Error())
	}
	c.Host = name
	return c, nil
}

// OverrideString formats c as a dns.overrides target; ParseOverride reads it
// back.
func OverrideString(c Candidate) string {
	if c.Mode == DirectTLS {
		return "tls://" + c.Address()
	}
	return c.Address()
}
