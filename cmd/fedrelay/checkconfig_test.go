package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
