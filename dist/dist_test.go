package dist_test

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The paths the packaging files agree on (cmd/fedrelay's
// TestDefaultConfigPath checks the binary's default is defaultConfig).
const (
	defaultConfig = "/etc/fedrelay/fedrelay.yaml"
	installedBin  = "/usr/local/bin/fedrelay"
)

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildDir  string
)

// testVersion and testCommit are what the tests build into the binary.
const (
	testVersion = "v0.0.0-disttest"
	testCommit  = "0123456789abcdef0123456789abcdef01234567"
)

// build runs dist/build.sh once for all the tests of the package, with the
// version and commit given in the environment.
func build(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: builds the binary")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "fedrelay-dist-")
		if buildErr != nil {
			return
		}
		builtBin = filepath.Join(buildDir, "fedrelay")
		cmd := exec.Command("sh", "build.sh", builtBin)
		cmd.Env = append(os.Environ(), "VERSION="+testVersion, "COMMIT="+testCommit)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("dist/build.sh: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// TestBuildScript: dist/build.sh makes a static binary whose version
// command names the version and commit given to the linker, although the
// build has -buildvcs=false (Go records no revision itself).
func TestBuildScript(t *testing.T) {
	bin := build(t)
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("fedrelay version: %v\n%s", err, out)
	}
	want := "fedrelay " + testVersion + " (" + testCommit[:12] + ") "
	if !strings.HasPrefix(string(out), want) {
		t.Errorf("fedrelay version = %q, want it to begin with %q", out, want)
	}
	// Go recorded no VCS information: the commit shown came from -X.
	out, err = exec.Command("go", "version", "-m", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, out)
	}
	for _, w := range []string{"CGO_ENABLED=0", "-trimpath=true"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("build settings lack %s:\n%s", w, out)
		}
	}
	if strings.Contains(string(out), "vcs.revision") {
		t.Errorf("the build recorded a VCS revision, so it does not test -ldflags -X:\n%s", out)
	}
	// Static: no program interpreter, no shared libraries (the image is
	// FROM scratch).
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a program interpreter: it is not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}
}

// TestDocumentedBuild: the documentation's build command is dist/build.sh,
// the one the Dockerfile runs, and it passes the version and commit the
// way the binary reads them.
func TestDocumentedBuild(t *testing.T) {
	script := read(t, "build.sh")
	for _, w := range []string{"CGO_ENABLED=0", "-buildvcs=false", "-X main.version=$VERSION", "-X main.commit=$COMMIT", "./cmd/fedrelay"} {
		if !strings.Contains(script, w) {
			t.Errorf("build.sh lacks %q", w)
		}
	}
	version := read(t, "../cmd/fedrelay/version.go")
	for _, v := range []string{"version", "commit"} {
		if !regexp.MustCompile(`(?m)^\s*` + v + `\s*=\s*""`).MatchString(version) {
			t.Errorf("cmd/fedrelay/version.go declares no variable %s for -X main.%s", v, v)
		}
	}
	for _, doc := range []string{"../README.md", "../docs/operators.md"} {
		if !strings.Contains(read(t, doc), "dist/build.sh") {
			t.Errorf("%s does not document dist/build.sh", doc)
		}
	}
}

// dockerfile is a parsed Dockerfile: its stages, each a list of
// instructions (keyword, arguments), continuation lines joined.
type instruction struct{ cmd, args string }

func parseDockerfile(t *testing.T, text string) [][]instruction {
	t.Helper()
	var stages [][]instruction
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("Dockerfile: %s before FROM", cmd)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], instruction{cmd, strings.TrimSpace(args)})
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	flush()
	return stages
}

func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t, read(t, "docker/Dockerfile"))
	if len(stages) != 2 {
		t.Fatalf("%d stages, want 2 (build, then the image)", len(stages))
	}
	find := func(stage []instruction, cmd string) []string {
		var out []string
		for _, in := range stage {
			if in.cmd == cmd {
				out = append(out, in.args)
			}
		}
		return out
	}
	// The build stage: the Go of go.mod, dist/build.sh.
	gomod := read(t, "../go.mod")
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	from := stages[0][0].args
	if !strings.HasPrefix(from, "golang:"+m[1]) || !strings.HasSuffix(from, " AS build") {
		t.Errorf("build stage FROM %q, want golang:%s… AS build", from, m[1])
	}
	var built string
	for _, run := range find(stages[0], "RUN") {
		if i := strings.Index(run, "sh dist/build.sh "); i >= 0 {
			built = strings.Fields(run[i+len("sh dist/build.sh "):])[0]
		}
	}
	if built == "" {
		t.Fatal("the build stage does not RUN dist/build.sh")
	}
	// The image: empty base, CA roots, the binary from the build, the ports.
	img := stages[1]
	if base := img[0].args; base != "scratch" && !strings.HasPrefix(base, "gcr.io/distroless/static") {
		t.Errorf("image FROM %q, want scratch or distroless/static", base)
	}
	copies := strings.Join(find(img, "COPY"), "\n")
	if !strings.Contains(copies, "--from=build /etc/ssl/certs/ca-certificates.crt ") {
		t.Error("the image gets no CA certificates")
	}
	if !strings.Contains(copies, "--from=build "+built+" "+installedBin) {
		t.Errorf("the image does not COPY the binary %s built by dist/build.sh to %s:\n%s", built, installedBin, copies)
	}
	if e := find(img, "EXPOSE"); len(e) != 1 || e[0] != "5269 5270" {
		t.Errorf("EXPOSE %q, want 5269 5270", e)
	}
	if e := find(img, "ENTRYPOINT"); len(e) != 1 || e[0] != `["`+installedBin+`"]` {
		t.Errorf("ENTRYPOINT %q", e)
	}
	if c := find(img, "CMD"); len(c) != 1 || c[0] != `["run"]` {
		t.Errorf("CMD %q, want [\"run\"] (reading %s)", c, defaultConfig)
	}
	if v := find(img, "VOLUME"); len(v) != 1 || !strings.Contains(v[0], `"`+filepath.Dir(defaultConfig)+`"`) {
		t.Errorf("VOLUME %q, want the directory of %s", v, defaultConfig)
	}
	if u := find(img, "USER"); len(u) != 1 || strings.HasPrefix(u[0], "0") || strings.HasPrefix(u[0], "root") {
		t.Errorf("USER %q: the image must not run as root", u)
	}
}

// unit is a parsed systemd unit file: section → key → values in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, text string) unit {
	t.Helper()
	u := unit{}
	section := ""
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		case section == "":
			t.Fatalf("line %d: %q outside a section", i+1, line)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("line %d: %q is not key=value", i+1, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func TestSystemdUnit(t *testing.T) {
	text := read(t, "systemd/fedrelay.service")
	u := parseUnit(t, text)
	svc := u["Service"]
	want := map[string]string{
		"Type":                    "notify",
		"NotifyAccess":            "all",
		"ExecStart":               installedBin + " run --config " + defaultConfig,
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"User":                    "fedrelay",
		"AmbientCapabilities":     "CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet":   "CAP_NET_BIND_SERVICE",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelLogs":       "yes",
		"ProtectControlGroups":    "yes",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"MemoryDenyWriteExecute":  "yes",
		"SystemCallFilter":        "@system-service",
		"LogsDirectory":           "fedrelay",
		"StateDirectory":          "fedrelay",
		// Exit status 2 is a bad configuration (cmd/fedrelay).
		"RestartPreventExitStatus": "2",
	}
	for k, v := range want {
		if got := svc[k]; len(got) != 1 || got[0] != v {
			t.Errorf("[Service] %s = %q, want %q", k, got, v)
		}
	}
	// The graceful stop (limits.drain_timeout, 10 s by default) fits in
	// the stop timeout.
	if d := svc["TimeoutStopSec"]; len(d) != 1 || !strings.HasSuffix(d[0], "s") {
		t.Errorf("TimeoutStopSec = %q, want seconds", d)
	} else if n, err := strconv.Atoi(strings.TrimSuffix(d[0], "s")); err != nil || n <= 10 {
		t.Errorf("TimeoutStopSec = %q, want more than limits.drain_timeout (10s)", d[0])
	}
	if w := u["Install"]["WantedBy"]; len(w) != 1 || w[0] != "multi-user.target" {
		t.Errorf("[Install] WantedBy = %q", w)
	}
	// The user exists once the sysusers.d entry is installed.
	sysusers := read(t, "systemd/fedrelay.sysusers")
	if !regexp.MustCompile(`(?m)^u fedrelay `).MatchString(sysusers) {
		t.Error("fedrelay.sysusers does not create the user fedrelay")
	}
	// Every key's spelling and value, as systemd itself reads them.
	verifyUnit(t, text)
}

// verifyUnit runs systemd-analyze verify and security on the unit, with
// ExecStart pointing at a freshly built binary (verify wants it to exist).
// verify exits 0 on unknown keys and bad values, printing a warning: any
// output is a failure.
func verifyUnit(t *testing.T, text string) {
	t.Helper()
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("no systemd-analyze (apt-get install systemd): the unit was only parsed")
	}
	bin := build(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	local := strings.ReplaceAll(text, installedBin+" ", bin+" ")
	good := write("fedrelay.service", local)
	out, err := exec.Command(sa, "verify", good).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The check can fail: a misspelt key and a bad value are reported.
	bad := write("broken.service", strings.Replace(strings.Replace(local, "\nType=notify\n", "\nType=notifyy\n", 1),
		"\nNoNewPrivileges=", "\nNoNewPrivilege=", 1))
	out, _ = exec.Command(sa, "verify", bad).CombinedOutput()
	for _, w := range []string{"notifyy", "NoNewPrivilege"} {
		if !bytes.Contains(out, []byte(w)) {
			t.Errorf("systemd-analyze verify of a broken unit does not report %s:\n%s", w, out)
		}
	}
	// The exposure systemd computes from the hardening (0 best, 10 worst);
	// the unit scores 1.8 with systemd 252.
	out, err = exec.Command(sa, "security", "--offline=true", "--threshold=25", good).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security --threshold=25 (exposure 2.5): %v\n%s", err, out)
	}
	if m := regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+)`).FindSubmatch(out); m != nil {
		t.Logf("systemd-analyze security: exposure %s", m[1])
	}
}
