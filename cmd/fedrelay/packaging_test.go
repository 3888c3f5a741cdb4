package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDefaultConfigPath: without --config, run and check-config read
// /etc/fedrelay/fedrelay.yaml (dist/ relies on it), and say so when it is
// missing; --config "" still means no file.
func TestDefaultConfigPath(t *testing.T) {
	if defaultConfigPath != "/etc/fedrelay/fedrelay.yaml" {
		t.Errorf("defaultConfigPath = %q: dist/systemd/fedrelay.service, dist/docker/Dockerfile and docs/operators.md name /etc/fedrelay/fedrelay.yaml",
			defaultConfigPath)
	}
	saved := defaultConfigPath
	t.Cleanup(func() { defaultConfigPath = saved })
	dir := t.TempDir()
	defaultConfigPath = filepath.Join(dir, "fedrelay.yaml")
	const good = "domains: [{name: example.org, route: '10.0.0.5:5269'}]\ndialback: {secret: 'top-secret-value-0123'}\n"

	// Missing: exit 2, the path named, and that it was the default.
	code, stdout, stderr := run(t, "check-config")
	want := fmt.Sprintf("config: --config: %q: no such file (the default configuration file, read when --config is not given)\n",
		defaultConfigPath)
	if code != exitBadConfig || stdout != "" || stderr != want {
		t.Errorf("missing default file: exit %d, stdout %q, stderr %q; want exit 2, stderr %q", code, stdout, stderr, want)
	}
	code, _, stderr = run(t, "run", "--admin-listen", "")
	if code != exitBadConfig || stderr != want {
		t.Errorf("run with a missing default file: exit %d, stderr %q; want exit 2, %q", code, stderr, want)
	}

	// Present: it is what check-config reads.
	if err := os.WriteFile(defaultConfigPath, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = run(t, "check-config", "--log-level", "debug")
	if code != 0 || !strings.HasPrefix(stdout, "# effective configuration from "+defaultConfigPath+"\n") ||
		!strings.Contains(stdout, "route: 10.0.0.5:5269") || !strings.Contains(stdout, "level: debug") {
		t.Errorf("default file: exit %d, stderr %q, stdout:\n%s", code, stderr, stdout)
	}

	// A path given is read instead, and its errors say nothing of defaults.
	other := filepath.Join(dir, "other.yaml")
	code, _, stderr = run(t, "check-config", "--config", other)
	if code != exitBadConfig || stderr != fmt.Sprintf("config: --config: %q: no such file\n", other) {
		t.Errorf("--config %s: exit %d, stderr %q", other, code, stderr)
	}
	// --config "": no file at all, so no domain.
	code, _, stderr = run(t, "check-config", "--config", "")
	if code != exitBadConfig || strings.Contains(stderr, defaultConfigPath) || !strings.Contains(stderr, "domains") {
		t.Errorf(`--config "": exit %d, stderr %q; want exit 2 about domains`, code, stderr)
	}
	// resolve keeps using the embedded defaults without --config.
	if cfg, err := loadForResolve(&configFlags{}); err != nil || cfg.Source != "" {
		t.Errorf("resolve without --config: %v, source %q", err, cfg.Source)
	}
}

// TestVersionCommit: the commit set with -X main.commit is shown.
func TestVersionCommit(t *testing.T) {
	sv, sc := version, commit
	t.Cleanup(func() { version, commit = sv, sc })
	version, commit = "v1.2.3", "89abcdef0123456789abcdef0123456789abcdef"
	if got := versionString(); !strings.HasPrefix(got, "fedrelay v1.2.3 (89abcdef0123) go") {
		t.Errorf("versionString() = %q", got)
	}
	commit = "89abcde"
	if got := versionString(); !strings.HasPrefix(got, "fedrelay v1.2.3 (89abcde) go") {
		t.Errorf("short commit: versionString() = %q", got)
	}
}

// notifySocket listens where $NOTIFY_SOCKET will point. Unix socket paths
// are short (108 bytes): it is made under os.TempDir, not t.TempDir.
func notifySocket(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, path
}

func readNotify(t *testing.T, c *net.UnixConn, d time.Duration) string {
	t.Helper()
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(d))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

func TestSDNotify(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if sent, err := sdNotify("READY=1"); sent || err != nil {
		t.Errorf("without NOTIFY_SOCKET: %v, %v", sent, err)
	}
	c, path := notifySocket(t)
	t.Setenv("NOTIFY_SOCKET", path)
	if sent, err := sdNotify("READY=1"); !sent || err != nil {
		t.Fatalf("sdNotify: %v, %v", sent, err)
	}
	if got := readNotify(t, c, 5*time.Second); got != "READY=1" {
		t.Errorf("got %q", got)
	}
	// Abstract sockets are written @name.
	name := fmt.Sprintf("fedrelay-test-%d", os.Getpid())
	ac, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "\x00" + name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	t.Setenv("NOTIFY_SOCKET", "@"+name)
	if sent, err := sdNotify("STOPPING=1"); !sent || err != nil {
		t.Fatalf("abstract: %v, %v", sent, err)
	}
	if got := readNotify(t, ac, 5*time.Second); got != "STOPPING=1" {
		t.Errorf("abstract: got %q", got)
	}
	// A socket that is gone is an error, not a hang.
	t.Setenv("NOTIFY_SOCKET", path+".gone")
	if _, err := sdNotify("READY=1"); err == nil {
		t.Error("no error for a missing socket")
	}
}

// TestRunNotifiesSystemd: `fedrelay run` under Type=notify sends READY=1
// (with its pid) only once its listeners accept connections, and
// STOPPING=1 when SIGTERM starts the graceful stop.
func TestRunNotifiesSystemd(t *testing.T) {
	bin := relayBinary(t)
	dir := t.TempDir()
	free := func() string { return freeAddr(t) }
	fed, internal := free(), free()
	path := writeRelayConfig(t, dir, fed, internal, "")
	c, sock := notifySocket(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "run", "--config", path)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("relay log:\n%s", logs.String())
		}
	}()
	ready := readNotify(t, c, 60*time.Second)
	if want := fmt.Sprintf("READY=1\nMAINPID=%d", cmd.Process.Pid); ready != want {
		t.Fatalf("first notification %q, want %q", ready, want)
	}
	for _, a := range []string{fed, internal} {
		conn, err := net.Dial("tcp", a)
		if err != nil {
			t.Fatalf("READY=1 was sent, but %s does not accept connections: %v", a, err)
		}
		conn.Close()
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := readNotify(t, c, 10*time.Second); got != "STOPPING=1" {
		t.Errorf("after SIGTERM: %q, want STOPPING=1", got)
	}
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Errorf("exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("still running 10 s after SIGTERM")
	}
}
