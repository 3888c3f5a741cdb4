package routing_test

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fedrelay/fedrelay/s2s/peer"
	"github.com/fedrelay/fedrelay/s2s/resolve/resolvetest"
	"github.com/fedrelay/fedrelay/test/harness"
)

// pinOf is the pin_sha256 of a certificate's key.
func pinOf(t *testing.T, c *tls.Certificate) string {
	t.Helper()
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// certs is what the secure-auth tests give their remote server: a
// certificate from a CA the relay trusts, a self-signed one (an impostor,
// or a partner without a CA), and the CA's file for tls.ca_file.
type certs struct {
	caFile     string
	valid      tls.Certificate // CA-issued for partner.test
	selfSigned tls.Certificate // for partner.test, trusted by nobody
}

func newCerts(t *testing.T) certs {
	t.Helper()
	ca := harness.NewCA(t)
	cf, kf := ca.Issue(t, "partner.test")
	valid, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	self, err := peer.SelfSigned("partner.test")
	if err != nil {
		t.Fatal(err)
	}
	return certs{caFile: ca.File(), valid: valid, selfSigned: self}
}

// TestSecureAuthOutbound: with federation.secure_auth on, a stanza for
// partner.test goes out only to a server that proves it is partner.test:
// a certificate valid for it, or a pinned key; an impostor with a
// self-signed certificate where DNS points gets nothing (not even the
// relay's dialback key), and the sender gets remote-server-timeout saying
// why. A domain a rule marks insecure still works by dialback alone.
// (Before, the relay logged "not verified" and sent anyway, whatever the
// configuration said.)
func TestSecureAuthOutbound(t *testing.T) {
	c := newCerts(t)
	for _, tc := range []struct {
		name      string
		config    string
		cert      *tls.Certificate
		delivered bool
		why       string // in the bounce to the internal sender
	}{
		{name: "impostor", cert: &c.selfSigned, why: "could not be authenticated"},
		{name: "impostor, verify_peers false", config: "tls: {verify_peers: false}", cert: &c.selfSigned, why: "could not be authenticated"},
		{name: "impostor, require_auth and require_tls, secure_auth off", config: `federation: {secure_auth: false}
policy: {rules: [{match: [partner.test], require_auth: [external], require_tls: true}]}`, cert: &c.selfSigned, why: "does not accept"},
		{name: "impostor, default deny with partner.test allowed", config: "policy: {default: deny, allow: [partner.test]}", cert: &c.selfSigned, why: "could not be authenticated"},
		{name: "CA-valid certificate", config: "tls: {ca_file: %CA}", cert: &c.valid, delivered: true},
		{name: "CA-valid certificate, require_auth external", config: "tls: {ca_file: %CA}\npolicy: {rules: [{match: [partner.test], require_auth: [external]}]}", cert: &c.valid, delivered: true},
		{name: "pinned self-signed key", config: "policy: {rules: [{match: [partner.test], pin_sha256: [%PIN]}]}", cert: &c.selfSigned, delivered: true},
		{name: "CA-valid certificate, other key pinned", config: "tls: {ca_file: %CA}\npolicy: {rules: [{match: [partner.test], pin_sha256: [%OTHERPIN]}]}", cert: &c.valid, why: "not one pinned"},
		{name: "insecure partner", config: "policy: {rules: [{match: [partner.test], insecure: true}]}", cert: &c.selfSigned, delivered: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.config
			if !strings.Contains(cfg, "federation:") {
				cfg = "federation: {secure_auth: true}\n" + cfg
			}
			cfg = strings.NewReplacer("%CA", fmt.Sprintf("%q", c.caFile), "%PIN", pinOf(t, &c.selfSigned),
				"%OTHERPIN", pinOf(t, &c.selfSigned)).Replace(cfg)
			s := harness.StartSiteCert(t, cfg, tc.cert, "partner.test")
			out := s.FromInside(t, "partner.test")
			out.Send(harness.Message("alice@a.test", "bob@partner.test", "out-1", "hi"))
			if tc.delivered {
				s.Remote.WaitID(t, "out-1")
			} else {
				st := expectError(t, s.Internal, "out-1", "message", "wait", "remote-server-timeout")
				if _, _, text := st.StanzaError(); !strings.Contains(text, tc.why) {
					t.Errorf("bounce text %q, want one that says %q", text, tc.why)
				}
				notReceived(t, s.Remote, "out-1")
				for _, e := range s.Remote.Events() {
					if strings.Contains(e, "db:result") || strings.Contains(e, "dialback") {
						t.Errorf("the unauthenticated server heard from the relay: %s", e)
					}
				}
			}
			s.Relay.WaitBalanced(t)
		})
	}
}

// TestSecureAuthInbound: with federation.secure_auth on, a server of the
// federation is accepted for partner.test only with a certificate valid for
// it or a pinned key; dialback alone is refused (db:result type='error',
// policy-violation), unless a rule marks partner.test insecure. (Before,
// dialback alone was always enough.)
func TestSecureAuthInbound(t *testing.T) {
	c := newCerts(t)
	for _, tc := range []struct {
		name     string
		config   string
		cert     *tls.Certificate
		accepted bool
	}{
		{name: "self-signed, dialback only", cert: &c.selfSigned},
		{name: "CA-valid certificate", config: "tls: {ca_file: %CA}", cert: &c.valid, accepted: true},
		{name: "pinned self-signed key", config: "policy: {rules: [{match: [partner.test], pin_sha256: [%PIN]}]}", cert: &c.selfSigned, accepted: true},
		{name: "CA-valid certificate, other key pinned", config: "tls: {ca_file: %CA}\npolicy: {rules: [{match: [partner.test], pin_sha256: [%SELFPIN]}]}", cert: &c.valid},
		{name: "insecure partner", config: "policy: {rules: [{match: [partner.test], insecure: true}]}", cert: &c.selfSigned, accepted: true},
		{name: "secure_auth off", config: "federation: {secure_auth: false}", cert: &c.selfSigned, accepted: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.config
			if !strings.Contains(cfg, "federation:") {
				cfg = "federation: {secure_auth: true}\n" + cfg
			}
			cfg = strings.NewReplacer("%CA", fmt.Sprintf("%q", c.caFile), "%PIN", pinOf(t, &c.selfSigned),
				"%SELFPIN", pinOf(t, &c.selfSigned)).Replace(cfg)
			s := harness.StartSiteCert(t, cfg, tc.cert, "partner.test")
			in, err := s.Remote.TryDial(t, s.Relay.FederationAddr, "partner.test", "a.test")
			if !tc.accepted {
				if err == nil {
					t.Fatal("partner.test was accepted")
				}
				if !strings.Contains(err.Error(), "policy-violation") {
					t.Errorf("refused with %v, want policy-violation", err)
				}
				s.Relay.WaitBalanced(t)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			in.Send(harness.Message("bob@partner.test", "alice@a.test", "in-1", "hi"))
			s.Internal.WaitID(t, "in-1")
			s.Relay.WaitBalanced(t)
		})
	}
}

// TestSecureAuthDANE: a partner whose self-signed certificate no CA
// vouches for is authenticated by DANE: the TLSA record of its SRV target,
// in DNSSEC-signed zones that chain to the configured trust anchor,
// matches its key (3 1 1). A TLSA record for another key, or the same zones
// with dns.dnssec off, leave it unauthenticated, and the stanza bounces.
func TestSecureAuthDANE(t *testing.T) {
	c := newCerts(t)
	for _, tc := range []struct {
		name      string
		tlsaFor   *tls.Certificate
		dnssec    string
		delivered bool
	}{
		{"TLSA matches", &c.selfSigned, "validate", true},
		{"TLSA of another key", &c.valid, "validate", false},
		{"dnssec off", &c.selfSigned, "off", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := harness.NewFakeServerCert(t, "partner.test", &c.selfSigned, "partner.test")
			host, port, _ := net.SplitHostPort(fake.Addr)
			root := resolvetest.NewZone(t, ".", dns.ECDSAP256SHA256)
			tld := resolvetest.NewZone(t, "test.", dns.ECDSAP256SHA256)
			partner := resolvetest.NewZone(t, "partner.test.", dns.ECDSAP256SHA256)
			root.Add(t, ". 86400 SOA a.root. nstld. 1 1800 900 604800 86400")
			root.Delegate(tld)
			tld.Add(t, "@ 3600 SOA ns.test. admin.test. 1 7200 3600 1209600 60")
			tld.Delegate(partner)
			partner.Add(t,
				"@ 3600 SOA ns.partner.test. admin.partner.test. 1 7200 3600 1209600 60",
				"_xmpp-server._tcp 300 SRV 0 0 "+port+" xmpp.partner.test.",
				"xmpp 300 A "+host,
				"_"+port+"._tcp.xmpp 300 TLSA 3 1 1 "+spkiHex(t, tc.tlsaFor))
			now := time.Now()
			var all []dns.RR
			for _, z := range []*resolvetest.Zone{root, tld, partner} {
				all = append(all, z.Sign(t, now.Add(-time.Hour), now.Add(time.Hour))...)
			}
			srv := resolvetest.NewServer(t, "")
			srv.SetRecords(all)
			anchors := filepath.Join(t.TempDir(), "anchors")
			if err := os.WriteFile(anchors, []byte(root.DS().String()+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			internal := harness.NewFakeServer(t, "internal a.test", "a.test")
			relay := harness.StartRelay(t, fmt.Sprintf(`
domains: [{name: a.test, route: %q}]
federation: {secure_auth: true}
dns: {servers: [%q], dnssec: %s, trust_anchors: %q}
`, internal.Addr, srv.Addr, tc.dnssec, anchors), harness.WithName("relay"))
			internal.SetAuthoritative(relay.InternalAddr)
			fake.SetAuthoritative(relay.FederationAddr)
			out := internal.Dial(t, relay.InternalAddr, "a.test", "partner.test")
			out.Send(harness.Message("alice@a.test", "bob@partner.test", "dane-1", "hi"))
			if tc.delivered {
				fake.WaitID(t, "dane-1")
				if !relay.Logs.Has("outbound stream up", "peer_authenticated_by", "DANE") {
					t.Errorf("the link did not say DANE authenticated partner.test")
				}
			} else {
				expectError(t, internal, "dane-1", "message", "wait", "remote-server-timeout")
				notReceived(t, fake, "dane-1")
			}
			// Inbound: partner.test's server presents the same certificate
			// as its client certificate; the relay looks up the TLSA
			// records of partner.test's own SRV targets.
			in, err := fake.TryDial(t, relay.FederationAddr, "partner.test", "a.test")
			if tc.delivered {
				if err != nil {
					t.Fatalf("inbound from partner.test: %v", err)
				}
				in.Send(harness.Message("bob@partner.test", "alice@a.test", "dane-in", "hi"))
				internal.WaitID(t, "dane-in")
			} else if err == nil || !strings.Contains(err.Error(), "policy-violation") {
				t.Errorf("inbound from partner.test: %v, want refused with policy-violation", err)
			}
			relay.WaitBalanced(t)
		})
	}
}

// spkiHex is the TLSA 3 1 1 data of a certificate: SHA-256 of its key.
func spkiHex(t *testing.T, c *tls.Certificate) string {
	t.Helper()
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}
