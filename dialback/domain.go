package dialback

import (
	"errors"
	"fmt"

	"golang.org/x/net/idna"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"
)

// toASCII turns the Unicode domainpart jid.Parse produces into the A-label
// form used on the wire, in DNS and in TLS, checking label lengths (so "a..b"
// is refused) and STD3 characters.
var toASCII = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.VerifyDNSLength(true),
	idna.StrictDomainName(true),
	idna.Transitional(false),
)

var (
	errHasLocal    = errors.New("address has a localpart")
	errHasResource = errors.New("address has a resourcepart")
	errUnstable    = errors.New("address does not normalize to a fixed point")
)

// Domain returns the form of a server domain that this package uses
// everywhere: RFC 7622 validation by mellium.im/xmpp/jid (a localpart or a
// resourcepart is refused), a trailing dot removed, lowercase, and
// internationalized labels in their ASCII (A-label, "xn--") form; IP literals
// are kept as they are. Errors wrap stream.ImproperAddressing.
//
// The s2s engine can use it to compare its own domains with the From and To
// of the elements this package returns, which are always in this form.
func Domain(s string) (string, error) {
	if isPlainDomain(s) {
		return s, nil
	}
	d, err := normalizeDomain(s)
	if err != nil {
		return "", fmt.Errorf("dialback: domain: %w: %w", err, stream.ImproperAddressing)
	}
	return d, nil
}

func normalizeDomain(s string) (string, error) {
	d, err := normalizeOnce(s)
	if err != nil {
		return "", err
	}
	// Parse must give the same value for what Append writes; a domain
	// whose normal form normalizes to something else again would break
	// the exact from/to matching dialback security rests on.
	if d2, err := normalizeOnce(d); err != nil || d2 != d {
		return "", errUnstable
	}
	return d, nil
}

func normalizeOnce(s string) (string, error) {
	j, err := jid.Parse(s)
	if err != nil {
		return "", err
	}
	if j.Localpart() != "" {
		return "", errHasLocal
	}
	if j.Resourcepart() != "" {
		return "", errHasResource
	}
	d := j.Domainpart()
	if d[0] == '[' {
		// jid accepts bracketed text here only if it is an IPv6 literal.
		return d, nil
	}
	return toASCII.ToASCII(d)
}

// isPlainDomain reports whether s is already in normal form in the common
// case of a lowercase LDH domain: labels of 1 to 63 letters, digits and
// hyphens, not starting or ending with a hyphen, not an A-label (those need
// the full check), at most 253 bytes. It lets the per-stanza checks skip the
// costly normalization.
func isPlainDomain(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 || s[i-1] == '-' {
				return false
			}
			label = 0
			continue
		case c == '-':
			if label == 0 {
				return false
			}
			// "xn--" and other "??--" labels need the IDNA rules.
			if label == 3 && s[i-1] == '-' {
				return false
			}
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		default:
			return false
		}
		label++
		if label > 63 {
			return false
		}
	}
	return label > 0 && s[len(s)-1] != '-'
}
