package certs

import "github.com/fedrelay/fedrelay/config"

// ParseSAN exposes parseSAN to the external tests and the fuzz target.
func ParseSAN(ext []byte) (dns, srv, xmpp []string, err error) {
	n, err := parseSAN(ext)
	return n.DNS, n.SRV, n.XMPP, err
}

// MarshalSAN exposes marshalSAN to the external tests.
func MarshalSAN(dns, srv, xmpp []string) ([]byte, error) {
	return marshalSAN(sanNames{DNS: dns, SRV: srv, XMPP: xmpp})
}

// MatchSAN reports whether the SAN extension ext identifies the XMPP server
// domain, as VerifyDomain decides it (without the chain's name constraints).
func MatchSAN(ext []byte, domain string) bool {
	ref, err := config.NormalizeDomain(domain)
	if err != nil {
		return false
	}
	n, _ := parseSAN(ext)
	return matchNames(n, ref) != idNone
}
