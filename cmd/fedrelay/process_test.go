package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The tests that run the relay as a process (SIGTERM, sd_notify, SIGUSR2)
// build it once.
var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildOut  []byte
)

// relayBinary builds cmd/fedrelay once per test run and returns its path;
// -short skips the test.
func relayBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: builds and runs the relay")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fedrelay-test-bin")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "fedrelay")
		buildOut, buildErr = exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build: %v\n%s", buildErr, buildOut)
	}
	return builtBin
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

// writeRelayConfig writes the configuration of a relay run as a process in
// the tests: a.test behind an address where nothing answers, no DNS, the
// federation and internal faces at fed and internal, and the extra lines
// (which may set policy and admin; admin is off otherwise). It returns the
// file's path.
func writeRelayConfig(t *testing.T, dir, fed, internal, extra string) string {
	t.Helper()
	if !strings.Contains(extra, "admin:") {
		extra += "\nadmin: {listen: \"\"}"
	}
	conf := fmt.Sprintf(`log: {level: info}
federation: {listen: [%q], listen_tls: [], secure_auth: false}
internal: {listen: [%q], dns_listen: ""}
domains: [{name: a.test, route: "127.0.0.1:9"}]
dialback: {secret: "0123456789abcdef0123456789abcdef"}
dns: {servers: ["127.0.0.1:9"], timeout: 1s, retries: 0}
limits: {drain_timeout: 1s}
%s
`, fed, internal, extra)
	path := filepath.Join(dir, "fedrelay.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
