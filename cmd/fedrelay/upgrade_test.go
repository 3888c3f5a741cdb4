package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/test/harness"
)

// TestUpgradeBouncesNothing: `fedrelay run` as a process carries messages
// both ways between a remote server and an internal one while it is sent
// SIGUSR2: a new process takes over the listening sockets, the old one
// drains and exits. Every message arrives, none bounces, and the port never
// refuses a connection. (Before, a restart closed the ports for a moment:
// in the interop restart scenario 109 of 400 messages bounced.)
func TestUpgradeBouncesNothing(t *testing.T) {
	bin := relayBinary(t)
	dir := t.TempDir()
	dns := harness.StartDNS(t)
	internal := harness.NewFakeServer(t, "internal a.test", "a.test")
	remote := harness.NewFakeServer(t, "remote remote.test", "remote.test")
	free := func() string {
		l := harness.Listen(t)
		defer l.Close()
		return l.Addr().String()
	}
	fed, face := free(), free()
	conf := fmt.Sprintf(`log: {level: debug}
federation: {listen: [%q], listen_tls: [], secure_auth: false}
internal: {listen: [%q], dns_listen: ""}
domains: [{name: a.test, route: %q}]
dialback: {secret: "0123456789abcdef0123456789abcdef"}
dns: {servers: [%q], timeout: 1s, retries: 0, min_ttl: 0s, max_ttl: 1s, allow_private: ["127.0.0.0/8"]}
limits: {drain_timeout: 10s, connect_rate_per_ip: 100000, connect_burst_per_ip: 100000}
admin: {listen: ""}
`, fed, face, internal.Addr, dns.Addr())
	path := filepath.Join(dir, "fedrelay.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	// The log goes to a file: the new process inherits it, and with a
	// pipe cmd.Wait would wait for that process too.
	logFile, err := os.Create(filepath.Join(dir, "relay.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	logs := fileText(logFile.Name())
	cmd := exec.Command(bin, "run", "--config", path)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		// The process that took over is not cmd: find it by its
		// executable and stop it too.
		cmd.Process.Kill()
		exec.Command("pkill", "-TERM", "-f", bin).Run()
		if t.Failed() {
			t.Logf("relay log:\n%s", logs.String())
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", fed)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the relay does not listen on %s: %v", fed, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	internal.SetAuthoritative(face)
	remote.SetAuthoritative(fed)
	dns.SetSRV(t, "remote.test", remote.Addr)
	dns.SetSRV(t, "a.test", fed)

	// Each sender keeps a stream open and opens a new one when the relay
	// ends it (system-shutdown while it drains), resending a message
	// whose write failed (harness.Sender).
	const n = 200
	var in, out harness.Sender
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		in.Send(t, remote, []string{fed}, 0, "remote.test", "a.test", "in", n, 10*time.Millisecond)
	}()
	go func() {
		defer wg.Done()
		out.Send(t, internal, []string{face}, 0, "a.test", "remote.test", "out", n, 10*time.Millisecond)
	}()
	time.Sleep(500 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the old process: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the old process still runs 20 s after SIGUSR2")
	}
	for _, c := range []struct {
		fake   *harness.FakeServer
		prefix string
	}{{internal, "in"}, {remote, "out"}} {
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("%s-%d", c.prefix, i)
			c.fake.Wait(t, "message "+id, func(st harness.Stanza) bool { return st.ID == id })
		}
	}
	bounces := internal.Count(func(st harness.Stanza) bool { return st.Type == "error" }) +
		remote.Count(func(st harness.Stanza) bool { return st.Type == "error" })
	if bounces != 0 {
		t.Errorf("%d bounces during the upgrade", bounces)
	}
	if n := in.Refused.Load() + out.Refused.Load(); n != 0 {
		t.Errorf("%d connections refused during the upgrade", n)
	}
	if strings.Contains(logs.String(), "graceful stop did not finish") {
		t.Errorf("the old process did not drain within limits.drain_timeout")
	}
	if !strings.Contains(logs.String(), "took over the listening sockets of the previous process") {
		t.Errorf("no new process took over")
	}
}

// fileText reads a file when its String is called.
type fileText string

func (f fileText) String() string {
	b, _ := os.ReadFile(string(f))
	return string(b)
}
