package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = execute(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	n := 0
	file := func(body string) string {
		n++
		p := filepath.Join(dir, fmt.Sprintf("c%d.yaml", n))
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const good = "domains: [{name: example.org, route: '10.0.0.5:5269'}]\ndialback: {secret: 'top-secret-value-0123'}\n"
	tests := []struct {
		name       string
		args       []string
		code       int
		stdoutHas  string
		stderrWant string
	}{
		{"example", []string{"check-config", "--config", "../../examples/fedrelay.yaml"}, 0, "route: 10.0.0.5:5269", ""},
		{"redacted", []string{"check-config", "--config", file(good)}, 0, "secret: '[redacted]'", ""},
		{"flag override", []string{"check-config", "-c", file(good), "--log-level", "debug"}, 0, "level: debug", ""},
		{"unknown key", []string{"check-config", "--config", file(good + "tls: {requried: true}\n")}, 2, "",
			"config: tls.requried: unknown key (did you mean \"required\"?)\n"},
		{"bad address", []string{"check-config", "--config", file("domains: [{name: example.org, route: '10.0.0.5:99999'}]\n")}, 2, "",
			"config: domains[0].route: \"10.0.0.5:99999\": port out of range\n"},
		{"bad duration", []string{"check-config", "--config", file(good + "breaker: {open_for: soon}\n")}, 2, "",
			"config: breaker.open_for: \"soon\": not a duration (write a number with a unit: 500ms, 30s, 15m, 1h)\n"},
		{"bad flag value", []string{"check-config", "--config", file(good), "--log-level", "loud"}, 2, "",
			"config: log.level: \"loud\": not a log level (debug, info, warn, error)\n"},
		{"missing file", []string{"check-config", "--config", filepath.Join(dir, "nope.yaml")}, 2, "",
			"config: --config: \"" + filepath.Join(dir, "nope.yaml") + "\": no such file\n"},
		{"unknown flag", []string{"check-config", "--nope"}, 1, "", "unknown flag: --nope\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := run(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, stderr)
			}
			if !strings.Contains(stdout, tc.stdoutHas) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdoutHas, stdout)
			}
			if stderr != tc.stderrWant {
				t.Errorf("stderr %q, want %q", stderr, tc.stderrWant)
			}
			if strings.Contains(stdout+stderr, "top-secret-value") {
				t.Error("the secret was printed")
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := run(t, "version")
	if code != 0 || !strings.HasPrefix(stdout, "fedrelay ") {
		t.Errorf("version: exit %d, %q", code, stdout)
	}
}

// writeCA writes a CA certificate made by edit and its key to dir, as
// internal.ca_cert_file and ca_key_file.
func writeCA(t *testing.T, dir, name string, edit func(*x509.Certificate)) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

// TestCheckConfigInternalCA: check-config loads the internal CA as run
// would and refuses a bad one with exit status 2 and one line naming the
// key and saying what is wrong; a CA about to expire is a warning.
func TestCheckConfigInternalCA(t *testing.T) {
	dir := t.TempDir()
	goodCert, goodKey := writeCA(t, dir, "good", nil)
	_, otherKey := writeCA(t, dir, "other", nil)
	notCACert, notCAKey := writeCA(t, dir, "notca", func(c *x509.Certificate) { c.IsCA = false; c.KeyUsage = x509.KeyUsageDigitalSignature })
	expiredCert, expiredKey := writeCA(t, dir, "expired", func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
	})
	soonCert, soonKey := writeCA(t, dir, "soon", func(c *x509.Certificate) { c.NotAfter = time.Now().Add(72 * time.Hour) })
	config := func(cert, key string) string {
		p := filepath.Join(dir, fmt.Sprintf("%s-%s.yaml", filepath.Base(cert), filepath.Base(key)))
		body := fmt.Sprintf("domains: [{name: example.org, route: '10.0.0.5:5269'}]\ndialback: {secret: 'top-secret-value-0123'}\n"+
			"internal: {ca_cert_file: %q, ca_key_file: %q}\n", cert, key)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name      string
		cert, key string
		code      int
		stdoutHas string
		stderr    string // the whole of it
	}{
		{"good", goodCert, goodKey, 0, "ca_cert_file: " + goodCert, ""},
		{"expires soon", soonCert, soonKey, 0, "# warning: the internal CA CN=soon expires on", ""},
		{"not a CA", notCACert, notCAKey, 2, "",
			fmt.Sprintf("config: internal.ca_cert_file: %q: CN=notca is not a CA certificate\n", notCACert)},
		{"expired", expiredCert, expiredKey, 2, "",
			fmt.Sprintf("config: internal.ca_cert_file: %q: CN=expired expired on ", expiredCert)},
		{"key of another CA", goodCert, otherKey, 2, "",
			fmt.Sprintf("config: internal.ca_key_file: %q: the private key is not the key of CN=good\n", otherKey)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := run(t, "check-config", "--config", config(tc.cert, tc.key))
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, stderr)
			}
			if !strings.Contains(stdout, tc.stdoutHas) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdoutHas, stdout)
			}
			if tc.stderr == "" && stderr != "" || !strings.HasPrefix(stderr, tc.stderr) || strings.Count(stderr, "\n") > 1 {
				t.Errorf("stderr %q, want one line starting %q", stderr, tc.stderr)
			}
		})
	}
}
