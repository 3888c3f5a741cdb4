package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/cmd/fedrelay/app"
	"github.com/fedrelay/fedrelay/test/harness"
)

const testToken = "0123456789abcdef-test-token"

// adminSite is a relay with its admin endpoint and a token, fronting a.test,
// with remote.test served, evil.test denied, iq refused with remote.test,
// dead.test unreachable and stall.test never answering.
func adminSite(t *testing.T) (*harness.Site, string, string) {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := harness.StartSite(t, `
admin: {listen: "$IP:0", token_file: `+tokenFile+`}
policy: {deny: [evil.test], rules: [{match: [remote.test], kinds: [message, presence]}]}
`, "remote.test")
	s.DNS.SetSRV(t, "dead.test", harness.ClosedAddr(t))
	stall := harness.StartProxy(t, harness.ClosedAddr(t))
	stall.SetMode(harness.Stall)
	s.DNS.SetSRV(t, "stall.test", stall.Addr)
	addr := s.Relay.AdminAddr()
	if addr == "" {
		t.Fatal("no admin address")
	}
	return s, addr, tokenFile
}

// runAll runs the fedrelay command line and returns its exit status and
// its output, standard output then standard error.
func runAll(t *testing.T, args ...string) (int, string) {
	t.Helper()
	code, out, errOut := run(t, args...)
	return code, out + errOut
}

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAdminToken: with admin.token_file set, every endpoint but /healthz
// answers 401 without the token, or with a wrong one, and 200 with it.
func TestAdminToken(t *testing.T) {
	_, addr, _ := adminSite(t)
	for _, path := range []string{"/api/status", "/api/streams", "/api/breakers", "/api/queue", "/api/policy/check?domain=x.test",
		"/readyz", "/metrics", "/"} {
		if code, _ := get(t, "http://"+addr+path, ""); code != http.StatusUnauthorized {
			t.Errorf("GET %s without a token: %d, want 401", path, code)
		}
		if code, _ := get(t, "http://"+addr+path, "wrong-token-wrong-token"); code != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong token: %d, want 401", path, code)
		}
		if code, body := get(t, "http://"+addr+path, testToken); code != http.StatusOK {
			t.Errorf("GET %s with the token: %d %s", path, code, body)
		}
	}
	if code, _ := get(t, "http://"+addr+"/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz without a token: %d, want 200", code)
	}
	for _, cmd := range [][]string{{"status"}, {"streams"}, {"breakers"}, {"queue"}} {
		if code, out := runAll(t, append(cmd, "--admin", addr)...); code != exitFailure || !strings.Contains(out, "401") {
			t.Errorf("fedrelay %s without a token: exit %d: %s", cmd[0], code, out)
		}
	}
}

// TestAdminCommands drives each command against a running relay, as tables
// and as JSON: streams after traffic both ways, a breaker opened by a dead
// domain and reset, a queue behind a stalled domain, the policy dry run,
// closing a domain's streams, and a reload.
func TestAdminCommands(t *testing.T) {
	s, addr, tokenFile := adminSite(t)
	cli := func(t *testing.T, args ...string) string {
		t.Helper()
		code, out := runAll(t, append(args, "--admin", addr, "--token-file", tokenFile)...)
		if code != 0 {
			t.Fatalf("fedrelay %s: exit %d: %s", strings.Join(args, " "), code, out)
		}
		return out
	}
	in := s.FromOutside(t, "remote.test")
	in.Send(harness.Message("bob@remote.test", "alice@a.test", "m-in", "hi"))
	s.Internal.WaitID(t, "m-in")
	out := s.FromInside(t, "remote.test")
	out.Send(harness.Message("alice@a.test", "bob@remote.test", "m-out", "hi"))
	s.Remote.WaitID(t, "m-out")

	t.Run("streams", func(t *testing.T) {
		table := cli(t, "streams")
		t.Logf("fedrelay streams:\n%s", table)
		for _, want := range []string{"FACE", "federation  in", "internal    in", "federation  out", "remote.test", "a.test", "TLS 1.3"} {
			if !strings.Contains(table, want) {
				t.Errorf("streams table lacks %q:\n%s", want, table)
			}
		}
		// A link counts a stanza once its write returned, which may be
		// after the peer read it.
		var ss []app.StreamInfo
		harness.Eventually(t, func() bool {
			ss = nil
			if err := json.Unmarshal([]byte(cli(t, "streams", "--json")), &ss); err != nil {
				t.Fatal(err)
			}
			for _, s := range ss {
				if s.Direction == "out" && s.StanzasOut == 0 {
					return false
				}
			}
			return true
		}, "both links counting their stanza")
		var fedIn, link *app.StreamInfo
		for i := range ss {
			switch {
			case ss[i].Face == "federation" && ss[i].Direction == "in" && len(ss[i].Remote) == 1 && ss[i].Remote[0] == "remote.test" &&
				(fedIn == nil || ss[i].StanzasIn > fedIn.StanzasIn):
				// The stream that carried the message; remote.test's
				// db:verify stream for the link may still be open beside it.
				fedIn = &ss[i]
			case ss[i].Face == "federation" && ss[i].Direction == "out" && ss[i].Remote[0] == "remote.test":
				link = &ss[i]
			}
		}
		if fedIn == nil || fedIn.StanzasIn < 1 || fedIn.Auth != "dialback" || fedIn.Local[0] != "a.test" || fedIn.BytesIn == 0 {
			t.Errorf("inbound stream from remote.test: %+v", fedIn)
		}
		if link == nil || !link.Up || link.StanzasOut < 1 || link.BytesOut == 0 || link.Peer != s.Remote.Addr {
			t.Errorf("link to remote.test: %+v", link)
		}
	})

	t.Run("breakers", func(t *testing.T) {
		dead := s.FromInside(t, "dead.test")
		n := 0
		harness.Eventually(t, func() bool {
			// One attempt per stanza, each failing: breaker.failures (3)
			// of them open the breaker.
			n++
			dead.Send(harness.Message("alice@a.test", "bob@dead.test", fmt.Sprintf("dead-%d", n), "hi"))
			time.Sleep(50 * time.Millisecond)
			return strings.Contains(cli(t, "breakers"), "open")
		}, "dead.test's breaker open")
		table := cli(t, "breakers")
		t.Logf("fedrelay breakers:\n%s", table)
		if !strings.Contains(table, "dead.test") || !strings.Contains(table, "connection refused") {
			t.Errorf("breakers table:\n%s", table)
		}
		var bs []app.BreakerInfo
		if err := json.Unmarshal([]byte(cli(t, "breakers", "--json")), &bs); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, b := range bs {
			if b.Domain == "dead.test" {
				found = b.State == "open" && b.Failures >= 3 && !b.NextProbe.IsZero()
			}
		}
		if !found {
			t.Errorf("breakers JSON: %+v", bs)
		}
		if got := cli(t, "breakers", "reset", "dead.test"); !strings.Contains(got, "closed") {
			t.Errorf("reset: %s", got)
		}
		if strings.Contains(cli(t, "breakers"), "open") {
			t.Errorf("dead.test's breaker still open after reset")
		}
		if code, msg := runAll(t, "breakers", "reset", "never.test", "--admin", addr, "--token-file", tokenFile); code == 0 {
			t.Errorf("reset of an unknown breaker: exit 0 (%s)", msg)
		}
	})

	t.Run("queue", func(t *testing.T) {
		if got := cli(t, "queue"); !strings.Contains(got, "nothing queued") {
			t.Errorf("queue before: %s", got)
		}
		stall := s.FromInside(t, "stall.test")
		stall.Send(harness.Message("alice@a.test", "bob@stall.test", "q-1", "hi"))
		stall.Send(harness.Message("alice@a.test", "bob@stall.test", "q-2", "hi"))
		harness.Eventually(t, func() bool { return strings.Contains(cli(t, "queue"), "stall.test") }, "stall.test queued")
		table := cli(t, "queue")
		if !strings.Contains(table, "a.test") || !strings.Contains(table, "false") {
			t.Errorf("queue table:\n%s", table)
		}
		var q []app.QueueEntry
		if err := json.Unmarshal([]byte(cli(t, "queue", "--json")), &q); err != nil {
			t.Fatal(err)
		}
		if len(q) != 1 || q[0].To != "stall.test" || q[0].Stanzas != 2 || q[0].OldestQueued <= 0 {
			t.Errorf("queue JSON: %+v", q)
		}
	})

	t.Run("policy check", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want []string
		}{
			{[]string{"evil.test"}, []string{"REFUSED", "domain: deny-list by deny[0] evil.test", "policy-violation"}},
			{[]string{"remote.test"}, []string{"ALLOWED", "stanza"}},
			{[]string{"remote.test", "--kind", "iq"}, []string{"REFUSED", "rules[0].kinds", "not-allowed (cancel)"}},
			{[]string{"remote.test", "--kind", "iq", "--dir", "out"}, []string{"REFUSED", "rules[0].kinds"}},
			{[]string{"other.test", "--size", "999999"}, []string{"REFUSED", "limits.max_stanza_bytes", "policy-violation (modify)"}},
		} {
			got := cli(t, append([]string{"policy", "check"}, tc.args...)...)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("policy check %v: lacks %q:\n%s", tc.args, w, got)
				}
			}
		}
		var pc app.PolicyCheck
		if err := json.Unmarshal([]byte(cli(t, "policy", "check", "remote.test", "--kind", "subscribe", "--json")), &pc); err != nil {
			t.Fatal(err)
		}
		if !pc.Allowed || pc.Stage != "stanza" || pc.Kind != "subscribe" {
			t.Errorf("policy check JSON: %+v", pc)
		}
	})

	t.Run("status", func(t *testing.T) {
		table := cli(t, "status")
		for _, want := range []string{"ready", "streams federation/in", "stanzas delivered"} {
			if !strings.Contains(table, want) {
				t.Errorf("status lacks %q:\n%s", want, table)
			}
		}
		var st app.Status
		if err := json.Unmarshal([]byte(cli(t, "status", "--json")), &st); err != nil {
			t.Fatal(err)
		}
		if !st.Ready || st.Counters["delivered"] < 2 || st.Streams["federation/in"] < 1 {
			t.Errorf("status JSON: %+v", st)
		}
	})

	t.Run("close", func(t *testing.T) {
		got := cli(t, "close", "remote.test", "--condition", "policy-violation")
		if !strings.Contains(got, "streams with remote.test closed") || strings.HasPrefix(got, "0 ") {
			t.Errorf("close: %s", got)
		}
		if cond, _, err := in.StreamError(); cond != "policy-violation" {
			t.Errorf("the stream from remote.test got %q %v, want policy-violation", cond, err)
		}
		if code, msg := runAll(t, "close", "remote.test", "--condition", "bogus", "--admin", addr, "--token-file", tokenFile); code == 0 {
			t.Errorf("close with a bogus condition: exit 0 (%s)", msg)
		}
	})

	t.Run("reload", func(t *testing.T) {
		b, err := os.ReadFile(s.Relay.ConfigPath)
		if err != nil {
			t.Fatal(err)
		}
		got := cli(t, "reload")
		if !strings.Contains(got, "reload applied") {
			t.Errorf("reload: %s", got)
		}
		if err := os.WriteFile(s.Relay.ConfigPath, append(b, []byte("\nbogus_key: 1\n")...), 0o600); err != nil {
			t.Fatal(err)
		}
		code, msg := runAll(t, "reload", "--admin", addr, "--token-file", tokenFile)
		if code == 0 || !strings.Contains(msg, "refused") || !strings.Contains(msg, "bogus_key") {
			t.Errorf("reload of a bad file: exit %d: %s", code, msg)
		}
		if st := cli(t, "status"); !strings.Contains(st, "refused") {
			t.Errorf("status does not show the refused reload:\n%s", st)
		}
	})
}

// TestAdminUnreachable: a command exits non-zero when no relay answers.
func TestAdminUnreachable(t *testing.T) {
	code, out := runAll(t, "status", "--admin", harness.ClosedAddr(t))
	if code == 0 || !strings.Contains(out, "cannot reach") {
		t.Errorf("exit %d: %s", code, out)
	}
}
