package main

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/cmd/fedrelay/app"
	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/policy"
	"github.com/fedrelay/fedrelay/s2s/resolve/resolvetest"
)

// pemCert is a certificate and key written to PEM files.
type pemCert struct {
	cert     *x509.Certificate
	key      crypto.Signer
	certFile string
	keyFile  string
}

// certSpec says what certificate to make; zero fields take usable defaults.
type certSpec struct {
	names     []string // DNS-IDs
	notBefore time.Time
	notAfter  time.Time
	eku       []x509.ExtKeyUsage // nil: serverAuth and clientAuth
	ca        bool
	parent    *pemCert // nil: self-signed
}

func makeCert(t *testing.T, dir, name string, s certSpec) *pemCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if s.notBefore.IsZero() {
		s.notBefore = time.Now().Add(-time.Hour)
	}
	if s.notAfter.IsZero() {
		s.notAfter = time.Now().Add(90 * 24 * time.Hour)
	}
	if s.eku == nil && !s.ca {
		s.eku = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     s.names,
		NotBefore:    s.notBefore,
		NotAfter:     s.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  s.eku,
	}
	if s.ca {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	parent, signer := tmpl, crypto.Signer(key)
	if s.parent != nil {
		parent, signer = s.parent.cert, s.parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	tc := &pemCert{cert: cert, key: key,
		certFile: filepath.Join(dir, name+".crt"), keyFile: filepath.Join(dir, name+".key")}
	writeFile(t, tc.certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, tc.keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})))
	return tc
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// checkCLI runs fedrelay with args.
func checkCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut strings.Builder
	code = execute(args, &out, &errOut)
	t.Logf("fedrelay %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errOut.String())
	return code, out.String(), errOut.String()
}

// expectLine fails the test unless out has a line with the verdict, check
// and subject whose message contains every part.
func expectLine(t *testing.T, out, verdict, check, subject string, parts ...string) {
	t.Helper()
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != verdict || f[1] != check {
			continue
		}
		rest := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(line, verdict), " ")), check))
		if !strings.HasPrefix(rest, subject+": ") {
			continue
		}
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(rest, p)
		}
		if ok {
			return
		}
	}
	t.Errorf("no line %s %s %s: ...%q...", verdict, check, subject, parts)
}

// noLine fails the test if a line of out starts with verdict and check and
// names subject.
func noLine(t *testing.T, out, verdict, check, subject string) {
	t.Helper()
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == verdict && f[1] == check && strings.HasPrefix(strings.Join(f[2:], " "), subject+":") {
			t.Errorf("unexpected line: %s", line)
		}
	}
}

const checkSecret = "dialback: {secret: 'check-test-secret-0123456789'}\n"

func TestCheckCerts(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca := makeCert(t, dir, "ca", certSpec{ca: true, notBefore: now.Add(-400 * 24 * time.Hour), notAfter: now.Add(365 * 24 * time.Hour)})
	good := makeCert(t, dir, "good", certSpec{names: []string{"good.test"}, parent: ca})
	soon := makeCert(t, dir, "soon", certSpec{names: []string{"soon.test"}, parent: ca, notAfter: now.Add(5*24*time.Hour + time.Hour)})
	expired := makeCert(t, dir, "expired", certSpec{names: []string{"expired.test"}, parent: ca,
		notBefore: now.Add(-100 * 24 * time.Hour), notAfter: now.Add(-2 * 24 * time.Hour)})
	future := makeCert(t, dir, "future", certSpec{names: []string{"future.test"}, parent: ca, notBefore: now.Add(48 * time.Hour)})
	wrong := makeCert(t, dir, "wrong", certSpec{names: []string{"other.test"}, parent: ca})
	wild := makeCert(t, dir, "wild", certSpec{names: []string{"*.sub.test"}, parent: ca})
	mismatch := makeCert(t, dir, "mismatch", certSpec{names: []string{"mismatch.test"}, parent: ca})
	self := makeCert(t, dir, "self", certSpec{names: []string{"self.test"}})
	codeSign := makeCert(t, dir, "codesign", certSpec{names: []string{"codesign.test"}, parent: ca,
		eku: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}})
	otherCA := makeCert(t, dir, "otherca", certSpec{ca: true})
	untrusted := makeCert(t, dir, "untrusted", certSpec{names: []string{"untrusted.test"}, parent: otherCA})

	domain := func(name string, c *pemCert, keyFile string) string {
		if c == nil {
			return fmt.Sprintf("  - {name: %s, route: '127.0.0.1:9'}\n", name)
		}
		if keyFile == "" {
			keyFile = c.keyFile
		}
		return fmt.Sprintf("  - {name: %s, route: '127.0.0.1:9', cert_file: %q, key_file: %q}\n", name, c.certFile, keyFile)
	}
	conf := func(domains ...string) string {
		path := filepath.Join(t.TempDir(), "fedrelay.yaml")
		writeFile(t, path, checkSecret+fmt.Sprintf("tls: {ca_file: %q}\n", ca.certFile)+
			fmt.Sprintf("internal: {ca_cert_file: %q, ca_key_file: %q}\n", ca.certFile, ca.keyFile)+
			"domains:\n"+strings.Join(domains, ""))
		return path
	}

	t.Run("findings", func(t *testing.T) {
		path := conf(
			domain("good.test", good, ""),
			domain("soon.test", soon, ""),
			domain("expired.test", expired, ""),
			domain("future.test", future, ""),
			domain("wrongname.test", wrong, ""),
			domain("x.sub.test", wild, ""),
			domain("mismatch.test", mismatch, good.keyFile),
			domain("self.test", self, ""),
			domain("codesign.test", codeSign, ""),
			domain("untrusted.test", untrusted, ""),
			domain("generated.test", nil, ""),
		)
		code, out, stderr := checkCLI(t, "check", "certs", "--config", path)
		if code != exitFailure {
			t.Errorf("exit %d, want %d", code, exitFailure)
		}
		if !strings.Contains(stderr, "failed") {
			t.Errorf("stderr %q does not sum up the failures", stderr)
		}
		expectLine(t, out, "OK", "certs", "good.test", "certificate valid for good.test, chain to a trusted root, expires in 90 days ("+
			good.cert.NotAfter.UTC().Format(time.DateOnly)+")")
		expectLine(t, out, "OK", "certs", "x.sub.test", "certificate valid for x.sub.test") // wildcard DNS-ID
		expectLine(t, out, "WARN", "certs", "soon.test", "certificate valid for soon.test, chain to a trusted root, expires in 5 days", "renew it")
		expectLine(t, out, "FAIL", "certs", "expired.test", "expired on "+expired.cert.NotAfter.UTC().Format(time.DateOnly), "2 days ago")
		noLine(t, out, "FAIL", "certs", "expired.test: no chain") // judged while valid: trusted
		expectLine(t, out, "FAIL", "certs", "future.test", "not valid before")
		expectLine(t, out, "FAIL", "certs", "wrongname.test", "not valid for wrongname.test", "name mismatch", "other.test")
		expectLine(t, out, "FAIL", "certs", "mismatch.test", "key does not match the certificate")
		expectLine(t, out, "WARN", "certs", "self.test", "certificate valid for self.test, self-signed", "peers will not trust it", "dialback")
		noLine(t, out, "FAIL", "certs", "self.test")
		expectLine(t, out, "FAIL", "certs", "codesign.test", "does not allow serverAuth")
		expectLine(t, out, "FAIL", "certs", "untrusted.test", "no chain to a trusted root", "intermediate")
		expectLine(t, out, "WARN", "certs", "generated.test", "generates a self-signed certificate at start", "dialback")
		expectLine(t, out, "OK", "certs", "internal CA", "CN=ca: a CA with its key, may sign certificates, expires in 365 days")
		for _, d := range []string{"good.test", "x.sub.test", "soon.test", "self.test", "generated.test"} {
			noLine(t, out, "FAIL", "certs", d)
		}
	})

	t.Run("warnings only exit 0", func(t *testing.T) {
		code, out, _ := checkCLI(t, "check", "certs", "--config", conf(domain("soon.test", soon, ""), domain("self.test", self, "")))
		if code != exitOK {
			t.Errorf("exit %d with warnings only, want 0", code)
		}
		if strings.Contains(out, "FAIL") {
			t.Errorf("a FAIL line:\n%s", out)
		}
	})

	t.Run("good exit 0, json", func(t *testing.T) {
		code, out, _ := checkCLI(t, "check", "certs", "--json", "--config", conf(domain("good.test", good, "")))
		if code != exitOK {
			t.Errorf("exit %d, want 0", code)
		}
		var rep struct {
			Findings       []struct{ Verdict, Check, Subject, Message string }
			OK, Warn, Fail int
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("--json output: %v\n%s", err, out)
		}
		if rep.OK != 2 || rep.Fail != 0 || len(rep.Findings) != 2 || rep.Findings[0].Verdict != "OK" ||
			rep.Findings[0].Subject != "good.test" || rep.Findings[1].Subject != "internal CA" {
			t.Errorf("report %+v", rep)
		}
	})

	t.Run("internal CA not a CA", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "fedrelay.yaml")
		writeFile(t, path, checkSecret+fmt.Sprintf("internal: {ca_cert_file: %q, ca_key_file: %q}\n", good.certFile, self.keyFile)+
			"domains: [{name: x.test, route: '127.0.0.1:9'}]\n")
		code, out, _ := checkCLI(t, "check", "certs", "--config", path)
		if code != exitFailure {
			t.Errorf("exit %d, want 1", code)
		}
		expectLine(t, out, "FAIL", "certs", "internal CA", "key does not match")
		expectLine(t, out, "FAIL", "certs", "internal CA", "not a CA certificate")
	})
}

func TestCheckDNS(t *testing.T) {
	dns := resolvetest.NewServer(t, `
_xmpp-server._tcp.a.test.   300 SRV 0 5 5269 relay.a.test.
_xmpps-server._tcp.a.test.  300 SRV 0 5 5270 relay.a.test.
relay.a.test.               300 A 127.0.0.7
_xmpp-server._tcp.nat.test. 300 SRV 0 5 5269 public.nat.test.
public.nat.test.            300 A 198.51.100.7
_xmpp-server._tcp.port.test. 300 SRV 0 5 5999 relay.a.test.
_xmpp-server._tcp.mode.test. 300 SRV 0 5 5270 relay.a.test.
_xmpp-server._tcp.elsewhere.test. 300 SRV 0 5 5269 other.elsewhere.test.
other.elsewhere.test.       300 A 127.0.0.8
fallback.test.              300 A 127.0.0.7
_xmpp-server._tcp.none.test. 300 SRV 0 0 0 .
`)
	conf := func(allowPrivate string, domains ...string) string {
		var ds strings.Builder
		for _, d := range domains {
			fmt.Fprintf(&ds, "  - {name: %s, route: '127.0.0.1:9'}\n", d)
		}
		path := filepath.Join(t.TempDir(), "fedrelay.yaml")
		writeFile(t, path, checkSecret+
			"federation: {listen: ['127.0.0.7:5269'], listen_tls: ['127.0.0.7:5270']}\n"+
			fmt.Sprintf("dns: {servers: [%q], timeout: 1s, retries: 0, allow_private: [%s]}\n", dns.Addr, allowPrivate)+
			"domains:\n"+ds.String())
		return path
	}

	path := conf("'127.0.0.0/8'", "a.test", "nat.test", "port.test", "mode.test", "elsewhere.test", "fallback.test",
		"missing.test", "none.test")
	code, out, _ := checkCLI(t, "check", "dns", "--config", path)
	if code != exitFailure {
		t.Errorf("exit %d, want 1", code)
	}
	expectLine(t, out, "OK", "dns", "a.test", "_xmpp-server._tcp.a.test points at relay.a.test:5269 (127.0.0.7): the relay listens there (federation.listen 127.0.0.7:5269)")
	expectLine(t, out, "OK", "dns", "a.test", "_xmpps-server._tcp.a.test points at relay.a.test:5270 (127.0.0.7): the relay listens there (federation.listen_tls 127.0.0.7:5270)")
	noLine(t, out, "WARN", "dns", "a.test")
	expectLine(t, out, "WARN", "dns", "nat.test", "points at public.nat.test:5269 (198.51.100.7): not an address of this host", "NAT")
	expectLine(t, out, "INFO", "dns", "nat.test", "no _xmpps-server._tcp SRV records")
	expectLine(t, out, "FAIL", "dns", "port.test", "points at relay.a.test:5999", "does not listen on port 5999")
	expectLine(t, out, "FAIL", "dns", "mode.test", "that is the relay's direct TLS listener", "publish it as _xmpps-server._tcp")
	expectLine(t, out, "FAIL", "dns", "elsewhere.test", "(127.0.0.8): an address of this host where the relay does not listen")
	expectLine(t, out, "WARN", "dns", "fallback.test", "no _xmpp-server._tcp or _xmpps-server._tcp SRV records", "port 5269")
	expectLine(t, out, "OK", "dns", "fallback.test", "fallback.test (A/AAAA fallback) points at fallback.test:5269 (127.0.0.7): the relay listens there")
	expectLine(t, out, "FAIL", "dns", "missing.test", "no _xmpp-server or _xmpps-server SRV records", "does not exist")
	expectLine(t, out, "FAIL", "dns", "none.test", "offers no server-to-server service")

	t.Run("private address not allowed", func(t *testing.T) {
		code, out, _ := checkCLI(t, "check", "dns", "--config", conf("", "a.test"))
		if code != exitOK {
			t.Errorf("exit %d with warnings only, want 0", code)
		}
		expectLine(t, out, "WARN", "dns", "a.test", "the relay listens there", "loopback, private or link-local", "dns.allow_private")
	})

	t.Run("listening on every address", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "fedrelay.yaml")
		writeFile(t, path, checkSecret+"federation: {listen: ['0.0.0.0:5269'], listen_tls: []}\n"+
			fmt.Sprintf("dns: {servers: [%q], timeout: 1s, retries: 0, allow_private: ['127.0.0.0/8']}\n", dns.Addr)+
			"domains: [{name: a.test, route: '127.0.0.1:9'}, {name: nat.test, route: '127.0.0.1:9'}]\n")
		code, out, _ := checkCLI(t, "check", "dns", "--config", path)
		if code != exitFailure {
			t.Errorf("exit %d, want 1 (a.test's _xmpps-server record has no listener)", code)
		}
		expectLine(t, out, "OK", "dns", "a.test", "_xmpp-server._tcp.a.test points at relay.a.test:5269 (127.0.0.7): "+
			"an address of this host, where the relay listens (federation.listen 0.0.0.0:5269)")
		expectLine(t, out, "FAIL", "dns", "a.test", "_xmpps-server._tcp.a.test points at relay.a.test:5270",
			"the relay has no direct TLS listener (federation.listen_tls is empty)")
		expectLine(t, out, "WARN", "dns", "nat.test", "(198.51.100.7): not an address of this host; the relay listens on every address", "NAT")
	})

	t.Run("nameserver down", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "fedrelay.yaml")
		writeFile(t, path, checkSecret+"dns: {servers: ['"+resolvetest.NewSilentServer(t)+"'], timeout: 200ms, retries: 0}\n"+
			"domains: [{name: a.test, route: '127.0.0.1:9'}]\n")
		start := time.Now()
		code, out, _ := checkCLI(t, "check", "dns", "--config", path)
		if code != exitFailure {
			t.Errorf("exit %d, want 1", code)
		}
		expectLine(t, out, "FAIL", "dns", "a.test", "cannot tell")
		if took := time.Since(start); took > 15*time.Second {
			t.Errorf("took %s", took)
		}
	})
}

// routeServer is an internal server's S2S port that answers each stream
// header with a header from domain and features offering STARTTLS and
// dialback, or with the stream error cond when it is set.
func routeServer(t *testing.T, domain, cond string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				// The header ends with the first '>' after "<stream:stream".
				r := bufio.NewReader(c)
				if _, err := r.ReadString('?'); err != nil { // <?xml ...?>
					return
				}
				if _, err := r.ReadString('>'); err != nil {
					return
				}
				if _, err := r.ReadString('>'); err != nil {
					return
				}
				fmt.Fprintf(c, "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "+
					"xmlns:db='jabber:server:dialback' from='%s' id='x1' version='1.0'>", domain)
				if cond != "" {
					fmt.Fprintf(c, "<stream:error><%s xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>", cond)
					return
				}
				io.WriteString(c, "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"+
					"<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback></stream:features>")
				io.Copy(io.Discard, r)
			})
		}
	})
	return ln.Addr().String()
}

func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestCheckConnectivity(t *testing.T) {
	dir := t.TempDir()
	ca := makeCert(t, dir, "ca", certSpec{ca: true})
	good := makeCert(t, dir, "good", certSpec{names: []string{"a.test"}, parent: ca})
	routeA := routeServer(t, "a.test", "")
	routeB := closedAddr(t)
	routeC := routeServer(t, "c.test", "host-unknown")
	dns := resolvetest.NewServer(t, "")
	certA := good
	body := func(fed, fedTLS string) string {
		return checkSecret + fmt.Sprintf("federation: {listen: [%q], listen_tls: [%q]}\n", fed, fedTLS) +
			fmt.Sprintf("dns: {servers: [%q], timeout: 1s, retries: 0, allow_private: ['127.0.0.0/8']}\n", dns.Addr) +
			"internal: {listen: ['127.0.0.1:0']}\n" +
			fmt.Sprintf("tls: {ca_file: %q}\n", ca.certFile) +
			"limits: {connect_timeout: 2s, negotiation_timeout: 5s}\n" +
			"admin: {listen: ''}\n" +
			"domains:\n" +
			fmt.Sprintf("  - {name: a.test, route: %q, cert_file: %q, key_file: %q}\n", routeA, certA.certFile, certA.keyFile) +
			fmt.Sprintf("  - {name: b.test, route: %q}\n", routeB) +
			fmt.Sprintf("  - {name: c.test, route: %q}\n", routeC)
	}

	// The relay runs with ports picked at start; the check reads a copy
	// of its configuration naming the ports it got.
	runPath := filepath.Join(dir, "run.yaml")
	writeFile(t, runPath, body("127.0.0.2:0", "127.0.0.3:0"))
	cfg, err := config.Load(config.Options{Path: runPath, Getenv: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatal(err)
	}
	relay, err := app.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), app.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		relay.Shutdown(ctx)
	})
	fed, fedTLS := relay.Addrs(policy.Federation, false)[0], relay.Addrs(policy.Federation, true)[0]
	path := filepath.Join(dir, "check.yaml")
	writeFile(t, path, body(fed, fedTLS))
	fedPort, tlsPort := fed[strings.LastIndexByte(fed, ':')+1:], fedTLS[strings.LastIndexByte(fedTLS, ':')+1:]
	if err := dns.SetZone(fmt.Sprintf(`
_xmpp-server._tcp.a.test.  300 SRV 0 5 %s xmpp.a.test.
_xmpps-server._tcp.a.test. 300 SRV 0 5 %s tls.a.test.
xmpp.a.test.               300 A 127.0.0.2
tls.a.test.                300 A 127.0.0.3
_xmpp-server._tcp.b.test.  300 SRV 0 5 %s xmpp.a.test.
`, fedPort, tlsPort, tlsPort)); err != nil {
		t.Fatal(err)
	}

	code, out, _ := checkCLI(t, "check", "connectivity", "--config", path)
	if code != exitFailure {
		t.Errorf("exit %d, want 1 (b.test's route is closed)", code)
	}
	expectLine(t, out, "OK", "connectivity", "a.test at "+fed, "STARTTLS, TLS 1.3, features after TLS offer dialback; certificate valid for a.test")
	expectLine(t, out, "OK", "connectivity", "a.test at "+fedTLS, "direct TLS, TLS 1.3, features after TLS offer dialback; certificate valid for a.test")
	expectLine(t, out, "WARN", "connectivity", "b.test at "+fed, "STARTTLS", "the certificate presented is self-signed", "dialback")
	expectLine(t, out, "WARN", "connectivity", "b.test at "+fedTLS, "direct TLS", "self-signed")
	expectLine(t, out, "OK", "connectivity", "a.test route "+routeA, "the internal server answers for a.test; its features offer STARTTLS, dialback")
	expectLine(t, out, "FAIL", "connectivity", "b.test route "+routeB, "cannot connect to the internal server", "refused")
	expectLine(t, out, "FAIL", "connectivity", "c.test route "+routeC, "does not serve c.test", "<host-unknown/>")

	t.Run("all checks", func(t *testing.T) {
		code, out, _ := checkCLI(t, "check", "--config", path)
		if code != exitFailure {
			t.Errorf("exit %d, want 1", code)
		}
		expectLine(t, out, "OK", "certs", "a.test", "certificate valid for a.test")
		expectLine(t, out, "WARN", "certs", "b.test", "generates a self-signed certificate")
		expectLine(t, out, "OK", "connectivity", "a.test at "+fed, "STARTTLS")
		expectLine(t, out, "OK", "dns", "a.test", "_xmpp-server._tcp.a.test points at xmpp.a.test:"+fedPort+" (127.0.0.2): the relay listens there")
		expectLine(t, out, "OK", "dns", "a.test", "_xmpps-server._tcp.a.test points at tls.a.test:"+tlsPort+" (127.0.0.3): the relay listens there")
		expectLine(t, out, "FAIL", "dns", "b.test", "_xmpp-server._tcp.b.test points at xmpp.a.test:"+tlsPort,
			"does not listen on port "+tlsPort+" for STARTTLS")
		expectLine(t, out, "FAIL", "dns", "c.test", "does not exist")
	})

	t.Run("certificate file renewed, relay not reloaded", func(t *testing.T) {
		certA = makeCert(t, t.TempDir(), "renewed", certSpec{names: []string{"a.test"}, parent: ca})
		defer func() { certA = good }()
		renewed := filepath.Join(dir, "renewed.yaml")
		writeFile(t, renewed, body(fed, fedTLS))
		_, out, _ := checkCLI(t, "check", "connectivity", "--config", renewed)
		expectLine(t, out, "WARN", "connectivity", "a.test at "+fed, "certificate valid for a.test",
			"the relay presents another certificate than the one in cert_file now", "SIGHUP")
	})

	t.Run("relay not running", func(t *testing.T) {
		down := filepath.Join(dir, "down.yaml")
		closedFed, closedTLS := closedAddr(t), closedAddr(t)
		writeFile(t, down, body(closedFed, closedTLS))
		code, out, _ := checkCLI(t, "check", "connectivity", "--config", down)
		if code != exitFailure {
			t.Errorf("exit %d, want 1", code)
		}
		for _, a := range []string{closedFed, closedTLS} {
			expectLine(t, out, "FAIL", "connectivity", "a.test at "+a, "cannot connect", "refused")
		}
	})

	t.Run("unknown check", func(t *testing.T) {
		if code, _, _ := checkCLI(t, "check", "certz", "--config", path); code != exitFailure {
			t.Errorf("exit %d for an unknown check, want 1", code)
		}
	})

	t.Run("bad configuration", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.yaml")
		writeFile(t, bad, "domains: [{name: a.test, route: 'nowhere'}]\n")
		if code, _, _ := checkCLI(t, "check", "--config", bad); code != exitBadConfig {
			t.Errorf("exit %d for a bad configuration, want %d", code, exitBadConfig)
		}
	})
}
