package resolve

import (
	"context"
	"crypto"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var testNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// testKey is a zone key of example.org. with its signer.
type testKey struct {
	key  *dns.DNSKEY
	priv crypto.Signer
}

func newTestKey(t testing.TB, zone string) testKey {
	t.Helper()
	k := &dns.DNSKEY{
		Hdr:       dns.RR_Header{Name: zone, Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 3600},
		Flags:     dns.ZONE | dns.SEP,
		Protocol:  3,
		Algorithm: dns.ECDSAP256SHA256,
	}
	priv, err := k.Generate(256)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{k, priv.(crypto.Signer)}
}

func (k testKey) sign(t testing.TB, rrs []dns.RR, edit func(*dns.RRSIG)) *dns.RRSIG {
	t.Helper()
	sig := &dns.RRSIG{
		Algorithm:  k.key.Algorithm,
		Inception:  uint32(testNow.Add(-time.Hour).Unix()),
		Expiration: uint32(testNow.Add(time.Hour).Unix()),
		KeyTag:     k.key.KeyTag(),
		SignerName: k.key.Hdr.Name,
	}
	if edit != nil {
		edit(sig)
	}
	if err := sig.Sign(k.priv, rrs); err != nil {
		t.Fatal(err)
	}
	return sig
}

func mustRR(t testing.TB, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return rr
}

func TestVerifyRRset(t *testing.T) {
	zone := newTestKey(t, "example.org.")
	other := newTestKey(t, "other.org.")
	keysOf := func(status secStatus, ks ...testKey) func(string) (*secSet, error) {
		return func(signer string) (*secSet, error) {
			set := &secSet{status: status, depth: 2, why: "reason"}
			for _, k := range ks {
				if k.key.Hdr.Name == signer {
					set.rrs = append(set.rrs, k.key)
				}
			}
			return set, nil
		}
	}
	tlsa := []dns.RR{mustRR(t, "_5269._tcp.xmpp.example.org. 300 IN TLSA 3 1 1 "+strings.Repeat("ab", 32))}
	ds := []dns.RR{mustRR(t, "child.example.org. 300 IN DS 1 13 2 "+strings.Repeat("cd", 32))}
	keyset := []dns.RR{zone.key}
	wild := []dns.RR{mustRR(t, "*._tcp.xmpp.example.org. 300 IN TLSA 3 1 1 "+strings.Repeat("ab", 32))}
	wildSig := zone.sign(t, wild, nil)
	wildSig.Hdr.Name = "_5269._tcp.xmpp.example.org."

	tests := []struct {
		name   string
		rrs    []dns.RR
		sigs   func() []*dns.RRSIG
		keys   func(string) (*secSet, error)
		want   secStatus
		reason string
	}{
		{"signed", tlsa, func() []*dns.RRSIG { return []*dns.RRSIG{zone.sign(t, tlsa, nil)} },
			keysOf(secSecure, zone), secSecure, ""},
		{"no signature", tlsa, func() []*dns.RRSIG { return nil }, keysOf(secSecure, zone), secInsecure, "no RRSIG"},
		{"signer not an ancestor", tlsa, func() []*dns.RRSIG { return []*dns.RRSIG{other.sign(t, tlsa, nil)} },
			keysOf(secSecure, zone, other), secBogus, "not its zone"},
		{"DS signed by its own zone", ds, func() []*dns.RRSIG {
			child := newTestKey(t, "child.example.org.")
			return []*dns.RRSIG{child.sign(t, ds, nil)}
		}, func(string) (*secSet, error) { t.Fatal("keys asked"); return nil, nil }, secBogus, "not its zone"},
		{"DS signed by the parent", ds, func() []*dns.RRSIG { return []*dns.RRSIG{zone.sign(t, ds, nil)} },
			keysOf(secSecure, zone), secSecure, ""},
		{"DNSKEY signed by another zone", keyset, func() []*dns.RRSIG {
			parent := newTestKey(t, "org.")
			return []*dns.RRSIG{parent.sign(t, keyset, nil)}
		}, func(string) (*secSet, error) { t.Fatal("keys asked"); return nil, nil }, secBogus, "not its zone"},
		{"wildcard expansion", tlsa, func() []*dns.RRSIG { return []*dns.RRSIG{wildSig} },
			keysOf(secSecure, zone), secInsecure, "wildcard"},
		{"too many labels", tlsa, func() []*dns.RRSIG {
			s := zone.sign(t, tlsa, nil)
			s.Labels++
			return []*dns.RRSIG{s}
		}, keysOf(secSecure, zone), secBogus, "labels"},
		{"SHA-1 algorithm", tlsa, func() []*dns.RRSIG {
			s := zone.sign(t, tlsa, nil)
			s.Algorithm = dns.RSASHA1
			return []*dns.RRSIG{s}
		}, keysOf(secSecure, zone), secInsecure, "unsupported algorithm"},
		{"unknown key tag", tlsa, func() []*dns.RRSIG {
			return []*dns.RRSIG{zone.sign(t, tlsa, func(s *dns.RRSIG) { s.KeyTag++ })}
		}, keysOf(secSecure, zone), secBogus, "no such key"},
		{"signer keys insecure", tlsa, func() []*dns.RRSIG { return []*dns.RRSIG{zone.sign(t, tlsa, nil)} },
			keysOf(secInsecure, zone), secInsecure, "DNSKEY of example.org."},
		{"signer keys bogus", tlsa, func() []*dns.RRSIG { return []*dns.RRSIG{zone.sign(t, tlsa, nil)} },
			keysOf(secBogus, zone), secBogus, "DNSKEY of example.org."},
		{"a good signature after bad ones", tlsa, func() []*dns.RRSIG {
			bad := zone.sign(t, tlsa, nil)
			bad.Signature = zone.sign(t, ds, nil).Signature
			return []*dns.RRSIG{bad, zone.sign(t, tlsa, nil)}
		}, keysOf(secSecure, zone), secSecure, ""},
		{"a good signature past the bound", tlsa, func() []*dns.RRSIG {
			var sigs []*dns.RRSIG
			for range maxSigsTried {
				bad := zone.sign(t, tlsa, nil)
				bad.Signature = zone.sign(t, ds, nil).Signature
				sigs = append(sigs, bad)
			}
			return append(sigs, zone.sign(t, tlsa, nil))
		}, keysOf(secSecure, zone), secBogus, "does not verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.rrs[0].Header()
			st := rrStep{owner: h.Name, rrtype: h.Rrtype, rrs: tt.rrs, sigs: tt.sigs()}
			v, err := verifyRRset(st, testNow, tt.keys)
			if err != nil {
				t.Fatal(err)
			}
			if v.status != tt.want || !strings.Contains(v.why, tt.reason) {
				t.Fatalf("verifyRRset = %v %q, want %v %q", v.status, v.why, tt.want, tt.reason)
			}
			if v.status == secSecure && (v.depth != 2 || !v.expires.Equal(testNow.Add(time.Hour))) {
				t.Errorf("secure verdict with depth %d, expires %v", v.depth, v.expires)
			}
		})
	}
}

func TestAnswerChain(t *testing.T) {
	msg := func(rrs ...string) *dns.Msg {
		m := new(dns.Msg)
		for _, s := range rrs {
			m.Answer = append(m.Answer, mustRR(t, s))
		}
		return m
	}
	type chainTest struct {
		name  string
		msg   *dns.Msg
		steps int
		ok    bool
		final int
	}
	tests := []chainTest{
		{name: "direct", msg: msg("A.Example. 60 IN A 192.0.2.1", "a.example. 60 IN A 192.0.2.2", "b.example. 60 IN A 192.0.2.3"),
			steps: 1, ok: true, final: 2},
		{name: "cname", msg: msg("a.example. 60 IN CNAME b.example.", "b.example. 60 IN A 192.0.2.3"),
			steps: 2, ok: true, final: 1},
		{name: "loop", msg: msg("a.example. 60 IN CNAME b.example.", "b.example. 60 IN CNAME a.example."),
			steps: 3, ok: false},
		{name: "two cnames", msg: msg("a.example. 60 IN CNAME b.example.", "a.example. 60 IN CNAME c.example."),
			steps: 1, ok: false},
		{name: "no data", msg: msg("b.example. 60 IN A 192.0.2.3"), steps: 1, ok: true},
		{name: "other class", msg: msg("a.example. 60 CH A 192.0.2.3"), steps: 1, ok: true},
	}
	long := msg()
	for i := range maxCNAMEs + 1 {
		long.Answer = append(long.Answer, mustRR(t, "n"+string(rune('a'+i))+".example. 60 IN CNAME n"+string(rune('b'+i))+".example."))
	}
	long.Answer[0].Header().Name = "a.example."
	tests = append(tests, chainTest{name: "too long", msg: long, steps: maxCNAMEs + 1, ok: false})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps, ok := answerChain(tt.msg, "a.example.", dns.TypeA)
			if len(steps) != tt.steps || ok != tt.ok {
				t.Fatalf("answerChain = %d steps, %v; want %d, %v", len(steps), ok, tt.steps, tt.ok)
			}
			if final := steps[len(steps)-1]; ok && len(final.rrs) != tt.final {
				t.Errorf("final RRset has %d records, want %d", len(final.rrs), tt.final)
			}
		})
	}
}

// TestIANAAnchors: the built-in anchors are the root's KSK-2017 and
// KSK-2024, as IANA publishes them in root-anchors.xml.
func TestIANAAnchors(t *testing.T) {
	want := map[uint16]string{
		20326: "E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D",
		38696: "683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16",
	}
	got := ianaRootAnchors()
	if len(got) != len(want) {
		t.Fatalf("%d anchors, want %d", len(got), len(want))
	}
	for _, rr := range got {
		ds, ok := rr.(*dns.DS)
		if !ok || ds.Hdr.Name != "." || ds.Algorithm != dns.RSASHA256 || ds.DigestType != dns.SHA256 ||
			!strings.EqualFold(ds.Digest, want[ds.KeyTag]) {
			t.Errorf("anchor %v is not one of IANA's", rr)
		}
	}
}

// FuzzVerifyAnswer: whatever a nameserver answers (any message that
// unpacks), picking out the RRsets and checking their signatures never
// panics nor loops; a chain has at most maxCNAMEs CNAMEs and holds only
// records of its owner and type; an RRset is judged secure only when one
// of its RRSIGs, by a key the zone vouches for, is valid now, by its zone,
// and verifies; the keys a DS vouches for are keys of the set; and the
// trust-ad verdict is the AD bit.
func FuzzVerifyAnswer(f *testing.F) {
	zone := newTestKey(f, "example.org.")
	tlsa := []dns.RR{mustRR(f, "_5269._tcp.xmpp.example.org. 300 IN TLSA 3 1 1 "+strings.Repeat("ab", 32))}
	seed := func(qname string, qtype uint16, rrs ...dns.RR) {
		m := new(dns.Msg)
		m.SetQuestion(qname, qtype)
		m.Answer = rrs
		if b, err := m.Pack(); err == nil {
			f.Add(b, qtype)
		}
	}
	seed("_5269._tcp.xmpp.example.org.", dns.TypeTLSA, tlsa[0], zone.sign(f, tlsa, nil))
	keyset := []dns.RR{zone.key}
	seed("example.org.", dns.TypeDNSKEY, zone.key, zone.sign(f, keyset, nil))
	ds := zone.key.ToDS(dns.SHA256)
	seed("example.org.", dns.TypeDS, ds)
	cname := []dns.RR{mustRR(f, "_5269._tcp.xmpp.example.org. 300 IN CNAME _5269._tcp.xmpp.example.org.")}
	seed("_5269._tcp.xmpp.example.org.", dns.TypeTLSA, cname[0], zone.sign(f, cname, nil))
	srv := []dns.RR{mustRR(f, "_xmpp-server._tcp.example.org. 300 IN SRV 0 0 5269 xmpp.example.org.")}
	seed("_xmpp-server._tcp.example.org.", dns.TypeSRV, srv[0], zone.sign(f, srv, func(s *dns.RRSIG) { s.Labels = 2 }))

	keys := func(string) (*secSet, error) {
		return &secSet{status: secSecure, rrs: []dns.RR{zone.key}, depth: 1}, nil
	}
	r := &Resolver{dnssec: dnssecTrustAD, now: func() time.Time { return testNow }}
	f.Fuzz(func(t *testing.T, raw []byte, qtype uint16) {
		m := new(dns.Msg)
		if err := m.Unpack(raw); err != nil || len(m.Question) != 1 {
			return
		}
		name := m.Question[0].Name
		steps, _ := answerChain(m, name, qtype)
		if len(steps) == 0 || len(steps) > maxCNAMEs+2 {
			t.Fatalf("%d steps", len(steps))
		}
		for _, st := range steps {
			for _, rr := range st.rrs {
				if h := rr.Header(); h.Name != st.owner || h.Rrtype != st.rrtype {
					t.Fatalf("%v in the RRset of %s %d", rr, st.owner, st.rrtype)
				}
			}
			if len(st.rrs) == 0 {
				continue
			}
			v, err := verifyRRset(st, testNow, keys)
			if err != nil {
				t.Fatal(err)
			}
			if v.status == secSecure && !someSigValid(st, zone.key) {
				t.Fatalf("%s %d judged secure without a valid signature", st.owner, st.rrtype)
			}
		}
		var dnskeys, vouchers []dns.RR
		for _, rr := range m.Answer {
			switch rr.(type) {
			case *dns.DNSKEY:
				dnskeys = append(dnskeys, rr)
			case *dns.DS:
				vouchers = append(vouchers, rr)
			}
		}
		trusted, _ := trustedKeys(dnskeys, vouchers)
		for _, k := range trusted {
			if !containsRR(dnskeys, k) {
				t.Fatalf("trusted key %v not in the set", k)
			}
		}
		set, err := r.judge(context.Background(), m, name, qtype)
		if err != nil {
			t.Fatal(err)
		}
		if set.status == secSecure && !m.AuthenticatedData {
			t.Fatal("secure without the AD bit")
		}
	})
}

func someSigValid(st rrStep, key *dns.DNSKEY) bool {
	for _, sig := range st.sigs {
		if sig.ValidityPeriod(testNow) && signerFits(dns.CanonicalName(sig.SignerName), st.owner, st.rrtype) &&
			int(sig.Labels) == dns.CountLabel(st.owner) && sig.Verify(key, st.rrs) == nil {
			return true
		}
	}
	return false
}
