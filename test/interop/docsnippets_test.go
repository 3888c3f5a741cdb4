//go:build interop

package interop_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/fedrelay/fedrelay/docs"
)

// The server settings docs/operators.md tells operators to use are the ones
// these tests run: TestDocSnippets writes the interop servers'
// configurations (newProsody, newEjabberd, without starting them) and
// checks every setting of the documentation's snippets against them. Host
// names, addresses and file paths differ (the documentation's are
// examples); keys, modules, ports and values must not.

const operatorsDoc = "../../docs/operators.md"

func docSnippet(t *testing.T, info string) docs.Snippet {
	t.Helper()
	s, err := docs.Find(operatorsDoc, info)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 1 {
		t.Fatalf("docs/operators.md: %d snippets ```%s, want 1", len(s), info)
	}
	return s[0]
}

// luaSettings parses the top-level one-line statements of a Prosody
// configuration: name → value, and the VirtualHost lines.
func luaSettings(text string) (map[string]string, []string) {
	set := map[string]string{}
	var hosts []string
	assign := regexp.MustCompile(`^([a-z_0-9]+)\s*=\s*(.+?)\s*$`)
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if i := strings.Index(line, "--"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if h, ok := strings.CutPrefix(line, "VirtualHost "); ok {
			hosts = append(hosts, h)
		} else if m := assign.FindStringSubmatch(line); m != nil {
			set[m[1]] = m[2]
		}
	}
	return set, hosts
}

// luaTable splits a one-line Lua table into its items, "k = v" or values.
func luaTable(v string) []string {
	v = strings.TrimSpace(v)
	if !strings.HasPrefix(v, "{") || !strings.HasSuffix(v, "}") {
		return nil
	}
	inner := v[1 : len(v)-1]
	var items []string
	depth, start := 0, 0
	for i, c := range inner {
		switch c {
		case '{':
			depth++
		case '}':
			depth--
		case ',', ';':
			if depth == 0 {
				items = append(items, strings.TrimSpace(inner[start:i]))
				start = i + 1
			}
		}
	}
	if last := strings.TrimSpace(inner[start:]); last != "" {
		items = append(items, last)
	}
	return items
}

func isPath(v string) bool { return strings.HasPrefix(v, `"/`) }

func TestDocSnippets(t *testing.T) {
	requireOrSkip(t)
	dir, err := os.MkdirTemp("", "fedrelay-docsnippets-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)

	t.Run("prosody", func(t *testing.T) {
		// a.test, the internal server of the lab (lab_test.go), resolving
		// through the relay's internal DNS responder.
		if _, err := newProsody(prosodyGens()[0], filepath.Join(dir, "a.test"), "a.test", "127.0.77.2", nil,
			prosodyOpts{resolverIP: "127.0.77.53"}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, "a.test", "prosody.cfg.lua"))
		if err != nil {
			t.Fatal(err)
		}
		run, runHosts := luaSettings(string(b))
		doc := docSnippet(t, "lua prosody")
		want, wantHosts := luaSettings(doc.Text)
		if len(want) == 0 || len(wantHosts) != 1 || len(runHosts) != 1 {
			t.Fatalf("settings: documented %d and %d VirtualHost, run %d VirtualHost", len(want), len(wantHosts), len(runHosts))
		}
		for name, dv := range want {
			rv, ok := run[name]
			if !ok {
				t.Errorf("docs: %s = %s; the interop tests do not set %s", name, dv, name)
				continue
			}
			ditems, ritems := luaTable(dv), luaTable(rv)
			switch {
			case ditems == nil:
				if dv != rv {
					t.Errorf("docs: %s = %s; the interop tests run %s", name, dv, rv)
				}
			case name == "modules_enabled":
				for _, m := range ditems {
					if !contains2(ritems, m) {
						t.Errorf("docs: module %s; the interop tests do not enable it (%s)", m, rv)
					}
				}
			default:
				fields := map[string]string{}
				for _, it := range ritems {
					k, v, _ := strings.Cut(it, "=")
					fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
				}
				for _, it := range ditems {
					k, v, ok := strings.Cut(it, "=")
					if !ok {
						if !contains2(ritems, it) {
							t.Errorf("docs: %s has %s; the interop tests run %s", name, it, rv)
						}
						continue
					}
					k, v = strings.TrimSpace(k), strings.TrimSpace(v)
					r, ok := fields[k]
					switch {
					case !ok:
						t.Errorf("docs: %s.%s = %s; the interop tests do not set it (%s)", name, k, v, rv)
					case isPath(v) != isPath(r) || (!isPath(v) && v != r):
						t.Errorf("docs: %s.%s = %s; the interop tests run %s", name, k, v, r)
					}
				}
			}
		}
		// The resolver file: a nameserver line, the relay's responder.
		res := docSnippet(t, "text resolv.conf")
		rb, err := os.ReadFile(filepath.Join(dir, "a.test", "resolv.conf"))
		if err != nil {
			t.Fatal(err)
		}
		if f, g := strings.Fields(res.Text), strings.Fields(string(rb)); len(f) != 2 || len(g) != 2 || f[0] != g[0] {
			t.Errorf("docs: resolv.conf %q; the interop tests run %q", res.Text, rb)
		}
		if !strings.Contains(want["unbound"], "resolvconf") || !strings.Contains(run["unbound"], filepath.Join(dir, "a.test", "resolv.conf")) {
			t.Errorf("unbound: the documented and the run Prosody do not both read their resolv.conf: %s / %s", want["unbound"], run["unbound"])
		}
	})

	t.Run("ejabberd", func(t *testing.T) {
		// e.corp.test, the lab's ejabberd behind the relay, with its
		// shipped s2s_use_starttls: required and the relay's internal CA.
		if _, err := newEjabberd(ejabberdGens()[0], filepath.Join(dir, "e.corp.test"), "e.corp.test", "127.0.77.6", 5291,
			ejabberdOpts{resolverIP: "127.0.77.54", trustCA: []byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), starttlsRequired: true}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, "e.corp.test", "ejabberd.yml"))
		if err != nil {
			t.Fatal(err)
		}
		var run, want map[string]any
		if err := yaml.Unmarshal(b, &run); err != nil {
			t.Fatal(err)
		}
		doc := docSnippet(t, "yaml ejabberd")
		if err := yaml.Unmarshal([]byte(doc.Text), &want); err != nil {
			t.Fatalf("%s:%d: %v", doc.File, doc.Line, err)
		}
		for key, dv := range want {
			rv, ok := run[key]
			if !ok {
				t.Errorf("docs: %s; the interop tests do not set it", key)
				continue
			}
			switch key {
			case "listen":
				// Each documented listener, on the same port with the
				// same module and options (its address is an example).
				for _, d := range dv.([]any) {
					dl := d.(map[string]any)
					found := false
					for _, r := range rv.([]any) {
						rl := r.(map[string]any)
						same := len(rl) == len(dl)
						for k, v := range dl {
							if k != "ip" && fmt.Sprint(rl[k]) != fmt.Sprint(v) {
								same = false
							}
						}
						found = found || same
					}
					if !found {
						t.Errorf("docs: listener %v; the interop tests run %v", dl, rv)
					}
				}
			case "modules":
				rm := rv.(map[string]any)
				for m, v := range dv.(map[string]any) {
					if r, ok := rm[m]; !ok || fmt.Sprint(r) != fmt.Sprint(v) {
						t.Errorf("docs: module %s: %v; the interop tests run %v", m, v, r)
					}
				}
			default:
				if fmt.Sprint(rv) != fmt.Sprint(dv) {
					t.Errorf("docs: %s: %v; the interop tests run %v", key, dv, rv)
				}
			}
		}
		// inetrc: the same terms; file paths are examples.
		term := regexp.MustCompile(`^\{([a-z_]+),\s*(.*)\}\.$`)
		parse := func(text string) map[string]string {
			out := map[string]string{}
			for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
				if m := term.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
					out[m[1]] = m[2]
				}
			}
			return out
		}
		ib, err := os.ReadFile(filepath.Join(dir, "e.corp.test", "inetrc"))
		if err != nil {
			t.Fatal(err)
		}
		runRC, docRC := parse(string(ib)), parse(docSnippet(t, "erlang ejabberd-inetrc").Text)
		if len(docRC) == 0 {
			t.Fatal("docs: no inetrc terms")
		}
		for k, v := range docRC {
			r, ok := runRC[k]
			if !ok || isPath(v) != isPath(r) || (!isPath(v) && v != r) {
				t.Errorf("docs: inetrc {%s, %s}; the interop tests run {%s, %s}", k, v, k, r)
			}
		}
	})
}

func contains2(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
