package config_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/fedrelay/fedrelay/config"
)

// minimal is the smallest runnable configuration: one domain.
const minimal = `
domains:
  - {name: example.org, route: "10.0.0.5:5269"}
dialback: {secret: "0123456789abcdef-test-secret"}
`

func write(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// noEnv isolates a test from the process environment.
func noEnv(string) (string, bool) { return "", false }

func envOf(kv map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
}

func load(t *testing.T, name, body string, env map[string]string) (*config.Config, error) {
	t.Helper()
	return config.Load(config.Options{Path: write(t, name, body), Getenv: envOf(env)})
}

func TestDefaults(t *testing.T) {
	cfg, err := load(t, "c.yaml", minimal, nil)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"log.level", cfg.Log.Level, slog.LevelInfo},
		{"log.format", cfg.Log.Format, "text"},
		{"federation.listen", cfg.Federation.Listen, []string{"0.0.0.0:5269"}},
		{"federation.listen_tls", cfg.Federation.ListenTLS, []string{"0.0.0.0:5270"}},
		{"internal.listen", cfg.Internal.Listen, []string{"127.0.0.1:5369"}},
		{"internal.dns_listen", cfg.Internal.DNSListen, ""},
		{"tls.required", cfg.TLS.Required, true},
		{"tls.verify_peers", cfg.TLS.VerifyPeers, true},
		{"tls.min_version", cfg.TLS.MinVersion, uint16(tls.VersionTLS12)},
		{"dns.servers", len(cfg.DNS.Servers), 0},
		{"dns.timeout", cfg.DNS.Timeout, 5 * time.Second},
		{"dns.cache_size", cfg.DNS.CacheSize, 10000},
		{"limits.max_stanza_bytes", cfg.Limits.MaxStanzaBytes, 524288},
		{"limits.max_preauth_bytes", cfg.Limits.MaxPreauthBytes, 16384},
		{"limits.queue_stanzas", cfg.Limits.QueueStanzas, 1000},
		{"limits.idle_timeout", cfg.Limits.IdleTimeout, 15 * time.Minute},
		{"limits.connect_timeout", cfg.Limits.ConnectTimeout, 10 * time.Second},
		{"limits.max_streams", cfg.Limits.MaxStreams, 10000},
		{"limits.max_streams_per_ip", cfg.Limits.MaxStreamsPerIP, 100},
		{"breaker.failures", cfg.Breaker.Failures, 3},
		{"breaker.open_for", cfg.Breaker.OpenFor, 30 * time.Second},
		{"breaker.max_open_for", cfg.Breaker.MaxOpenFor, 10 * time.Minute},
		{"breaker.internal_open_for", cfg.Breaker.InternalOpenFor, time.Second},
		{"breaker.internal_max_open_for", cfg.Breaker.InternalMaxOpenFor, 5 * time.Second},
		{"policy.default", cfg.Policy.Default, "allow"},
		{"admin.listen", cfg.Admin.Listen, "127.0.0.1:9290"},
		{"domains[0].name", cfg.Domains[0].Name, "example.org"},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("unexpected warnings: %q", cfg.Warnings)
	}
}

func TestExampleConfig(t *testing.T) {
	cfg, err := config.Load(config.Options{Path: "../examples/fedrelay.yaml", Getenv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Domains[0].Name != "example.org" || cfg.Domains[0].Route != "10.0.0.5:5269" {
		t.Errorf("domains = %+v", cfg.Domains)
	}
	if len(cfg.Dialback.Secret) < 32 || len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "random secret") {
		t.Errorf("no secret configured: want a generated one and a warning, got warnings %q", cfg.Warnings)
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	env := map[string]string{
		"FEDRELAY_LOG_LEVEL":               "debug",
		"FEDRELAY_FEDERATION_LISTEN":       "127.0.0.1:5269, 127.0.0.2:5269",
		"FEDRELAY_LIMITS_IDLE_TIMEOUT":     "20m",
		"FEDRELAY_LIMITS_QUEUE_STANZAS":    "5",
		"FEDRELAY_TLS_REQUIRED":            "false",
		"FEDRELAY_DIALBACK_SECRET":         "from-the-environment-0123",
		"FEDRELAY_TLS_MIN_VERSION":         "1.3",
		"FEDRELAY_NOT_A_KEY":               "ignored",
		"FEDRELAY_POLICY_DEFAULT":          "deny",
		"FEDRELAY_INTERNAL_DNS_LISTEN":     "127.0.0.53:53",
		"FEDRELAY_BREAKER_MAX_OPEN_FOR":    "1h",
		"FEDRELAY_DNS_SERVERS":             "127.0.0.1",
		"FEDRELAY_ADMIN_LISTEN":            "",
		"FEDRELAY_FEDERATION_LISTEN_TLS":   "",
		"FEDRELAY_LIMITS_MAX_STANZA_BYTES": "100000",
	}
	cfg, err := load(t, "c.yaml", minimal, env)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.TrimSpace(fmt.Sprintln(cfg.Log.Level, cfg.Federation.Listen, cfg.Limits.IdleTimeout, cfg.Limits.QueueStanzas,
		cfg.TLS.Required, string(cfg.Dialback.Secret.Reveal()), cfg.TLS.MinVersion == tls.VersionTLS13,
		cfg.Policy.Default, cfg.Internal.DNSListen, cfg.Breaker.MaxOpenFor, cfg.DNS.Servers,
		cfg.Admin.Listen == "", len(cfg.Federation.ListenTLS), cfg.Limits.MaxStanzaBytes))
	want := "DEBUG [127.0.0.1:5269 127.0.0.2:5269] 20m0s 5 false from-the-environment-0123 true deny " +
		"127.0.0.53:53 1h0m0s [127.0.0.1:53] true 0 100000"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestEnvironmentFromProcess(t *testing.T) {
	t.Setenv("FEDRELAY_LOG_LEVEL", "debug")
	cfg, err := config.Load(config.Options{Path: write(t, "c.yaml", minimal)})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.Level != slog.LevelDebug {
		t.Errorf("log.level = %v, want debug from FEDRELAY_LOG_LEVEL", cfg.Log.Level)
	}
}

func TestFlagsOverrideEnvironmentAndFile(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.String("log-level", "", "")
	fs.StringSlice("internal-listen", nil, "")
	fs.String("admin-listen", "", "")
	if err := fs.Parse([]string{"--log-level=error", "--internal-listen=127.0.0.9:1,127.0.0.9:2"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Options{
		Path:   write(t, "c.yaml", minimal+"log: {level: warn}\n"),
		Getenv: envOf(map[string]string{"FEDRELAY_LOG_LEVEL": "debug"}),
		Flags: map[string]*pflag.Flag{"log.level": fs.Lookup("log-level"),
			"internal.listen": fs.Lookup("internal-listen"), "admin.listen": fs.Lookup("admin-listen")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.Level != slog.LevelError {
		t.Errorf("log.level = %v, want error (flag beats environment and file)", cfg.Log.Level)
	}
	if fmt.Sprint(cfg.Internal.Listen) != "[127.0.0.9:1 127.0.0.9:2]" {
		t.Errorf("internal.listen = %v", cfg.Internal.Listen)
	}
	if cfg.Admin.Listen != "127.0.0.1:9290" {
		t.Errorf("an unset flag changed admin.listen to %q", cfg.Admin.Listen)
	}
}

func TestFormats(t *testing.T) {
	toml := `
[log]
level = "warn"
[[domains]]
name = "example.org"
route = "10.0.0.5:5269"
[dialback]
secret = "0123456789abcdef-test-secret"
[dns.overrides]
"partner.example" = ["192.0.2.1:5269", "tls://192.0.2.1:5270"]
`
	json := `{"log": {"level": "warn"}, "domains": [{"name": "example.org", "route": "10.0.0.5:5269"}],
 "dialback": {"secret": "0123456789abcdef-test-secret"},
 "dns": {"overrides": {"partner.example": ["192.0.2.1:5269", "tls://192.0.2.1:5270"]}}}`
	yaml := minimal + `
log: {level: warn}
dns:
  overrides:
    partner.example: ["192.0.2.1:5269", "tls://192.0.2.1:5270"]
`
	for name, body := range map[string]string{"c.toml": toml, "c.json": json, "c.yaml": yaml, "c.conf": yaml} {
		t.Run(name, func(t *testing.T) {
			cfg, err := load(t, name, body, nil)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Log.Level != slog.LevelWarn || cfg.Domains[0].Route != "10.0.0.5:5269" {
				t.Errorf("log.level %v, domains %+v", cfg.Log.Level, cfg.Domains)
			}
			if got := fmt.Sprint(cfg.DNS.Overrides); got != "map[partner.example:[192.0.2.1:5269 tls://192.0.2.1:5270]]" {
				t.Errorf("dns.overrides = %s (a dotted domain must stay one key)", got)
			}
		})
	}
}

func TestBadConfiguration(t *testing.T) {
	tests := []struct {
		name, body string
		want       string // the whole error message, or a prefix ending in "…"
	}{
		{"unknown top-level key", minimal + "logg: {level: info}\n",
			`config: logg: unknown key (did you mean "log"?)`},
		{"unknown nested key", minimal + "log: {levle: info}\n",
			`config: log.levle: unknown key (did you mean "level"?)`},
		{"unknown key in a list item", "domains:\n  - {name: example.org, route: \"10.0.0.5:5269\", cert: x}\n",
			`config: domains[0].cert: unknown key`},
		{"unknown key in a rule", minimal + "policy: {rules: [{match: [a.example], kind: [iq]}]}\n",
			`config: policy.rules[0].kind: unknown key (did you mean "kinds"?)`},
		{"port out of range", "domains:\n  - {name: a.example, route: \"10.0.0.4:5269\"}\n  - {name: example.org, route: \"10.0.0.5:99999\"}\n",
			`config: domains[1].route: "10.0.0.5:99999": port out of range`},
		{"route without port", "domains:\n  - {name: example.org, route: \"10.0.0.5\"}\n",
			`config: domains[0].route: "10.0.0.5": not host:port`},
		{"missing route", "domains:\n  - {name: example.org}\n",
			`config: domains[0].route: required: host:port of the internal server for this domain`},
		{"bad listen address", minimal + "federation: {listen: [\"0.0.0.0:http\"]}\n",
			`config: federation.listen[0]: "0.0.0.0:http": port is not a number`},
		{"bad duration", minimal + "limits: {idle_timeout: 15x}\n",
			`config: limits.idle_timeout: "15x": not a duration (write a number with a unit: 500ms, 30s, 15m, 1h)`},
		{"duration without unit", minimal + "dns: {timeout: 5}\n",
			`config: dns.timeout: "5": a duration needs a unit (500ms, 30s, 15m, 1h)`},
		{"negative duration", minimal + "breaker: {open_for: -1s}\n",
			`config: breaker.open_for: "-1s": must be more than zero`},
		{"bad number", minimal + "limits: {queue_stanzas: many}\n",
			`config: limits.queue_stanzas: "many": not a whole number`},
		{"bad log level", minimal + "log: {level: loud}\n",
			`config: log.level: "loud": not a log level (debug, info, warn, error)`},
		{"bad log format", minimal + "log: {format: xml}\n",
			`config: log.format: "xml": must be text or json`},
		{"bad TLS version", minimal + "tls: {min_version: 1.1}\n",
			`config: tls.min_version: "1.1": not a supported TLS version ("1.2" or "1.3")`},
		{"domain with localpart", "domains:\n  - {name: user@example.org, route: \"10.0.0.5:5269\"}\n",
			`config: domains[0].name: "user@example.org": a domain only, without user@ or /resource`},
		{"duplicate domain", "domains:\n  - {name: example.org, route: \"10.0.0.5:5269\"}\n  - {name: EXAMPLE.org, route: \"10.0.0.6:5269\"}\n",
			`config: domains[1].name: "EXAMPLE.org": already listed as domains[0]`},
		{"no domains", "log: {level: info}\n",
			`config: domains: list at least one internal domain the relay fronts (name and route)`},
		{"cert without key", "domains:\n  - {name: example.org, route: \"10.0.0.5:5269\", cert_file: /nonexistent.pem}\n",
			`config: domains[0].cert_file: "/nonexistent.pem": cert_file and key_file go together: set both or neither…`},
		{"secret too short", "domains:\n  - {name: example.org, route: \"10.0.0.5:5269\"}\ndialback: {secret: short}\n",
			`config: dialback.secret: too short: use at least 16 characters`},
		{"missing secret file", "domains:\n  - {name: example.org, route: \"10.0.0.5:5269\"}\ndialback: {secret_file: /nonexistent/secret}\n",
			`config: dialback.secret_file: "/nonexistent/secret": no such file`},
		{"bad policy default", minimal + "policy: {default: maybe}\n",
			`config: policy.default: "maybe": must be allow or deny`},
		{"bad pattern", minimal + "policy: {deny: [\"evil.*\"]}\n",
			`config: policy.deny[0]: "evil.*": a wildcard is allowed only as the whole first label ("*.example.org")`},
		{"bad rule kind", minimal + "policy: {rules: [{match: [a.example], kinds: [chat]}]}\n",
			`config: policy.rules[0].kinds[0]: "chat": must be message, presence or iq`},
		{"bad override", minimal + "dns: {overrides: {partner.example: [\"tls://192.0.2.1\"]}}\n",
			`config: dns.overrides.partner.example[0]: "tls://192.0.2.1": not host:port`},
		{"max_ttl below min_ttl", minimal + "dns: {min_ttl: 1h, max_ttl: 1m}\n",
			`config: dns.max_ttl: "1m0s": must not be below dns.min_ttl (1h0m0s)`},
		{"stanza limit below RFC minimum", minimal + "limits: {max_stanza_bytes: 5000}\n",
			`config: limits.max_stanza_bytes: "5000": must be at least 10000 (RFC 6120 §13.12)…`},
		{"per-IP limit above the global one", minimal + "limits: {max_streams: 10, max_streams_per_ip: 20}\n",
			`config: limits.max_streams_per_ip: "20": must be between 1 and limits.max_streams`},
		{"same address twice", minimal + "federation: {listen: [\"127.0.0.1:5269\"]}\ninternal: {listen: [\"127.0.0.1:5269\"]}\n",
			`config: internal.listen[0]: "127.0.0.1:5269": already used by federation.listen[0]`},
		{"internal breaker period zero", minimal + "breaker: {internal_open_for: 0s}\n",
			`config: breaker.internal_open_for: "0s": must be more than zero`},
		{"internal breaker cap below its period", minimal + "breaker: {internal_open_for: 10s, internal_max_open_for: 2s}\n",
			`config: breaker.internal_max_open_for: "2s": must not be below breaker.internal_open_for`},
		{"not YAML", "domains: [\n", `config: --config: "…`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, "c.yaml", tc.body, nil)
			var errs config.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("err = %v (%T), want config.Errors", err, err)
			}
			got := err.Error()
			if prefix, ok := strings.CutSuffix(tc.want, "…"); ok {
				if !strings.HasPrefix(got, prefix) {
					t.Errorf("error\n got: %s\nwant: %s…", got, prefix)
				}
			} else if got != tc.want {
				t.Errorf("error\n got: %s\nwant: %s", got, tc.want)
			}
		})
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	const secret = "do-not-print-this-secret-0123"
	cfg, err := load(t, "c.yaml", "domains:\n  - {name: example.org, route: \"10.0.0.5:5269\"}\n"+
		"dialback: {secret: "+secret+"}\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := cfg.WriteYAML(&out); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("cfg", "secret", cfg.Dialback.Secret, "dialback", cfg.Dialback)
	for name, s := range map[string]string{
		"WriteYAML": out.String(), "%v": fmt.Sprintf("%v", cfg), "%+v": fmt.Sprintf("%+v", *cfg),
		"%#v": fmt.Sprintf("%#v", cfg.Dialback), "%s": fmt.Sprintf("%s", cfg.Dialback.Secret), "slog": logged.String(),
	} {
		if strings.Contains(s, secret) {
			t.Errorf("%s prints the secret: %s", name, s)
		}
	}
	if !strings.Contains(out.String(), "secret: '[redacted]'") {
		t.Errorf("WriteYAML does not show the secret as redacted:\n%s", out.String())
	}
	if string(cfg.Dialback.Secret.Reveal()) != secret {
		t.Error("Reveal does not return the secret")
	}
}

func TestSecretFile(t *testing.T) {
	p := write(t, "secret", "  file-secret-0123456789\n")
	cfg, err := load(t, "c.yaml", "domains:\n  - {name: example.org, route: \"10.0.0.5:5269\"}\n"+
		"dialback: {secret_file: "+p+"}\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg.Dialback.Secret.Reveal()) != "file-secret-0123456789" {
		t.Errorf("secret from file = %q", cfg.Dialback.Secret.Reveal())
	}
}

func TestNormalization(t *testing.T) {
	cfg, err := load(t, "c.yaml", "domains:\n  - {name: Bücher.Example, route: \"10.0.0.5:5269\"}\n"+
		"dialback: {secret: 0123456789abcdef-x}\ndns: {servers: [\"127.0.0.1\", \"[::1]:5353\"]}\n"+
		"policy: {deny: [\"*.EVIL.example\"], rules: [{match: [a.example], subscriptions: deny, rate: 2.5}]}\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Policy.Rules[0]
	got := strings.TrimSpace(fmt.Sprintln(cfg.Domains[0].Name, cfg.DNS.Servers, cfg.Policy.Deny, r.SubscriptionsIn, r.SubscriptionsOut, r.Burst))
	if want := "xn--bcher-kva.example [127.0.0.1:53 [::1]:5353] [*.evil.example] deny deny 3"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// FuzzLoad feeds arbitrary files to Load: it must never panic, and every
// failure must be an Errors value whose lines all begin with "config: ".
func FuzzLoad(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte("domains: [{name: a.example, route: '1.2.3.4:5'}]\npolicy: {rules: [{match: x.example, rate: 1}]}"))
	f.Add([]byte("limits: {idle_timeout: 1}\nlog: [1, 2]\ndomains: {a: b}"))
	f.Add([]byte("dns: {overrides: {a.example: 'tls://1.2.3.4:5'}}\ntls: {min_version: 1.3}"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, body []byte) {
		p := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(p, body, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := config.Load(config.Options{Path: p, Getenv: noEnv})
		if err == nil {
			return
		}
		var errs config.Errors
		if !errors.As(err, &errs) {
			t.Fatalf("error of type %T: %v", err, err)
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if !strings.HasPrefix(line, "config: ") {
				t.Fatalf("error line without key: %q", line)
			}
		}
	})
}
