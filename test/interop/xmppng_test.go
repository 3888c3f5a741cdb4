//go:build interop

package interop_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/test/harness"
)

// checkXMPPNG is the monitoring plugin of Debian's nagios-check-xmppng.
const checkXMPPNG = "/usr/lib/nagios/plugins/check_xmppng"

// TestCheckXMPPNG runs the monitoring check operators point at an XMPP
// service, check_xmppng --s2s --starttls, against the relay's federation
// face: it opens a stream to an internal domain, negotiates STARTTLS with
// SNI, verifies the certificate (here against the relay's internal CA,
// which signs the certificates the relay generates for internal domains
// without cert_file), restarts the stream and closes it. It must report OK
// (exit 0) for each internal domain; it reported an unexpected EOF before
// the relay sent close_notify. For a domain the relay does not serve it
// must report CRITICAL, so that an OK means something.
func TestCheckXMPPNG(t *testing.T) {
	if _, err := os.Stat(checkXMPPNG); err != nil {
		msg := "the check_xmppng test needs " + checkXMPPNG + " (apt-get install nagios-check-xmppng)"
		if os.Getenv("FEDRELAY_INTEROP_REQUIRE") == "1" {
			t.Fatal(msg + " (FEDRELAY_INTEROP_REQUIRE=1: not skipping)")
		}
		t.Skip(msg)
	}
	net := "127.0.77"
	if n := os.Getenv("FEDRELAY_INTEROP_NET"); n != "" {
		net = n
	}
	dir := t.TempDir()
	r := &relay{dir: dir, fed: net + ".20:5269", intl: net + ".21:5269", pubDNS: net + ".54:53",
		domains: []relayDomain{{name: "a.test", route: net + ".2:5269"}, {name: "d.test", route: net + ".5:5269"}}}
	ca := harness.NewCA(t)
	r.caCert, r.caKey = ca.File(), ca.KeyFile(t)
	if err := checkFree([]string{"tcp/" + r.fed, "tcp/" + r.intl}); err != nil {
		t.Fatal(err)
	}
	if err := r.start(nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.shutdown(); err != nil {
			t.Errorf("relay shutdown: %v", err)
		}
		r.logf.Close()
		if t.Failed() {
			t.Logf("relay.log:\n%s", tail(filepath.Join(dir, "relay.log"), 40))
		}
	})
	host, port, _ := strings.Cut(r.fed, ":")

	check := func(servername string) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, checkXMPPNG, "--host-address", host, "--port", port, "--s2s", "--starttls",
			"--servername", servername, "--ca-roots", r.caCert, "--verbose")
		// The plugin is "#!/usr/bin/env python3" and its modules are
		// Debian's: keep a python3 of another installation (pyenv, a
		// virtualenv) off its path.
		cmd.Env = append(os.Environ(), "PATH=/usr/sbin:/usr/bin:/sbin:/bin")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return 0, out.String()
		case errors.As(err, &ee):
			return ee.ExitCode(), out.String()
		}
		t.Fatalf("check_xmppng: %v\n%s", err, out.String())
		return 0, ""
	}
	for _, domain := range []string{"a.test", "d.test"} {
		code, out := check(domain)
		t.Logf("check_xmppng --s2s --starttls --servername %s: exit %d\n%s", domain, code, strings.TrimSpace(out))
		if code != 0 || !strings.HasPrefix(out, "XMPP OK") {
			t.Errorf("check_xmppng for %s: exit %d, want 0 and XMPP OK", domain, code)
		}
	}
	code, out := check("unknown.test")
	t.Logf("check_xmppng --servername unknown.test: exit %d\n%s", code, strings.TrimSpace(out))
	if code != 2 || !strings.HasPrefix(out, "XMPP CRITICAL") {
		t.Errorf("check_xmppng for a domain the relay does not serve: exit %d, want 2 (CRITICAL)", code)
	}
}
