//go:build interop

package interop_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/test/harness"
)

// issuePEM has ca issue a certificate for name (a DNS name such as b.test
// or *.corp.test, usable as TLS server and client) and returns it and its
// key (PEM), for a server's own certificate files.
func issuePEM(t testing.TB, ca *harness.CA, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	certFile, keyFile := ca.Issue(t, name)
	return readFile(t, certFile), readFile(t, keyFile)
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// 7. Secure authentication on the internal side, two internal domains
// behind the relay with their servers' shipped secure setting: d.test is a
// Prosody with s2s_secure_auth = true that trusts the relay's internal CA
// (s2s_ssl.cafile), e.corp.test an ejabberd with s2s_use_starttls:
// required and ca_file that CA (TLS on every stream, authenticated by
// dialback over it). Every stream between d.test and the relay
// must then carry a certificate that chains to that CA and names the
// remote domain: the one the relay presents as TLS server when d.test,
// which sends no SNI, opens a stream to b.test or c.test (chosen by the
// stream's 'to'), and the one it presents as TLS client on its own links to
// d.test. Messages, subscriptions, pings and disco#info flow both ways
// between each internal domain and b.test (Prosody) and c.test (ejabberd),
// and d.test's log shows the relay's certificates checked and found valid.
//
// Sub-test without-ca: the relay restarted without internal.ca_cert_file
// presents self-signed certificates, and d.test refuses them both ways
// (the messages come back as errors and are not delivered); with the CA
// again, messages flow again.
func (l *lab) secureAuth(t *testing.T) {
	l.watchLogs(t)
	erin := l.login(t, l.erin, "s7")
	frank := l.login(t, l.frank, "s7")
	bob := l.login(t, l.bob, "s7")
	carol := l.login(t, l.carol, "s7")
	dlog := filepath.Join(l.d.dir, "prosody.log")
	from := fileSize(dlog)
	pairs := []struct{ from, to *Client }{{erin, bob}, {bob, erin}, {erin, carol}, {carol, erin},
		{frank, bob}, {bob, frank}, {frank, carol}, {carol, frank}}
	for _, p := range pairs {
		body := l.token("secure hello from " + p.from.Name)
		took := l.deliver(t, p.from, p.to, body)
		t.Logf("%s → %s delivered in %v", bare(p.from.JID), bare(p.to.JID), took.Round(time.Millisecond))
	}
	for _, p := range [][2]*Client{{erin, bob}, {frank, carol}, {carol, erin}, {bob, frank}} {
		subscribe(t, p[0], p[1])
		t.Logf("%s and %s subscribed to each other and see each other online", bare(p[0].JID), bare(p[1].JID))
	}
	for _, p := range pairs {
		ping(t, p.from, p.to.JID)
	}
	for _, p := range pairs {
		disco(t, p.from, p.to.JID[strings.IndexByte(p.to.JID, '@')+1:strings.IndexByte(p.to.JID, '/')])
	}
	t.Log("pings between the users and disco#info of the servers answered both ways")
	noErrors(t, erin, frank, bob, carol)
	if bad := grepFrom(dlog, from, "Forbidding insecure connection"); len(bad) > 0 {
		t.Errorf("d.test refused a connection with the relay's internal CA in place:\n\t%s", strings.Join(bad, "\n\t"))
	}
	for _, what := range []string{"certificate chain validation result: valid", "certificate identity validation result: valid"} {
		if n := len(grepFrom(dlog, from, what)); n < 2 {
			t.Errorf("d.test's log has %d lines %q, want one for each direction at least", n, what)
		}
	}
	// ejabberd's s2s_use_starttls: required makes TLS mandatory on every
	// stream and still accepts dialback; the relay uses SASL EXTERNAL only
	// for domains with a cert_file, not with the certificates it mints:
	// dialback over TLS both ways. With XEP-0288 (ejabberd 24.12) one of
	// the directions may ride the other's stream instead: the relay's
	// stanzas on e.corp.test's stream, or e.corp.test's on the relay's,
	// each authenticated once.
	elog := filepath.Join(l.e.dir, "logs", "ejabberd.log")
	rlog := filepath.Join(l.relay.dir, "relay.log")
	for _, d := range []string{"b.test", "c.test"} {
		for _, c := range []struct {
			what string   // in e.corp.test's log
			bidi []string // in the relay's, for the same direction carried by bidi
		}{
			{"Accepted inbound s2s dialback authentication " + d + " -> e.corp.test",
				[]string{`msg="bidirectional stream: the relay sends over it"`, "face=internal", "from=e.corp.test to=" + d + " "}},
			{"Accepted outbound s2s dialback authentication e.corp.test -> " + d,
				[]string{`msg="asked the peer for a bidirectional stream"`, "face=internal", "from=" + d + " to=e.corp.test"}},
		} {
			if len(grepAll(elog, 0, "(tls|", c.what)) > 0 {
				continue
			}
			if l.egen.Bidi && len(grepAll(rlog, 0, c.bidi...)) > 0 {
				t.Logf("e.corp.test's log has no %q: that direction rides the other's bidirectional stream", c.what)
				continue
			}
			t.Errorf("e.corp.test's log: no %q on a TLS stream", c.what)
		}
	}

	t.Run("without-ca", func(t *testing.T) {
		restart := func(noCA bool) {
			t.Helper()
			if err := l.relay.shutdown(); err != nil {
				t.Errorf("shutdown: %v", err)
			}
			l.relay.noCA = noCA
			if err := l.relay.start(nil); err != nil {
				t.Fatal(err)
			}
		}
		restart(true)
		// Whatever happens, later scenarios get the relay with its CA.
		t.Cleanup(func() {
			if l.relay.noCA {
				restart(false)
			}
		})
		from := fileSize(dlog)
		for _, p := range []struct{ from, to *Client }{{erin, bob}, {bob, erin}} {
			body := l.token("insecure, from " + p.from.Name)
			id, err := p.from.Message(bare(p.to.JID), body)
			if err != nil {
				t.Fatal(err)
			}
			i, el := await(t, wait, want{p.from, "error for " + id, isErrorFor(id)},
				want{p.to, "message " + body, isMessage(bare(p.from.JID), body)})
			if i == 1 {
				t.Errorf("%s → %s delivered although the relay has no internal CA: %s", p.from.Name, p.to.Name, el)
				continue
			}
			t.Logf("%s → %s came back: %s", p.from.Name, p.to.Name, el)
		}
		refused := grepFrom(dlog, from, "Forbidding insecure connection")
		if len(refused) == 0 {
			t.Errorf("d.test's log has no \"Forbidding insecure connection\" after the relay lost its CA")
		} else {
			t.Logf("d.test: %s", strings.TrimSpace(refused[0]))
		}

		restart(false)
		t.Log("relay restarted with its internal CA")
		for _, p := range []struct{ from, to *Client }{{erin, bob}, {bob, erin}} {
			l.deliver(t, p.from, p.to, l.token("secure again, from "+p.from.Name))
		}
	})
}
