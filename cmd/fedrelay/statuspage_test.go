package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/test/harness"
)

// chromium finds Debian's headless browser; without it the test is skipped,
// except in CI (FEDRELAY_INTEROP_REQUIRE=1, set by .ci/run as root), where
// .ci/run installs it and its absence is a failure.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("FEDRELAY_INTEROP_REQUIRE") == "1" {
		t.Fatal("chromium is not installed (.ci/run installs Debian's chromium package)")
	}
	t.Skip("chromium is not installed: apt-get install chromium")
	return ""
}

// TestStatusPage loads the status page of a running relay in headless
// Chromium, after traffic both ways and a breaker opened by a dead domain,
// and checks what the browser shows: the streams with their domains, the
// open breaker, the counters.
func TestStatusPage(t *testing.T) {
	browser := chromium(t)
	s := harness.StartSite(t, "admin: {listen: \"$IP:0\"}\nbreaker: {open_for: 1m, max_open_for: 2m}", "remote.test")
	s.DNS.SetSRV(t, "dead.test", harness.ClosedAddr(t))
	in := s.FromOutside(t, "remote.test")
	in.Send(harness.Message("bob@remote.test", "alice@a.test", "m-in", "hi"))
	s.Internal.WaitID(t, "m-in")
	out := s.FromInside(t, "remote.test")
	out.Send(harness.Message("alice@a.test", "bob@remote.test", "m-out", "hi"))
	s.Remote.WaitID(t, "m-out")
	dead := s.FromInside(t, "dead.test")
	for i := range 3 {
		dead.Send(harness.Message("alice@a.test", "bob@dead.test", "d"+string(rune('0'+i)), "hi"))
		s.Internal.Wait(t, "a bounce", func(st harness.Stanza) bool { return st.ID == "d"+string(rune('0'+i)) })
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--dump-dom", "http://"+s.Relay.AdminAddr()+"/")
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	page := string(dom)
	for _, want := range []string{
		"<h1>fedrelay test</h1>", "ready, up", `<table id="streams">`, "remote.test", "a.test", "TLS 1.3",
		"<td>federation</td><td>in</td>", "<td>internal</td><td>in</td>", "<td>federation</td><td>out</td>",
		"dead.test", `class="open">open</td>`, "connection refused", "<th>delivered</th>",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page Chromium shows lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", page)
	}
}
