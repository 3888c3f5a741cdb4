package resolvetest

import (
	"crypto"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Zone is a DNSSEC-signed test zone: its records, a key-signing key (KSK)
// that signs the DNSKEY RRset and a zone-signing key (ZSK) that signs the
// rest, the split real zones use. Sign returns the records with the keys
// and RRSIGs; the zones of a test are served together by one Server
// (SetRecords), which hands out RRSIGs to queries with the DO bit.
type Zone struct {
	// Origin is the zone's name, fully qualified and in lower case.
	Origin string
	// KSK and ZSK are the zone's public keys.
	KSK, ZSK *dns.DNSKEY

	kskPriv, zskPriv crypto.Signer
	records          []dns.RR
}

// NewZone makes a zone named origin with fresh keys of algorithm alg
// (dns.ECDSAP256SHA256, dns.ED25519, dns.RSASHA256, ...).
func NewZone(t testing.TB, origin string, alg uint8) *Zone {
	t.Helper()
	z := &Zone{Origin: dns.CanonicalName(origin)}
	z.KSK, z.kskPriv = newKey(t, z.Origin, alg, dns.ZONE|dns.SEP)
	z.ZSK, z.zskPriv = newKey(t, z.Origin, alg, dns.ZONE)
	return z
}

func newKey(t testing.TB, origin string, alg uint8, flags uint16) (*dns.DNSKEY, crypto.Signer) {
	t.Helper()
	k := &dns.DNSKEY{
		Hdr:       dns.RR_Header{Name: origin, Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 3600},
		Flags:     flags,
		Protocol:  3,
		Algorithm: alg,
	}
	bits := 256
	switch alg {
	case dns.RSASHA256, dns.RSASHA512:
		bits = 2048
	case dns.ECDSAP384SHA384:
		bits = 384
	}
	priv, err := k.Generate(bits)
	if err != nil {
		t.Fatalf("resolvetest: generate %s key for %s: %v", dns.AlgorithmToString[alg], origin, err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		t.Fatalf("resolvetest: %T is no crypto.Signer", priv)
	}
	return k, signer
}

// Add adds records in master-file syntax; names without a final dot are
// relative to the origin, and the default TTL is 300.
func (z *Zone) Add(t testing.TB, lines ...string) {
	t.Helper()
	zp := dns.NewZoneParser(strings.NewReader(strings.Join(lines, "\n")), z.Origin, "")
	zp.SetDefaultTTL(300)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rr.Header().Name = dns.CanonicalName(rr.Header().Name)
		z.records = append(z.records, rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("resolvetest: zone %s: %v", z.Origin, err)
	}
}

// DS returns the DS record (SHA-256) of the zone's KSK, as its parent
// publishes it.
func (z *Zone) DS() *dns.DS {
	ds := z.KSK.ToDS(dns.SHA256)
	ds.Hdr.Ttl = 3600
	return ds
}

// Delegate publishes child's DS record in z (signed by z, like any of its
// records). A child that is not delegated this way is an island: its
// signatures chain to nothing.
func (z *Zone) Delegate(child *Zone) { z.records = append(z.records, child.DS()) }

// Sign returns copies of the zone's records, its DNSKEY RRset and one RRSIG
// per RRset, valid from inception to expiration: the DNSKEY RRset signed by
// the KSK, every other RRset by the ZSK.
func (z *Zone) Sign(t testing.TB, inception, expiration time.Time) []dns.RR {
	t.Helper()
	out := []dns.RR{dns.Copy(z.KSK), dns.Copy(z.ZSK)}
	for _, rr := range z.records {
		out = append(out, dns.Copy(rr))
	}
	type set struct {
		name  string
		rtype uint16
	}
	var order []set
	sets := map[set][]dns.RR{}
	for _, rr := range out {
		k := set{rr.Header().Name, rr.Header().Rrtype}
		if _, ok := sets[k]; !ok {
			order = append(order, k)
		}
		sets[k] = append(sets[k], rr)
	}
	for _, k := range order {
		key, priv := z.ZSK, z.zskPriv
		if k.rtype == dns.TypeDNSKEY {
			key, priv = z.KSK, z.kskPriv
		}
		sig := &dns.RRSIG{
			Hdr:        dns.RR_Header{Ttl: sets[k][0].Header().Ttl},
			Algorithm:  key.Algorithm,
			Inception:  uint32(inception.Unix()),
			Expiration: uint32(expiration.Unix()),
			KeyTag:     key.KeyTag(),
			SignerName: z.Origin,
		}
		if err := sig.Sign(priv, slices.Clone(sets[k])); err != nil {
			t.Fatalf("resolvetest: sign %s %s: %v", k.name, dns.TypeToString[k.rtype], err)
		}
		out = append(out, sig)
	}
	return out
}
