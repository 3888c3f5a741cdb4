package resolve_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fedrelay/fedrelay/s2s/resolve"
	"github.com/fedrelay/fedrelay/s2s/resolve/resolvetest"
)

// Digests standing for certificates: the resolver only carries them.
const (
	eeDigest = "8d02536c887482bc34ff54e41d2ba659bf85b341a0a20afadb5813dcfbcf286d"
	taDigest = "0c72ac70b745ac19998811b131d662c9ac69dbdbe7cb23e5b514b56664c5d3d6"
)

// world is a small signed DNS: the root (RSA/SHA-256, like the real one),
// test. (ECDSA P-256) and below it
//
//   - partner.test (Ed25519): SRV for both services, secure addresses and
//     TLSA records (DANE-EE on 5269, DANE-TA on 5270);
//   - fallback.test: no SRV, its A and TLSA records signed by test.;
//   - cname.test: its TLSA name is a CNAME to partner.test's;
//   - notlsa.test: secure SRV and addresses, no TLSA;
//   - mismatch.test: signed, but the DS in test. is of another key;
//   - forged.test: signed, and test. has a DS with its KSK's key tag and
//     algorithm but another digest;
//   - island.test: signed, but test. has no DS for it;
//   - unsigned.test: no signatures at all.
//
// Its keys are made once: RSA key generation is slow under -race.
type world struct {
	root, test, partner, mismatch, decoy, forged, island *resolvetest.Zone
}

var (
	worldOnce sync.Once
	theWorld  *world
)

// worldNow is the time of every DNSSEC test (the clock of newClock).
var worldNow = newClock().Now()

func getWorld(t *testing.T) *world {
	worldOnce.Do(func() {
		w := &world{
			root:     resolvetest.NewZone(t, ".", dns.RSASHA256),
			test:     resolvetest.NewZone(t, "test.", dns.ECDSAP256SHA256),
			partner:  resolvetest.NewZone(t, "partner.test.", dns.ED25519),
			mismatch: resolvetest.NewZone(t, "mismatch.test.", dns.ECDSAP256SHA256),
			decoy:    resolvetest.NewZone(t, "mismatch.test.", dns.ECDSAP256SHA256),
			forged:   resolvetest.NewZone(t, "forged.test.", dns.ECDSAP256SHA256),
			island:   resolvetest.NewZone(t, "island.test.", dns.ECDSAP384SHA384),
		}
		w.root.Add(t, ". 86400 SOA a.root. nstld. 1 1800 900 604800 86400")
		w.root.Delegate(w.test)
		w.test.Add(t,
			"@ 3600 SOA ns.test. admin.test. 1 7200 3600 1209600 60",
			"fallback 300 A 127.0.0.2",
			"_5269._tcp.fallback 300 TLSA 3 1 1 "+eeDigest,
			"_xmpp-server._tcp.cname 300 SRV 0 0 5269 xmpp.cname.test.",
			"xmpp.cname 300 A 127.0.0.3",
			"_5269._tcp.xmpp.cname 300 CNAME _5269._tcp.xmpp.partner.test.",
			"_xmpp-server._tcp.notlsa 300 SRV 0 0 5269 xmpp.notlsa.test.",
			"xmpp.notlsa 300 AAAA ::1",
		)
		w.test.Delegate(w.partner)
		w.test.Delegate(w.decoy) // not the key mismatch.test. signs with
		w.test.Add(t, wrongDigest(w.forged.DS()).String())
		w.partner.Add(t,
			"@ 3600 SOA ns.partner.test. admin.partner.test. 1 7200 3600 1209600 60",
			"_xmpp-server._tcp 300 SRV 0 0 5269 xmpp.partner.test.",
			"_xmpps-server._tcp 300 SRV 0 0 5270 xmpp.partner.test.",
			"xmpp 300 A 127.0.0.1",
			"xmpp 300 AAAA ::1",
			"_5269._tcp.xmpp 300 TLSA 3 1 1 "+eeDigest,
			"_5270._tcp.xmpp 300 TLSA 2 0 1 "+taDigest,
			"_5270._tcp.xmpp 300 TLSA 2 0 9 ffff", // unknown matching type: left out
		)
		for _, z := range []*resolvetest.Zone{w.mismatch, w.forged, w.island} {
			z.Add(t,
				"_xmpp-server._tcp 300 SRV 0 0 5269 xmpp",
				"xmpp 300 A 127.0.0.1",
				"_5269._tcp.xmpp 300 TLSA 3 1 1 "+eeDigest,
			)
		}
		theWorld = w
	})
	if theWorld == nil {
		t.Fatal("no signed world")
	}
	return theWorld
}

const unsignedZone = `
_xmpp-server._tcp.unsigned.test. 300 SRV 0 0 5269 xmpp.unsigned.test.
xmpp.unsigned.test.              300 A 127.0.0.1
_5269._tcp.xmpp.unsigned.test.   300 TLSA 3 1 1 ` + eeDigest + `
`

// records returns every record of the world, signed and valid now.
func (w *world) records(t *testing.T) []dns.RR {
	from, to := worldNow.Add(-time.Hour), worldNow.Add(7*24*time.Hour)
	var rrs []dns.RR
	for _, z := range []*resolvetest.Zone{w.root, w.test, w.partner, w.mismatch, w.forged, w.island} {
		rrs = append(rrs, z.Sign(t, from, to)...)
	}
	zp := dns.NewZoneParser(strings.NewReader(unsignedZone), ".", "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	return rrs
}

// without returns rrs less the records owned by name of type rtype, or
// the RRSIGs over that type when sigs is set.
func without(rrs []dns.RR, name string, rtype uint16, sigs bool) []dns.RR {
	var out []dns.RR
	for _, rr := range rrs {
		h := rr.Header()
		match := h.Name == name && h.Rrtype == rtype
		if sigs {
			sig, ok := rr.(*dns.RRSIG)
			match = ok && h.Name == name && sig.TypeCovered == rtype
		}
		if !match {
			out = append(out, rr)
		}
	}
	return out
}

// daneResolver is a validating resolver asking srv, trusting the world's
// root key.
func daneResolver(t *testing.T, srv *resolvetest.Server, mode string, anchors []dns.RR) *resolve.Resolver {
	cfg := dnsConfig(srv.Addr)
	cfg.DNSSEC = mode
	return newResolver(t, cfg, resolve.Options{Now: newClock().Now, TrustAnchors: anchors})
}

func srvCand(host string, port uint16, mode resolve.Mode) resolve.Candidate {
	return resolve.Candidate{Host: host, Port: port, Mode: mode, Source: resolve.FromSRV}
}

func tlsaStrings(rs []*dns.TLSA) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = strings.Join(strings.Fields(r.String())[4:], " ")
	}
	return out
}

func TestDANE(t *testing.T) {
	w := getWorld(t)
	srv := resolvetest.NewServer(t, "")
	srv.SetRecords(w.records(t))
	anchors := []dns.RR{w.root.DS()}
	tests := []struct {
		name   string
		domain string
		cand   resolve.Candidate
		want   string
	}{
		{"srv starttls", "partner.test", srvCand("xmpp.partner.test", 5269, resolve.StartTLS), "3 1 1 " + eeDigest},
		{"srv directtls", "partner.test", srvCand("xmpp.partner.test", 5270, resolve.DirectTLS), "2 0 1 " + taDigest},
		{"fallback", "fallback.test", resolve.Candidate{Host: "fallback.test", Port: 5269, Source: resolve.FromFallback}, "3 1 1 " + eeDigest},
		{"cname", "cname.test", srvCand("xmpp.cname.test", 5269, resolve.StartTLS), "3 1 1 " + eeDigest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := daneResolver(t, srv, "validate", anchors)
			recs, err := r.DANE(context.Background(), tt.domain, tt.cand)
			if err != nil {
				t.Fatal(err)
			}
			if got := tlsaStrings(recs); len(got) != 1 || got[0] != tt.want {
				t.Fatalf("DANE = %q, want [%q]", got, tt.want)
			}
		})
	}
	q := srv.LastQuery()
	if opt := q.IsEdns0(); opt == nil || !opt.Do() || !q.CheckingDisabled || q.AuthenticatedData {
		t.Errorf("validate mode query: want DO and CD, no AD; got %v", q)
	}
}

func TestDANEFailures(t *testing.T) {
	w := getWorld(t)
	anchors := []dns.RR{w.root.DS()}
	partnerSRV := srvCand("xmpp.partner.test", 5269, resolve.StartTLS)
	tamper := func(name string, rtype uint16, change func(dns.RR)) func([]dns.RR) []dns.RR {
		return func(rrs []dns.RR) []dns.RR {
			for _, rr := range rrs {
				if rr.Header().Name == name && rr.Header().Rrtype == rtype {
					change(rr)
				}
			}
			return rrs
		}
	}
	tests := []struct {
		name    string
		change  func([]dns.RR) []dns.RR
		anchors []dns.RR
		domain  string
		cand    resolve.Candidate
		want    error
		detail  string
	}{
		{name: "tampered TLSA", domain: "partner.test", cand: partnerSRV, want: resolve.ErrDNSSECBogus,
			detail: "does not verify",
			change: tamper("_5269._tcp.xmpp.partner.test.", dns.TypeTLSA, func(rr dns.RR) {
				rr.(*dns.TLSA).Certificate = taDigest
			})},
		{name: "tampered address", domain: "partner.test", cand: partnerSRV, want: resolve.ErrDNSSECBogus,
			detail: "does not verify",
			change: tamper("xmpp.partner.test.", dns.TypeA, func(rr dns.RR) { rr.(*dns.A).A[3] = 9 })},
		{name: "expired signatures", domain: "partner.test", cand: partnerSRV, want: resolve.ErrDNSSECBogus,
			detail: "valid only from",
			change: func(rrs []dns.RR) []dns.RR {
				var out []dns.RR
				for _, rr := range rrs {
					if !dns.IsSubDomain("partner.test.", rr.Header().Name) {
						out = append(out, rr)
					}
				}
				return append(out, w.partner.Sign(t, worldNow.Add(-30*24*time.Hour), worldNow.Add(-time.Hour))...)
			}},
		{name: "signatures not yet valid", domain: "partner.test", cand: partnerSRV, want: resolve.ErrDNSSECBogus,
			detail: "valid only from",
			change: func(rrs []dns.RR) []dns.RR {
				var out []dns.RR
				for _, rr := range rrs {
					if !dns.IsSubDomain("partner.test.", rr.Header().Name) {
						out = append(out, rr)
					}
				}
				return append(out, w.partner.Sign(t, worldNow.Add(time.Hour), worldNow.Add(48*time.Hour))...)
			}},
		{name: "DS mismatch", domain: "mismatch.test", cand: srvCand("xmpp.mismatch.test", 5269, resolve.StartTLS),
			want: resolve.ErrDNSSECBogus, detail: "matches its DS"},
		{name: "other trust anchor", domain: "partner.test", cand: partnerSRV, want: resolve.ErrDNSSECBogus,
			anchors: []dns.RR{otherRootDS(w)}, detail: "trust anchors"},
		{name: "DS digest of another key", domain: "forged.test", cand: srvCand("xmpp.forged.test", 5269, resolve.StartTLS),
			want: resolve.ErrDNSSECBogus, detail: "matches its DS"},
		{name: "trust anchor digest", domain: "partner.test", cand: partnerSRV, want: resolve.ErrDNSSECBogus,
			anchors: []dns.RR{wrongDigest(w.root.DS())}, detail: "trust anchors"},
		{name: "DS tampered", domain: "partner.test", cand: partnerSRV, want: resolve.ErrDNSSECBogus,
			detail: "DS of partner.test.",
			change: tamper("partner.test.", dns.TypeDS, func(rr dns.RR) { rr.(*dns.DS).KeyTag++ })},
		{name: "island", domain: "island.test", cand: srvCand("xmpp.island.test", 5269, resolve.StartTLS),
			want: resolve.ErrDNSSECInsecure, detail: "no DS record for island.test."},
		{name: "unsigned zone", domain: "unsigned.test", cand: srvCand("xmpp.unsigned.test", 5269, resolve.StartTLS),
			want: resolve.ErrDNSSECInsecure, detail: "no RRSIG"},
		{name: "SRV unsigned, TLSA signed", domain: "partner.test", cand: partnerSRV, want: resolve.ErrDNSSECInsecure,
			detail: "no RRSIG over _xmpp-server._tcp.partner.test. SRV",
			change: func(rrs []dns.RR) []dns.RR {
				return without(rrs, "_xmpp-server._tcp.partner.test.", dns.TypeSRV, true)
			}},
		{name: "addresses unsigned", domain: "partner.test", cand: partnerSRV, want: resolve.ErrDNSSECInsecure,
			detail: "neither A nor AAAA",
			change: func(rrs []dns.RR) []dns.RR {
				rrs = without(rrs, "xmpp.partner.test.", dns.TypeA, true)
				return without(rrs, "xmpp.partner.test.", dns.TypeAAAA, true)
			}},
		{name: "TLSA unsigned", domain: "partner.test", cand: partnerSRV, want: resolve.ErrDNSSECInsecure,
			detail: "no RRSIG",
			change: func(rrs []dns.RR) []dns.RR {
				return without(rrs, "_5269._tcp.xmpp.partner.test.", dns.TypeTLSA, true)
			}},
		{name: "no TLSA", domain: "notlsa.test", cand: srvCand("xmpp.notlsa.test", 5269, resolve.StartTLS),
			want: resolve.ErrNoTLSA},
		{name: "candidate not in SRV", domain: "partner.test", cand: srvCand("xmpp.partner.test", 5999, resolve.StartTLS),
			want: resolve.ErrDNSSECInsecure, detail: "do not list"},
		{name: "TLSA of wrong service", domain: "partner.test", cand: srvCand("xmpp.partner.test", 5269, resolve.DirectTLS),
			want: resolve.ErrDNSSECInsecure, detail: "do not list"},
		{name: "override", domain: "partner.test", want: resolve.ErrDANENotApplicable,
			cand: resolve.Candidate{Host: "xmpp.partner.test", Port: 5269, Source: resolve.FromOverride}},
		{name: "IP literal", domain: "127.0.0.1", want: resolve.ErrDANENotApplicable,
			cand: resolve.Candidate{Host: "127.0.0.1", Port: 5269, Source: resolve.FromFallback}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rrs := w.records(t)
			if tt.change != nil {
				rrs = tt.change(rrs)
			}
			srv := resolvetest.NewServer(t, "")
			srv.SetRecords(rrs)
			a := anchors
			if tt.anchors != nil {
				a = tt.anchors
			}
			r := daneResolver(t, srv, "validate", a)
			recs, err := r.DANE(context.Background(), tt.domain, tt.cand)
			if !errors.Is(err, tt.want) {
				t.Fatalf("DANE = %v, %v; want %v", tlsaStrings(recs), err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.detail) {
				t.Errorf("error %q does not say %q", err, tt.detail)
			}
			if _, ok := errors.AsType[*resolve.DANEError](err); !ok {
				t.Errorf("error %T is no *DANEError", err)
			}
		})
	}
}

// wrongDigest changes the digest of ds, keeping its key tag and algorithm.
func wrongDigest(ds *dns.DS) *dns.DS {
	ds.Digest = strings.Repeat("5a", len(ds.Digest)/2)
	return ds
}

// otherRootDS is a DS record for the root made from another key.
func otherRootDS(w *world) dns.RR {
	ds := w.test.DS()
	ds.Hdr.Name = "."
	return ds
}

func TestDANETrustAD(t *testing.T) {
	srv := resolvetest.NewServer(t, unsignedZone)
	cand := srvCand("xmpp.unsigned.test", 5269, resolve.StartTLS)
	for _, ad := range []bool{true, false} {
		srv.SetSecure(ad)
		r := daneResolver(t, srv, "trust-ad", nil)
		recs, err := r.DANE(context.Background(), "unsigned.test", cand)
		if ad && (err != nil || len(recs) != 1) {
			t.Errorf("AD set: DANE = %v, %v; want the TLSA record", tlsaStrings(recs), err)
		}
		if !ad && !errors.Is(err, resolve.ErrDNSSECInsecure) {
			t.Errorf("AD clear: DANE = %v, %v; want %v", tlsaStrings(recs), err, resolve.ErrDNSSECInsecure)
		}
		q := srv.LastQuery()
		if opt := q.IsEdns0(); opt == nil || !opt.Do() || q.CheckingDisabled || !q.AuthenticatedData {
			t.Errorf("trust-ad query: want DO and AD, no CD; got %v", q)
		}
	}
}

func TestDANEOff(t *testing.T) {
	srv := resolvetest.NewServer(t, unsignedZone)
	srv.SetSecure(true)
	r := daneResolver(t, srv, "off", nil)
	_, err := r.DANE(context.Background(), "unsigned.test", srvCand("xmpp.unsigned.test", 5269, resolve.StartTLS))
	if !errors.Is(err, resolve.ErrDANEDisabled) {
		t.Fatalf("DANE = %v, want %v", err, resolve.ErrDANEDisabled)
	}
	if _, err := r.DANEForDomain(context.Background(), "unsigned.test"); !errors.Is(err, resolve.ErrDANEDisabled) {
		t.Fatalf("DANEForDomain = %v, want %v", err, resolve.ErrDANEDisabled)
	}
	if n := srv.Total(); n != 0 {
		t.Errorf("%d queries with DANE off", n)
	}
}

// TestDANEShared: concurrent lookups share the queries, and a second round
// is answered from the cache, until the answers expire.
func TestDANEShared(t *testing.T) {
	w := getWorld(t)
	srv := resolvetest.NewServer(t, "")
	srv.SetRecords(w.records(t))
	srv.SetDelay(20 * time.Millisecond)
	clk := newClock()
	cfg := dnsConfig(srv.Addr)
	r := newResolver(t, cfg, resolve.Options{Now: clk.Now, TrustAnchors: []dns.RR{w.root.DS()}})
	cand := srvCand("xmpp.partner.test", 5269, resolve.StartTLS)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := r.DANE(context.Background(), "partner.test", cand); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for q, n := range srv.Queries() {
		if n != 1 {
			t.Errorf("%s %s asked %d times", q.Name, dns.TypeToString[q.Type], n)
		}
	}
	// ., test., partner.test. DNSKEY; test., partner.test. DS; SRV; A;
	// AAAA; TLSA.
	if n := srv.Total(); n != 9 {
		t.Errorf("%d queries, want 9: %v", n, srv.Queries())
	}
	srv.ResetCounts()
	if _, err := r.DANE(context.Background(), "partner.test", cand); err != nil {
		t.Fatal(err)
	}
	if n := srv.Total(); n != 0 {
		t.Errorf("%d queries for a cached answer", n)
	}
	clk.Advance(301 * time.Second) // past the TTL of the SRV, A and TLSA records
	if _, err := r.DANE(context.Background(), "partner.test", cand); err != nil {
		t.Fatal(err)
	}
	if n := srv.Count("_5269._tcp.xmpp.partner.test.", dns.TypeTLSA); n != 1 {
		t.Errorf("TLSA asked %d times after expiry, want 1", n)
	}
	if n := srv.Count(".", dns.TypeDNSKEY); n != 0 {
		t.Errorf("root DNSKEY asked %d times within its TTL", n)
	}
	// Past the signatures' expiration nothing validates any more.
	clk.Advance(8 * 24 * time.Hour)
	if _, err := r.DANE(context.Background(), "partner.test", cand); !errors.Is(err, resolve.ErrDNSSECBogus) {
		t.Errorf("after the signatures expired: %v, want %v", err, resolve.ErrDNSSECBogus)
	}
}

func TestDANEForDomain(t *testing.T) {
	w := getWorld(t)
	srv := resolvetest.NewServer(t, "")
	srv.SetRecords(w.records(t))
	r := daneResolver(t, srv, "validate", []dns.RR{w.root.DS()})
	recs, err := r.DANEForDomain(context.Background(), "partner.test")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(tlsaStrings(recs), ", ")
	for _, want := range []string{"3 1 1 " + eeDigest, "2 0 1 " + taDigest} {
		if !strings.Contains(got, want) {
			t.Errorf("DANEForDomain = %s; missing %s", got, want)
		}
	}
	if len(recs) != 2 {
		t.Errorf("DANEForDomain = %s; want 2 records", got)
	}
	if _, err := r.DANEForDomain(context.Background(), "mismatch.test"); !errors.Is(err, resolve.ErrDNSSECBogus) {
		t.Errorf("mismatch.test: %v, want %v", err, resolve.ErrDNSSECBogus)
	}
	if _, err := r.DANEForDomain(context.Background(), "nowhere.test"); !errors.Is(err, resolve.ErrDANENotApplicable) {
		t.Errorf("nowhere.test: %v, want %v", err, resolve.ErrDANENotApplicable)
	}
}

func TestNewTrustAnchors(t *testing.T) {
	w := getWorld(t)
	srv := resolvetest.NewServer(t, "")
	srv.SetRecords(w.records(t))
	dir := t.TempDir()
	good := filepath.Join(dir, "root.ds")
	writeFile(t, good, "; the test root\n"+w.root.DS().String()+"\n")
	keyFile := filepath.Join(dir, "root.key")
	writeFile(t, keyFile, w.root.KSK.String()+"\n")
	for _, path := range []string{good, keyFile} {
		cfg := dnsConfig(srv.Addr)
		cfg.TrustAnchors = path
		r := newResolver(t, cfg, resolve.Options{Now: newClock().Now})
		if _, err := r.DANE(context.Background(), "partner.test", srvCand("xmpp.partner.test", 5269, resolve.StartTLS)); err != nil {
			t.Errorf("anchors from %s: %v", filepath.Base(path), err)
		}
	}

	// The built-in IANA anchors do not vouch for the test root.
	r := newResolver(t, dnsConfig(srv.Addr), resolve.Options{Now: newClock().Now})
	_, err := r.DANE(context.Background(), "partner.test", srvCand("xmpp.partner.test", 5269, resolve.StartTLS))
	if !errors.Is(err, resolve.ErrDNSSECBogus) {
		t.Errorf("built-in anchors: %v, want %v", err, resolve.ErrDNSSECBogus)
	}

	for name, text := range map[string]string{
		"missing":    "",
		"not root":   "test. IN DS 1 13 2 " + strings.Repeat("ab", 32),
		"SHA-1 only": ". IN DS 20326 8 1 " + strings.Repeat("ab", 20),
		"A record":   ". IN A 192.0.2.1",
		"garbage":    ". IN DS what",
	} {
		path := filepath.Join(dir, "bad")
		if name != "missing" {
			writeFile(t, path, text)
		} else {
			path = filepath.Join(dir, "absent")
		}
		cfg := dnsConfig(srv.Addr)
		cfg.TrustAnchors = path
		if _, err := resolve.New(cfg, resolve.Options{}); err == nil || !strings.Contains(err.Error(), "trust_anchors") {
			t.Errorf("%s: New = %v, want a dns.trust_anchors error", name, err)
		}
	}
	cfg := dnsConfig(srv.Addr)
	cfg.DNSSEC = "sometimes"
	if _, err := resolve.New(cfg, resolve.Options{}); err == nil {
		t.Error("New accepted dns.dnssec: sometimes")
	}
}
