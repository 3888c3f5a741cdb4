package certs

import (
	"encoding/asn1"
	"errors"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Object identifiers of the subjectAltName extension (RFC 5280 §4.2.1.6) and
// of the two otherName forms XMPP uses: SRVName (RFC 4985) and id-on-xmppAddr
// (RFC 6120 §13.7.1.4).
var (
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidSRVName        = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 7}
	oidXmppAddr       = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 5}
)

// GeneralName choices are IMPLICIT context-specific tags; an otherName's value
// is wrapped in an EXPLICIT [0].
var (
	tagOtherName = cbasn1.Tag(0).ContextSpecific().Constructed()
	tagDNSName   = cbasn1.Tag(2).ContextSpecific()
	tagExplicit0 = cbasn1.Tag(0).ContextSpecific().Constructed()
)

var errMalformedSAN = errors.New("certs: malformed subjectAltName extension")

// sanNames are the names of a subjectAltName extension that identify an XMPP
// server, as presented (not normalised).
type sanNames struct {
	DNS  []string // dNSName (IA5String)
	SRV  []string // SRVName otherName, "_service.name" (IA5String)
	XMPP []string // id-on-xmppAddr otherName (UTF8String)
}

// parseSAN reads the DER value of a subjectAltName extension. Other
// GeneralName kinds (IP, URI, rfc822Name, other otherName types) are skipped.
// A name whose string type or characters are wrong for its kind is skipped
// too, so that one odd entry does not hide the others; a structural DER error
// is an error (with the names read until then).
//
// crypto/x509 parses dNSName itself but skips otherName contents, which is
// why this parser exists.
func parseSAN(ext []byte) (sanNames, error) {
	var names sanNames
	in := cryptobyte.String(ext)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return names, errMalformedSAN
	}
	for !seq.Empty() {
		var gn cryptobyte.String
		var tag cbasn1.Tag
		if !seq.ReadAnyASN1(&gn, &tag) {
			return names, errMalformedSAN
		}
		switch tag {
		case tagDNSName:
			if isIA5(gn) {
				names.DNS = append(names.DNS, string(gn))
			}
		case tagOtherName:
			var oid asn1.ObjectIdentifier
			var wrapped, value cryptobyte.String
			var valueTag cbasn1.Tag
			if !gn.ReadASN1ObjectIdentifier(&oid) ||
				!gn.ReadASN1(&wrapped, tagExplicit0) || !gn.Empty() ||
				!wrapped.ReadAnyASN1(&value, &valueTag) || !wrapped.Empty() {
				return names, errMalformedSAN
			}
			switch {
			case oid.Equal(oidSRVName) && valueTag == cbasn1.IA5String && isIA5(value):
				names.SRV = append(names.SRV, string(value))
			case oid.Equal(oidXmppAddr) && valueTag == cbasn1.UTF8String && utf8.Valid(value):
				names.XMPP = append(names.XMPP, string(value))
			}
		}
	}
	return names, nil
}

// marshalSAN encodes names as the DER value of a subjectAltName extension:
// dNSNames first, then SRVNames, then XmppAddrs. Values must already be of the
// right character set (ASCII for DNS and SRV, UTF-8 for XMPP).
func marshalSAN(names sanNames) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, d := range names.DNS {
			b.AddASN1(tagDNSName, func(b *cryptobyte.Builder) { b.AddBytes([]byte(d)) })
		}
		for _, s := range names.SRV {
			addOtherName(b, oidSRVName, cbasn1.IA5String, s)
		}
		for _, x := range names.XMPP {
			addOtherName(b, oidXmppAddr, cbasn1.UTF8String, x)
		}
	})
	return b.Bytes()
}

func addOtherName(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, tag cbasn1.Tag, value string) {
	b.AddASN1(tagOtherName, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) {
			b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(value)) })
		})
	})
}

func isIA5(s []byte) bool {
	for _, c := range s {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
