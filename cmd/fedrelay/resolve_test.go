package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fedrelay/fedrelay/s2s/resolve/resolvetest"
)

// resolveCLI runs fedrelay with args and checks for leaked goroutines once
// the test's servers have stopped.
func resolveCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = execute(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// noLeaks checks at the very end of the test (after the servers' cleanups)
// that no goroutine started by the test is left.
func noLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// listenTCP accepts connections on 127.0.0.1 until the test ends; with cert
// set it speaks TLS offering ALPN xmpp-server.
func listenTCP(t *testing.T, cert *tls.Certificate) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if cert != nil {
					tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{*cert}, NextProtos: []string{"xmpp-server"}})
					if tc.Handshake() != nil {
						return
					}
					c = tc
				}
				io.Copy(io.Discard, c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).Port
}

func closedPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func testCert(t *testing.T) *tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		DNSNames:     []string{"some-other-name.test"}, // --connect does not verify
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

const resolveZone = `
_xmpps-server._tcp.example.test. 300  SRV 5 0 5270 xmpp.example.test.
_xmpp-server._tcp.example.test.  3600 SRV 10 7 5269 xmpp.example.test.
_xmpp-server._tcp.example.test.  3600 SRV 20 0 5269 backup.example.test.
_xmpp-server._tcp.nosrv.test.    300  SRV 0 0 0 .
plain.test.                      300  A 192.0.2.1
example.test.                    300  SOA ns.example.test. admin.example.test. 1 7200 3600 1209600 60
`

func TestResolveCommand(t *testing.T) {
	noLeaks(t)
	dns := resolvetest.NewServer(t, resolveZone)
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{{
		name: "candidates",
		args: []string{"resolve", "--nameserver", dns.Addr, "example.test"},
		stdout: "5 0 xmpp.example.test:5270 directtls ttl=300 dnssec=no\n" +
			"10 7 xmpp.example.test:5269 starttls ttl=3600 dnssec=no\n" +
			"20 0 backup.example.test:5269 starttls ttl=3600 dnssec=no\n",
	}, {
		name:   "fallback",
		args:   []string{"resolve", "--nameserver", dns.Addr, "plain.test"},
		stdout: "0 0 plain.test:5269 starttls ttl=300 dnssec=no\n",
	}, {
		name:   "no service",
		args:   []string{"resolve", "--nameserver", dns.Addr, "nosrv.test"},
		code:   1,
		stderr: "no S2S service: _xmpp-server._tcp.nosrv.test has target \".\"\n",
	}, {
		name:   "no such domain",
		args:   []string{"resolve", "--nameserver", dns.Addr, "missing.example.test"},
		code:   1,
		stderr: "domain not found: missing.example.test has no _xmpp-server or _xmpps-server SRV records and does not exist (NXDOMAIN)\n",
	}, {
		name:   "no domain",
		args:   []string{"resolve", "--nameserver", dns.Addr},
		code:   1,
		stderr: "accepts 1 arg(s), received 0\n",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := resolveCLI(t, tt.args...)
			if code != tt.code || stdout != tt.stdout || stderr != tt.stderr {
				t.Errorf("fedrelay %s\n= %d\nstdout:\n%s\nstderr:\n%s\nwant %d\nstdout:\n%s\nstderr:\n%s",
					strings.Join(tt.args, " "), code, stdout, stderr, tt.code, tt.stdout, tt.stderr)
			}
		})
	}
}

func TestResolveTimeout(t *testing.T) {
	noLeaks(t)
	silent := resolvetest.NewSilentServer(t)
	t.Setenv("FEDRELAY_DNS_TIMEOUT", "50ms")
	t.Setenv("FEDRELAY_DNS_RETRIES", "0")
	code, stdout, stderr := resolveCLI(t, "resolve", "--nameserver", silent, "example.test")
	want := "DNS lookup timed out: _xmpp-server._tcp.example.test SRV: " + silent + ": no answer\n"
	if code != 1 || stdout != "" || stderr != want {
		t.Errorf("= %d, stdout %q, stderr %q; want 1, %q", code, stdout, stderr, want)
	}
}

func TestResolveConnect(t *testing.T) {
	noLeaks(t)
	plain := listenTCP(t, nil)
	direct := listenTCP(t, testCert(t))
	refused := closedPort(t)
	dns := resolvetest.NewServer(t, fmt.Sprintf(`
_xmpps-server._tcp.probe.test. 300 SRV 1 0 %d xmpp.probe.test.
_xmpp-server._tcp.probe.test.  300 SRV 2 0 %d xmpp.probe.test.
_xmpp-server._tcp.probe.test.  300 SRV 3 0 %d xmpp.probe.test.
xmpp.probe.test.               300 A 127.0.0.1
_xmpp-server._tcp.down.test.   300 SRV 1 0 %d xmpp.probe.test.
`, direct, refused, plain, refused))

	code, stdout, stderr := resolveCLI(t, "resolve", "--connect", "--nameserver", dns.Addr, "probe.test")
	want := []string{
		fmt.Sprintf(`^1 0 xmpp\.probe\.test:%d directtls ttl=300 dnssec=no$`, direct),
		fmt.Sprintf(`^  connected to 127\.0\.0\.1:%d in [0-9.]+[µm]?s \(TLS 1\.3, ALPN xmpp-server, certificate not verified\)$`, direct),
		fmt.Sprintf(`^2 0 xmpp\.probe\.test:%d starttls ttl=300 dnssec=no$`, refused),
		fmt.Sprintf(`^  failed after [0-9.]+[µm]?s: dial tcp 127\.0\.0\.1:%d: connect: connection refused$`, refused),
		fmt.Sprintf(`^3 0 xmpp\.probe\.test:%d starttls ttl=300 dnssec=no$`, plain),
		fmt.Sprintf(`^  connected to 127\.0\.0\.1:%d in [0-9.]+[µm]?s \(TCP; STARTTLS not attempted\)$`, plain),
	}
	checkLines(t, stdout, want)
	if code != 0 || stderr != "" {
		t.Errorf("= %d, stderr %q; want 0", code, stderr)
	}

	code, stdout, stderr = resolveCLI(t, "resolve", "--connect", "--nameserver", dns.Addr, "down.test")
	checkLines(t, stdout, []string{
		fmt.Sprintf(`^1 0 xmpp\.probe\.test:%d starttls ttl=300 dnssec=no$`, refused),
		`^  failed after .*connection refused$`,
	})
	if wantErr := "connect down.test: none of the 1 candidates accepted a connection\n"; code != 1 || stderr != wantErr {
		t.Errorf("= %d, stderr %q; want 1, %q", code, stderr, wantErr)
	}
}

func checkLines(t *testing.T, out string, patterns []string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(patterns) {
		t.Errorf("%d lines, want %d:\n%s", len(lines), len(patterns), out)
		return
	}
	for i, p := range patterns {
		if !regexp.MustCompile(p).MatchString(lines[i]) {
			t.Errorf("line %d %q does not match %s", i+1, lines[i], p)
		}
	}
}

// --config supplies the dns section: its servers and its overrides.
func TestResolveConfigFile(t *testing.T) {
	noLeaks(t)
	dns := resolvetest.NewServer(t, resolveZone)
	path := filepath.Join(t.TempDir(), "fedrelay.yaml")
	body := fmt.Sprintf(`domains: [{name: example.org, route: '10.0.0.5:5269'}]
dialback: {secret: 'top-secret-value-0123'}
dns:
  servers: ['%s']
  overrides:
    partner.test: ['tls://10.1.2.3:5270', 'relay.partner.test:5269']
`, dns.Addr)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		domain, stdout string
	}{
		{"partner.test", "0 0 10.1.2.3:5270 directtls ttl=0 dnssec=no\n0 0 relay.partner.test:5269 starttls ttl=0 dnssec=no\n"},
		{"plain.test", "0 0 plain.test:5269 starttls ttl=300 dnssec=no\n"},
	} {
		code, stdout, stderr := resolveCLI(t, "resolve", "--config", path, tt.domain)
		if code != 0 || stdout != tt.stdout || stderr != "" {
			t.Errorf("resolve %s = %d\n%s%s\nwant 0\n%s", tt.domain, code, stdout, stderr, tt.stdout)
		}
	}

	code, _, stderr := resolveCLI(t, "resolve", "--config", filepath.Join(t.TempDir(), "missing.yaml"), "plain.test")
	if code != exitBadConfig || !strings.HasPrefix(stderr, "config: --config:") {
		t.Errorf("missing config file: %d %q, want exit 2", code, stderr)
	}
}
