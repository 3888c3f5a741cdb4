package certs

import (
	"crypto/x509"
	"strings"

	"github.com/fedrelay/fedrelay/config"
)

// maxDomainBytes is the longest domainpart of a JID (RFC 7622 §3.2).
const maxDomainBytes = 1023

// srvPrefix is the service part of the SRV-ID an XMPP server presents
// (RFC 6120 §13.7.1.2.1, RFC 4985): "_xmpp-server.<domain>".
const srvPrefix = "_xmpp-server."

// Identities returns the identifiers in cert's subjectAltName that matter
// for XMPP server identity, as presented, for logs: dNSNames, SRVNames (every
// service, "_xmpp-server.example.org" and others) and XmppAddrs. The subject
// common name is never an identifier (RFC 9525) and is not returned. A
// malformed extension yields the names read before the fault.
func Identities(cert *x509.Certificate) (dns, srv, xmpp []string) {
	n := certNames(cert)
	return n.DNS, n.SRV, n.XMPP
}

// certNames collects cert's SAN names. DNS-IDs come from crypto/x509, which
// already refused the certificate if they were malformed; the otherNames
// come from parseSAN.
func certNames(cert *x509.Certificate) sanNames {
	var n sanNames
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(oidSubjectAltName) {
			n, _ = parseSAN(ext.Value)
			break
		}
	}
	n.DNS = cert.DNSNames
	return n
}

// idKind tells which identifier type matched, because otherName types escape
// crypto/x509's name-constraint checks and are checked here instead.
type idKind int

const (
	idNone idKind = iota
	idDNS
	idSRV
	idXMPP
)

// matchNames reports which identifier in n, if any, identifies the XMPP
// server domain ref (already normalised: lower-case ASCII), following
// RFC 9525 and RFC 6120 §13.7.2 / XEP-0178: DNS-ID, SRV-ID for the
// xmpp-server service, XmppAddr holding the bare domain. DNS-IDs are tried
// first, as they are what crypto/x509 has constraint-checked.
func matchNames(n sanNames, ref string) idKind {
	for _, p := range n.DNS {
		if matchDNSName(p, ref) {
			return idDNS
		}
	}
	for _, p := range n.SRV {
		// RFC 4985 service names are case-insensitive like the rest.
		if len(p) > len(srvPrefix) && strings.EqualFold(p[:len(srvPrefix)], srvPrefix) &&
			matchDNSName(p[len(srvPrefix):], ref) {
			return idSRV
		}
	}
	for _, p := range n.XMPP {
		// A JID with a localpart or resource names an account, not the
		// server; NormalizeDomain refuses it. No wildcards in XmppAddr.
		// The length check spares PRECIS work on what cannot be a domain.
		if len(p) > maxDomainBytes {
			continue
		}
		if d, err := config.NormalizeDomain(p); err == nil && d == ref {
			return idXMPP
		}
	}
	return idNone
}

// matchDNSName matches a presented DNS name (a DNS-ID, or the domain of an
// SRV-ID) against ref per RFC 9525 §6.3: case-insensitive ASCII comparison;
// a wildcard only as the entire left-most label, standing for exactly one
// label. Partial-label wildcards ("f*.example.org") are not honoured, and
// neither is a wildcard over a single remaining label ("*.org"), which no CA
// should issue.
func matchDNSName(presented, ref string) bool {
	p := strings.ToLower(strings.TrimSuffix(presented, "."))
	if p == "" || ref == "" {
		return false
	}
	if rest, ok := strings.CutPrefix(p, "*."); ok {
		if strings.Contains(rest, "*") || !strings.Contains(rest, ".") {
			return false
		}
		label, parent, ok := strings.Cut(ref, ".")
		return ok && label != "" && parent == rest
	}
	if strings.Contains(p, "*") {
		return false
	}
	return p == ref
}

// caConstraints are the DNS name constraints of one CA in a verified chain
// (RFC 5280 §4.2.1.10).
type caConstraints struct{ permitted, excluded []string }

// nameConstraints are what a Peer keeps of its verified chains: the DNS name
// constraints of each chain's CAs, nil when one chain has none at all (then
// every name is permitted). The parsed chains themselves (a few KiB) are not
// kept for the life of a stream.
type nameConstraints [][]caConstraints

// constraintsOf collects the name constraints of chains.
func constraintsOf(chains [][]*x509.Certificate) nameConstraints {
	var all nameConstraints
	for _, chain := range chains {
		var cs []caConstraints
		for _, ca := range chain[min(1, len(chain)):] {
			if len(ca.PermittedDNSDomains) > 0 || len(ca.ExcludedDNSDomains) > 0 {
				cs = append(cs, caConstraints{ca.PermittedDNSDomains, ca.ExcludedDNSDomains})
			}
		}
		if cs == nil {
			return nil // this chain vouches for any name
		}
		all = append(all, cs)
	}
	return all
}

// permit reports whether at least one verified chain lets its CAs vouch for
// domain under their DNS name constraints. crypto/x509 applies those
// constraints to dNSNames only, so without this a CA constrained to
// ".corp.example" could vouch for any domain through an SRV-ID or XmppAddr.
func (n nameConstraints) permit(domain string) bool {
	if n == nil {
		return true
	}
	for _, chain := range n {
		if chainPermits(chain, domain) {
			return true
		}
	}
	return false
}

func chainPermits(chain []caConstraints, domain string) bool {
	for _, ca := range chain {
		for _, c := range ca.excluded {
			if withinConstraint(domain, c) {
				return false
			}
		}
		if len(ca.permitted) == 0 {
			continue
		}
		permitted := false
		for _, c := range ca.permitted {
			if withinConstraint(domain, c) {
				permitted = true
				break
			}
		}
		if !permitted {
			return false
		}
	}
	return true
}

// withinConstraint applies a dNSName constraint: "example.org" covers the
// name and every subdomain, ".example.org" (a common extension) subdomains
// only, "" everything.
func withinConstraint(domain, constraint string) bool {
	c := strings.ToLower(constraint)
	switch {
	case c == "":
		return true
	case c[0] == '.':
		return strings.HasSuffix(domain, c)
	default:
		return domain == c || strings.HasSuffix(domain, "."+c)
	}
}
