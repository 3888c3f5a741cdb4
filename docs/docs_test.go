package docs_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.yaml.in/yaml/v3"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/docs"
	"github.com/fedrelay/fedrelay/s2s/peer"
)

// markdown lists the files whose snippets are checked.
func markdown(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../README.md", "../ARCHITECTURE.md")
	more, _ := filepath.Glob("../examples/*.md")
	return append(files, more...)
}

// checked maps every fence info string the documentation may use to what
// this test does with it; test/interop/docsnippets_test.go compares the
// server snippets with what the interop tests run.
var checked = map[string]string{
	"":                       "not checked (diagrams, output)",
	"sh":                     "not checked (commands)",
	"yaml":                   "loaded by config.Load",
	"zone":                   "parsed as a DNS zone",
	"logrotate":              "logrotate -d",
	"lua prosody":            "luac -p; test/interop compares it",
	"text resolv.conf":       "resolv.conf syntax; test/interop compares it",
	"yaml ejabberd":          "YAML; test/interop compares it",
	"erlang ejabberd-inetrc": "inetrc syntax; test/interop compares it",
	"text hosts":             "hosts syntax; test/interop compares it",
	"properties openfire":    "key=value syntax",
	"yaml kubernetes":        "YAML documents; the relay's settings they use are checked",
	"json":                   "audit records: each line a JSON object with the audit trail's keys",
}

func TestEveryFenceIsKnown(t *testing.T) {
	for _, f := range markdown(t) {
		snips, err := docs.Snippets(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range snips {
			if _, ok := checked[s.Info]; !ok {
				t.Errorf("%s:%d: fence ```%s is not one this test knows how to check (docs/docs_test.go: checked)", s.File, s.Line, s.Info)
			}
		}
	}
}

// sandbox rewrites the absolute paths of a snippet (/etc/…, /var/…) into
// dir, creating the files a configuration reads: certificates and keys (a
// real self-signed pair), secrets. Everything else in the snippet is
// loaded as written.
func sandbox(t *testing.T, dir, text string) string {
	t.Helper()
	paths := regexp.MustCompile(`(?:/etc|/var)/[^\s"',}\]]+`)
	crt, key, err := peer.SelfSignedPEM("example.org")
	if err != nil {
		t.Fatal(err)
	}
	return paths.ReplaceAllStringFunc(text, func(p string) string {
		local := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
			t.Fatal(err)
		}
		var content []byte
		switch {
		case strings.HasSuffix(p, ".crt") || strings.HasSuffix(p, ".pem"):
			content = crt
		case strings.HasSuffix(p, ".key"):
			content = key
		case strings.HasSuffix(p, ".secret") || strings.Contains(p, "secret"):
			content = []byte("a-documentation-secret-0123456789\n")
		}
		if content != nil {
			if err := os.WriteFile(local, content, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return local
	})
}

// load loads a relay snippet with config.Load, without the process
// environment; a fragment without domains gets one.
func load(t *testing.T, s docs.Snippet) (*config.Config, error) {
	t.Helper()
	dir := t.TempDir()
	text := sandbox(t, dir, s.Text)
	if !regexp.MustCompile(`(?m)^domains:`).MatchString(text) {
		text += "\ndomains: [{name: fragment.example, route: '10.0.0.5:5269'}]\n"
	}
	path := filepath.Join(dir, "snippet.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return config.Load(config.Options{Path: path, Getenv: func(string) (string, bool) { return "", false }})
}

// TestRelaySnippets: every ```yaml block of the documentation, and every
// file of examples/, is a configuration fedrelay accepts.
func TestRelaySnippets(t *testing.T) {
	n := 0
	for _, f := range markdown(t) {
		snips, err := docs.Find(f, "yaml")
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range snips {
			n++
			if _, err := load(t, s); err != nil {
				t.Errorf("%s:%d: the configuration snippet does not load:\n%v\n%s", s.File, s.Line, err, s.Text)
			}
		}
	}
	examples, _ := filepath.Glob("../examples/*.yaml")
	for _, e := range examples {
		n++
		b, err := os.ReadFile(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := load(t, docs.Snippet{File: e, Line: 1, Text: string(b)}); err != nil {
			t.Errorf("%s: %v", e, err)
		}
	}
	if n < 3 {
		t.Errorf("only %d relay configurations found: the snippets are not being found", n)
	}
	// The check can fail: a misspelt key is refused.
	if _, err := load(t, docs.Snippet{Text: "federation:\n  listne: [\"0.0.0.0:5269\"]\n"}); err == nil {
		t.Error("a snippet with an unknown key loaded")
	}
}

// operators loads the relay configuration of docs/operators.md (there is
// one complete one: the others refer to it).
func operators(t *testing.T) *config.Config {
	t.Helper()
	snips, err := docs.Find("operators.md", "yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(snips) != 1 {
		t.Fatalf("operators.md has %d relay configurations, want 1", len(snips))
	}
	cfg, err := load(t, snips[0])
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func ports(addrs []string) map[uint16]bool {
	out := map[uint16]bool{}
	for _, a := range addrs {
		if _, p, err := net.SplitHostPort(a); err == nil {
			n, _ := strconv.Atoi(p)
			out[uint16(n)] = true
		}
	}
	return out
}

// TestZoneSnippets: the zone records parse, and the SRV records of
// operators.md point at the ports its relay configuration listens on.
func TestZoneSnippets(t *testing.T) {
	for _, f := range markdown(t) {
		snips, err := docs.Find(f, "zone")
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range snips {
			zp := dns.NewZoneParser(strings.NewReader(s.Text), "", s.File)
			var rrs []dns.RR
			for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
				rrs = append(rrs, rr)
			}
			if err := zp.Err(); err != nil {
				t.Errorf("%s:%d: %v", s.File, s.Line, err)
				continue
			}
			if len(rrs) == 0 {
				t.Errorf("%s:%d: no records", s.File, s.Line)
			}
			if f != "operators.md" {
				continue
			}
			cfg := operators(t)
			starttls, direct := ports(cfg.Federation.Listen), ports(cfg.Federation.ListenTLS)
			var srv int
			for _, rr := range rrs {
				r, ok := rr.(*dns.SRV)
				if !ok {
					continue
				}
				srv++
				name := strings.ToLower(r.Hdr.Name)
				switch {
				case strings.HasPrefix(name, "_xmpp-server._tcp.") && !starttls[r.Port]:
					t.Errorf("%s:%d: %s points at port %d, where the relay has no federation.listen", s.File, s.Line, name, r.Port)
				case strings.HasPrefix(name, "_xmpps-server._tcp.") && !direct[r.Port]:
					t.Errorf("%s:%d: %s points at port %d, where the relay has no federation.listen_tls", s.File, s.Line, name, r.Port)
				}
				if !strings.HasSuffix(name, "."+strings.ToLower(cfg.Domains[0].Name)+".") {
					t.Errorf("%s:%d: %s is not a record of the relay's domain %s", s.File, s.Line, name, cfg.Domains[0].Name)
				}
			}
			if srv < 2 {
				t.Errorf("%s:%d: %d SRV records, want _xmpp-server and _xmpps-server", s.File, s.Line, srv)
			}
		}
	}
}

// TestLogrotateSnippets runs the logrotate configuration through
// logrotate's debug mode (nothing is rotated), with its paths in a
// temporary directory and its user and group made the current ones.
func TestLogrotateSnippets(t *testing.T) {
	snips, err := docs.Find("operators.md", "logrotate")
	if err != nil {
		t.Fatal(err)
	}
	if len(snips) == 0 {
		t.Fatal("operators.md has no logrotate configuration")
	}
	relay, err := docs.Find("operators.md", "yaml")
	if err != nil || len(relay) == 0 {
		t.Fatal("operators.md has no relay configuration", err)
	}
	m := regexp.MustCompile(`audit_log:\s*(\S+)`).FindStringSubmatch(relay[0].Text)
	if m == nil {
		t.Fatal("the relay configuration of operators.md sets no policy.audit_log")
	}
	for _, s := range snips {
		// The file rotated is the audit log the configuration writes.
		if !strings.HasPrefix(s.Text, m[1]+" {") {
			t.Errorf("%s:%d: the logrotate snippet does not rotate the audit log of the relay configuration (%s)", s.File, s.Line, m[1])
		}
		if !strings.Contains(s.Text, "systemctl reload fedrelay") {
			t.Errorf("%s:%d: the logrotate snippet does not reload the relay (the audit log reopens on SIGHUP)", s.File, s.Line)
		}
		lr, err := exec.LookPath("logrotate")
		if err != nil {
			t.Log("logrotate is not installed: its configuration was not run")
			continue
		}
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		g, err := user.LookupGroupId(u.Gid)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		text := sandbox(t, dir, strings.ReplaceAll(s.Text, "fedrelay fedrelay", u.Username+" "+g.Name))
		conf := filepath.Join(dir, "fedrelay.logrotate")
		os.WriteFile(conf, []byte(text), 0o644)
		out, err := exec.Command(lr, "-d", "-s", filepath.Join(dir, "state"), conf).CombinedOutput()
		if err != nil || strings.Contains(strings.ToLower(string(out)), "error") {
			t.Errorf("%s:%d: logrotate -d: %v\n%s", s.File, s.Line, err, out)
		}
	}
}

// TestServerSnippets checks the syntax of the internal servers' snippets
// (test/interop/docsnippets_test.go compares them with what the interop
// tests run), and that they point where the relay configuration listens.
func TestServerSnippets(t *testing.T) {
	cfg := operators(t)
	dnsHost, dnsPort, _ := net.SplitHostPort(cfg.Internal.DNSListen)
	if dnsPort != "53" {
		t.Errorf("operators.md: internal.dns_listen %s: resolv.conf can only name port 53", cfg.Internal.DNSListen)
	}
	intHost, intPort, _ := net.SplitHostPort(cfg.Internal.Listen[0])
	routeHost, routePort, _ := net.SplitHostPort(cfg.Domains[0].Route)
	one := func(info string) docs.Snippet {
		t.Helper()
		s, err := docs.Find("operators.md", info)
		if err != nil {
			t.Fatal(err)
		}
		if len(s) != 1 {
			t.Fatalf("operators.md: %d snippets ```%s, want 1", len(s), info)
		}
		return s[0]
	}

	// Prosody: Lua that compiles, on the route's port, for the domain.
	pro := one("lua prosody")
	if luac, err := exec.LookPath("luac"); err == nil {
		f := filepath.Join(t.TempDir(), "prosody.cfg.lua")
		os.WriteFile(f, []byte(pro.Text), 0o644)
		if out, err := exec.Command(luac, "-p", f).CombinedOutput(); err != nil {
			t.Errorf("%s:%d: luac -p: %v\n%s", pro.File, pro.Line, err, out)
		}
	} else {
		t.Log("no luac: the Prosody snippet's syntax was not checked")
	}
	for _, w := range []string{"s2s_ports = { " + routePort + " }", `VirtualHost "` + cfg.Domains[0].Name + `"`} {
		if !strings.Contains(pro.Text, w) {
			t.Errorf("%s:%d: the Prosody snippet lacks %s", pro.File, pro.Line, w)
		}
	}
	for _, info := range []string{"text resolv.conf"} {
		s := one(info)
		if strings.TrimSpace(s.Text) != "nameserver "+dnsHost {
			t.Errorf("%s:%d: resolv.conf %q, want nameserver %s (internal.dns_listen)", s.File, s.Line, s.Text, dnsHost)
		}
	}

	// ejabberd: YAML, its s2s listener on the route.
	ej := one("yaml ejabberd")
	var ejc struct {
		Listen []map[string]any `yaml:"listen"`
	}
	if err := yaml.Unmarshal([]byte(ej.Text), &ejc); err != nil {
		t.Errorf("%s:%d: %v", ej.File, ej.Line, err)
	}
	found := false
	for _, l := range ejc.Listen {
		if l["module"] == "ejabberd_s2s_in" && fmt.Sprint(l["port"]) == routePort && l["ip"] == routeHost {
			found = true
		}
	}
	if !found {
		t.Errorf("%s:%d: no ejabberd_s2s_in listener on the route %s", ej.File, ej.Line, cfg.Domains[0].Route)
	}
	inetrc := one("erlang ejabberd-inetrc")
	for _, line := range strings.Split(strings.TrimSpace(inetrc.Text), "\n") {
		if !regexp.MustCompile(`^\{[a-z_]+, .*\}\.$`).MatchString(line) {
			t.Errorf("%s:%d: %q is not an inetrc term", inetrc.File, inetrc.Line, line)
		}
	}
	hosts := one("text hosts")
	if strings.Join(strings.Fields(hosts.Text), " ") != intHost+" fedrelay.internal" {
		t.Errorf("%s:%d: hosts line %q, want %s fedrelay.internal (the responder's SRV target, the internal face)",
			hosts.File, hosts.Line, hosts.Text, intHost)
	}

	// Openfire: properties, the override on the internal face.
	of := one("properties openfire")
	for _, line := range strings.Split(strings.TrimSpace(of.Text), "\n") {
		if !regexp.MustCompile(`^[a-z][a-zA-Z0-9.\-]*=\S+$`).MatchString(line) {
			t.Errorf("%s:%d: %q is not key=value", of.File, of.Line, line)
		}
	}
	if !strings.Contains(of.Text, "dnsutil.dnsOverride={*,"+intHost+":"+intPort+"}") {
		t.Errorf("%s:%d: the Openfire DNS override does not point at the internal face %s", of.File, of.Line, cfg.Internal.Listen[0])
	}
}

// TestKubernetesSnippets parses the Kubernetes manifests and checks what
// they ask of the relay: the environment variables name real keys (loaded
// with config.Load through the environment), the probes use the admin
// endpoint's /readyz and /healthz, and the grace period outlasts
// limits.drain_timeout.
func TestKubernetesSnippets(t *testing.T) {
	for _, f := range markdown(t) {
		snips, err := docs.Find(f, "yaml kubernetes")
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range snips {
			dec := yaml.NewDecoder(strings.NewReader(s.Text))
			kinds := map[string]int{}
			for {
				var doc struct {
					Kind string
					Spec struct {
						Template struct {
							Spec struct {
								TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
								Containers                    []struct {
									Env            []struct{ Name, Value string }
									ReadinessProbe struct {
										HTTPGet struct{ Path string } `yaml:"httpGet"`
									} `yaml:"readinessProbe"`
									LivenessProbe struct {
										HTTPGet struct{ Path string } `yaml:"httpGet"`
									} `yaml:"livenessProbe"`
								}
							}
						}
					}
				}
				if err := dec.Decode(&doc); err != nil {
					if err.Error() != "EOF" {
						t.Errorf("%s:%d: %v", s.File, s.Line, err)
					}
					break
				}
				kinds[doc.Kind]++
				if doc.Kind != "Deployment" {
					continue
				}
				ps := doc.Spec.Template.Spec
				if len(ps.Containers) != 1 {
					t.Fatalf("%s:%d: %d containers", s.File, s.Line, len(ps.Containers))
				}
				c := ps.Containers[0]
				if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" {
					t.Errorf("%s:%d: probes %q and %q, want /readyz and /healthz", s.File, s.Line, c.ReadinessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path)
				}
				env := map[string]string{}
				for _, e := range c.Env {
					env[e.Name] = e.Value
				}
				dir := t.TempDir()
				if p, ok := env["FEDRELAY_DIALBACK_SECRET_FILE"]; ok {
					env["FEDRELAY_DIALBACK_SECRET_FILE"] = filepath.Join(dir, filepath.Base(p))
					os.WriteFile(env["FEDRELAY_DIALBACK_SECRET_FILE"], []byte("a shared secret of enough length\n"), 0o600)
				}
				// The ConfigMap's file is the operator's: one domain stands in.
				path := filepath.Join(dir, "fedrelay.yaml")
				os.WriteFile(path, []byte("domains: [{name: a.example, route: \"10.0.0.5:5269\"}]\n"), 0o600)
				cfg, err := config.Load(config.Options{Path: path, Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
				if err != nil {
					t.Errorf("%s:%d: the environment the manifest sets: %v", s.File, s.Line, err)
					continue
				}
				if cfg.Dialback.SecretFile != env["FEDRELAY_DIALBACK_SECRET_FILE"] {
					t.Errorf("%s:%d: FEDRELAY_DIALBACK_SECRET_FILE gave dialback.secret_file %q", s.File, s.Line, cfg.Dialback.SecretFile)
				}
				if cfg.Admin.Listen != env["FEDRELAY_ADMIN_LISTEN"] {
					t.Errorf("%s:%d: FEDRELAY_ADMIN_LISTEN gave admin.listen %q", s.File, s.Line, cfg.Admin.Listen)
				}
				if d := time.Duration(ps.TerminationGracePeriodSeconds) * time.Second; d <= cfg.Limits.DrainTimeout {
					t.Errorf("%s:%d: terminationGracePeriodSeconds %v does not outlast limits.drain_timeout %v", s.File, s.Line, d, cfg.Limits.DrainTimeout)
				}
			}
			if kinds["Deployment"] != 1 || kinds["Service"] < 1 {
				t.Errorf("%s:%d: kinds %v, want a Deployment and Services", s.File, s.Line, kinds)
			}
		}
	}
}

// TestJSONSnippets: the audit record examples are JSON objects with the
// keys every audit record has.
func TestJSONSnippets(t *testing.T) {
	for _, f := range markdown(t) {
		snips, err := docs.Find(f, "json")
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range snips {
			for i, line := range strings.Split(strings.TrimSpace(s.Text), "\n") {
				var rec map[string]any
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Errorf("%s:%d: line %d: %v", s.File, s.Line, i+1, err)
					continue
				}
				for _, k := range []string{"time", "event", "face", "dir", "decision", "reason", "rule"} {
					if _, ok := rec[k]; !ok {
						t.Errorf("%s:%d: line %d has no %q", s.File, s.Line, i+1, k)
					}
				}
			}
		}
	}
}
