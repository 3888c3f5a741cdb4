package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestSIGHUPReopensAudit: `fedrelay run` writes its audit trail to
// policy.audit_log; once the file is renamed (log rotation), SIGHUP makes
// the relay write on to a new file at the configured path, while the
// renamed one keeps what was written before. The reloads show on
// /metrics: the SIGHUP's as a success, a broken configuration file's as a
// failure.
func TestSIGHUPReopensAudit(t *testing.T) {
	bin := relayBinary(t)
	dir := t.TempDir()
	fed, internal, admin := freeAddr(t), freeAddr(t), freeAddr(t)
	audit := filepath.Join(dir, "audit.log")
	path := writeRelayConfig(t, dir, fed, internal,
		fmt.Sprintf("policy: {deny: [evil.test], audit_log: %q}\nadmin: {listen: %q}", audit, admin))
	var logs lockedBuffer
	cmd := exec.Command(bin, "run", "--config", path)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("relay log:\n%s", logs.String())
		}
	}()

	metrics := func() string {
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + admin + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waited 15 s for %s", what)
			}
		}
	}
	hasLine := func(line string) func() bool {
		return func() bool { return strings.Contains(metrics(), "\n"+line+"\n") }
	}
	lines := func(path string) int {
		b, _ := os.ReadFile(path)
		return bytes.Count(b, []byte("\n"))
	}
	// A stream from a denied domain: refused at its header, one audit line.
	refused := func() {
		t.Helper()
		c, err := net.Dial("tcp", fed)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='a.test' from='evil.test' version='1.0'>")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c) // until the relay closes it
	}

	waitFor("the admin endpoint", func() bool { return metrics() != "" })
	refused()
	waitFor("the first audit line", func() bool { return lines(audit) == 1 })
	rotated := audit + ".1"
	if err := os.Rename(audit, rotated); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor("the SIGHUP's reload on /metrics", hasLine(`fedrelay_config_reloads_total{outcome="success"} 1`))
	refused()
	waitFor("an audit line in the new file", func() bool { return lines(audit) == 1 })
	if n := lines(rotated); n != 1 {
		t.Errorf("the rotated file has %d lines, want the 1 written before SIGHUP", n)
	}
	if b, _ := os.ReadFile(audit); !bytes.Contains(b, []byte(`"from":"evil.test","to":"a.test"`)) {
		t.Errorf("new audit file: %s", b)
	}

	// A broken file is refused (the watcher or a SIGHUP reloads it).
	conf, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(conf, "policy: {default: maybe}\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor("the refused reload on /metrics", hasLine(`fedrelay_config_last_reload_successful 0`))
	if !strings.Contains(metrics(), `fedrelay_config_reloads_total{outcome="failure"}`) {
		t.Errorf("no failed reload counted")
	}
}

// lockedBuffer is a bytes.Buffer the process writes while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
