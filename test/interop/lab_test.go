//go:build interop

package interop_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/test/harness"
)

// lab is the running topology (see doc.go) shared by the scenarios.
type lab struct {
	dir     string
	net     string    // first three octets of the loopback addresses
	pgen    serverGen // the generation of every Prosody
	egen    serverGen // the generation of every ejabberd
	dns     *publicDNS
	relay   *relay
	a, b, d *prosody
	c, e    *ejabberd
	clients *logWriter // c2s transcripts of every client
	// internalCAPEM is the relay's internal CA certificate, which d.test
	// and e.corp.test trust.
	internalCAPEM []byte
	pki           *harness.CA // the public CA of 8-secure-federation

	alice, bob, dave, carol, erin, frank Account

	seq atomic.Int64
}

// ip returns the loopback address ending in last.
func (l *lab) ip(last int) string { return fmt.Sprintf("%s.%d", l.net, last) }

// wait bounds every wait for something a user should see; the first
// stanza between two servers also sets up their streams and dialback.
const wait = 20 * time.Second

// requireOrSkip skips the tests when they cannot run here, or fails them
// when FEDRELAY_INTEROP_REQUIRE=1 (CI) says they must.
func requireOrSkip(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (Prosody runs as the prosody user, the DNS servers on port 53)")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		missing = append(missing, "setpriv")
	}
	for _, g := range append(prosodyGens(), ejabberdGens()...) {
		missing = append(missing, g.missing()...)
	}
	// Without lua-unbound Prosody falls back to a resolver that ignores
	// the per-server resolv.conf the tests give it.
	if m, _ := filepath.Glob("/usr/lib/*/lua/5.*/lunbound.so"); len(m) == 0 {
		missing = append(missing, "lua-unbound (Prosody's resolver)")
	}
	if len(missing) == 0 {
		return
	}
	msg := "interop tests need: " + strings.Join(missing, "; ")
	if os.Getenv("FEDRELAY_INTEROP_REQUIRE") == "1" {
		t.Fatal(msg + " (FEDRELAY_INTEROP_REQUIRE=1: not skipping)")
	}
	t.Skip(msg)
}

// newLab starts the whole topology with Prosody servers of generation pgen
// and ejabberd servers of generation egen; t.Cleanup stops every part of
// it, also when a scenario fails or panics.
func newLab(t *testing.T, pgen, egen serverGen) *lab {
	requireOrSkip(t)
	l := &lab{net: "127.0.77", pgen: pgen, egen: egen}
	if n := os.Getenv("FEDRELAY_INTEROP_NET"); n != "" {
		l.net = n
	}
	if err := checkFree([]string{
		"tcp/" + l.ip(2) + ":5222", "tcp/" + l.ip(2) + ":5269",
		"tcp/" + l.ip(3) + ":5222", "tcp/" + l.ip(3) + ":5269",
		"tcp/" + l.ip(4) + ":5222", "tcp/" + l.ip(4) + ":5269", "tcp/" + l.ip(4) + ":5290",
		"tcp/" + l.ip(5) + ":5222", "tcp/" + l.ip(5) + ":5269",
		"tcp/" + l.ip(6) + ":5222", "tcp/" + l.ip(6) + ":5269", "tcp/" + l.ip(6) + ":5291",
		"tcp/" + l.ip(10) + ":5269", "tcp/" + l.ip(10) + ":5270", "tcp/" + l.ip(11) + ":5269",
		"tcp/" + l.ip(53) + ":53", "udp/" + l.ip(53) + ":53",
		"tcp/" + l.ip(54) + ":53", "udp/" + l.ip(54) + ":53",
	}); err != nil {
		t.Fatal(err)
	}

	var err error
	if l.dir, err = os.MkdirTemp("", "fedrelay-interop-"); err != nil {
		t.Fatal(err)
	}
	os.Chmod(l.dir, 0o755) // the servers run as their own users
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("FEDRELAY_INTEROP_KEEP") == "1" {
			t.Logf("configurations and logs kept in %s", l.dir)
			return
		}
		os.RemoveAll(l.dir)
	})
	t.Logf("run directory %s", l.dir)
	step := func(what string, f func() error) {
		t.Helper()
		t0 := time.Now()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s (%v)", what, time.Since(t0).Round(time.Millisecond))
	}

	f, err := os.Create(filepath.Join(l.dir, "c2s.log"))
	if err != nil {
		t.Fatal(err)
	}
	l.clients = &logWriter{f: f}
	t.Cleanup(func() { f.Close() })

	dnsLog, err := os.Create(filepath.Join(l.dir, "dns.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dnsLog.Close() })
	step("public DNS on "+l.ip(54)+":53", func() error {
		l.dns, err = newPublicDNS(fmt.Sprintf(`
relay.test. 60 IN A %[1]s
_xmpp-server._tcp.a.test. 60 IN SRV 0 5 5269 relay.test.
_xmpp-server._tcp.d.test. 60 IN SRV 0 5 5269 relay.test.
_xmpp-server._tcp.e.corp.test. 60 IN SRV 0 5 5269 relay.test.
b.test. 60 IN A %[2]s
_xmpp-server._tcp.b.test. 60 IN SRV 0 5 5269 b.test.
c.test. 60 IN A %[3]s
_xmpp-server._tcp.c.test. 60 IN SRV 0 5 5269 c.test.
`, l.ip(10), l.ip(3), l.ip(4)), &logWriter{f: dnsLog})
		if err != nil {
			return err
		}
		return l.dns.start(l.ip(54) + ":53")
	})
	t.Cleanup(l.dns.stop)

	// e.corp.test's ejabberd gets its SRV answers from the relay's
	// internal DNS responder, whose target is fedrelay.internal.
	step("/etc/hosts: relay.test and fedrelay.internal for ejabberd", func() error {
		return addHosts(map[string]string{"relay.test": l.ip(10), "fedrelay.internal": l.ip(11)})
	})
	t.Cleanup(func() {
		if err := removeHosts(); err != nil {
			t.Errorf("removing our /etc/hosts lines: %v", err)
		}
	})

	rdir := filepath.Join(l.dir, "relay")
	os.MkdirAll(rdir, 0o755)
	l.relay = &relay{dir: rdir, fed: l.ip(10) + ":5269", intl: l.ip(11) + ":5269", dnsAddr: l.ip(53) + ":53",
		pubDNS: l.ip(54) + ":53", domains: []relayDomain{
			{name: "a.test", route: l.ip(2) + ":5269"},
			{name: "d.test", route: l.ip(5) + ":5269"},
			{name: "e.corp.test", route: l.ip(6) + ":5269"}}}
	// the public CA of 8-secure-federation, and the relay's internal CA
	l.pki = harness.NewCA(t)
	ica := harness.NewCA(t)
	l.relay.caCert, l.relay.caKey, l.internalCAPEM = ica.File(), ica.KeyFile(t), readFile(t, ica.File())
	step("fedrelay (in process)", func() error { return l.relay.start(nil) })
	t.Cleanup(func() {
		if err := l.relay.shutdown(); err != nil {
			t.Errorf("relay shutdown: %v", err)
		}
		if l.relay.logf != nil {
			l.relay.logf.Close()
		}
	})

	l.alice = Account{Addr: l.ip(2) + ":5222", Domain: "a.test", User: "alice", Password: "alice-pw"}
	l.bob = Account{Addr: l.ip(3) + ":5222", Domain: "b.test", User: "bob", Password: "bob-pw"}
	l.dave = Account{Addr: l.ip(3) + ":5222", Domain: "b.test", User: "dave", Password: "dave-pw"}
	l.carol = Account{Addr: l.ip(4) + ":5222", Domain: "c.test", User: "carol", Password: "carol-pw"}
	l.erin = Account{Addr: l.ip(5) + ":5222", Domain: "d.test", User: "erin", Password: "erin-pw"}
	l.frank = Account{Addr: l.ip(6) + ":5222", Domain: "e.corp.test", User: "frank", Password: "frank-pw"}

	step(egen.Name+" c.test configured", func() error {
		l.c, err = newEjabberd(egen, filepath.Join(l.dir, "c.test"), "c.test", l.ip(4), 5290, l.cOpts(t, false))
		return err
	})
	step(egen.Name+" e.corp.test configured (s2s_use_starttls: required, trusting the relay's internal CA)", func() error {
		l.e, err = newEjabberd(egen, filepath.Join(l.dir, "e.corp.test"), "e.corp.test", l.ip(6), 5291,
			ejabberdOpts{resolverIP: l.ip(53), trustCA: l.internalCAPEM, starttlsRequired: true})
		return err
	})
	// ejabberd takes a few seconds to start: let both while Prosody is
	// set up. Their cleanup waits for the starts to finish, so that a
	// failure meanwhile cannot leave one running.
	var ejStarted [2]chan error
	for i, e := range []*ejabberd{l.c, l.e} {
		ejStarted[i] = make(chan error, 1)
		go func() { ejStarted[i] <- e.start() }()
		t.Cleanup(func() {
			err := <-ejStarted[i]
			ejStarted[i] <- err // for the step below, if it did not take it yet
			if err := e.stop(); err != nil {
				t.Errorf("ejabberd: %v", err)
			}
		})
	}
	step(pgen.Name+" a.test configured, alice registered", func() error {
		l.a, err = newProsody(pgen, filepath.Join(l.dir, "a.test"), "a.test", l.ip(2),
			map[string]string{"alice": l.alice.Password}, prosodyOpts{resolverIP: l.ip(53), c2sLimit: largeC2SLimit,
				s2sLimit: largeS2SLimitA})
		return err
	})
	step(pgen.Name+" b.test configured, bob and dave registered", func() error {
		l.b, err = newProsody(pgen, filepath.Join(l.dir, "b.test"), "b.test", l.ip(3),
			map[string]string{"bob": l.bob.Password, "dave": l.dave.Password}, l.bOpts(t, false))
		return err
	})
	step(pgen.Name+" d.test configured (s2s_secure_auth, trusting the relay's internal CA), erin registered", func() error {
		l.d, err = newProsody(pgen, filepath.Join(l.dir, "d.test"), "d.test", l.ip(5),
			map[string]string{"erin": l.erin.Password}, prosodyOpts{resolverIP: l.ip(53), trustCA: l.internalCAPEM})
		return err
	})
	t.Cleanup(func() {
		for _, p := range []*prosody{l.a, l.b, l.d} {
			if p == nil {
				continue
			}
			if err := p.stop(); err != nil {
				t.Errorf("prosody: %v", err)
			}
		}
	})
	step(pgen.Name+" a.test started", l.a.start)
	step(pgen.Name+" b.test started", l.b.start)
	step(pgen.Name+" d.test started", l.d.start)
	started := func(i int) func() error {
		return func() error {
			err := <-ejStarted[i]
			ejStarted[i] <- err // for the cleanup
			return err
		}
	}
	step(egen.Name+" c.test started", started(0))
	step(egen.Name+" e.corp.test started", started(1))
	// ejabberdctl starts an Erlang VM of its own for each command: both at
	// once.
	step("carol registered on c.test, frank on e.corp.test", func() error {
		errc := make(chan error, 1)
		go func() { errc <- l.e.register(l.frank.User, l.frank.Password) }()
		return errors.Join(l.c.register(l.carol.User, l.carol.Password), <-errc)
	})
	return l
}

// bOpts is b.test's configuration: by default self-signed, dialback; with
// secure (8-secure-federation), a certificate of the test's public CA,
// s2s_secure_auth trusting that CA, and a direct TLS port.
func (l *lab) bOpts(t testing.TB, secure bool) prosodyOpts {
	if !secure {
		return prosodyOpts{resolverIP: l.ip(54), c2sLimit: largeC2SLimit, s2sLimit: largeS2SLimitB}
	}
	crt, key := issuePEM(t, l.pki, "b.test")
	return prosodyOpts{resolverIP: l.ip(54), trustCA: readFile(t, l.pki.File()), cert: crt, key: key, directTLS: true,
		c2sLimit: largeC2SLimit, s2sLimit: largeS2SLimitB}
}

// cOpts is c.test's configuration, as bOpts: with secure,
// s2s_use_starttls: required and ca_file the public CA.
func (l *lab) cOpts(t testing.TB, secure bool) ejabberdOpts {
	if !secure {
		return ejabberdOpts{resolverIP: l.ip(54)}
	}
	crt, key := issuePEM(t, l.pki, "c.test")
	return ejabberdOpts{resolverIP: l.ip(54), cert: crt, key: key, trustCA: readFile(t, l.pki.File()), starttlsRequired: true,
		directTLS: true}
}

// logs lists every log file of the run.
func (l *lab) logs() []string {
	out := []string{filepath.Join(l.relay.dir, "relay.log"), l.relay.auditLog(),
		filepath.Join(l.dir, "dns.log"), filepath.Join(l.dir, "c2s.log")}
	out = append(out, l.a.logs()...)
	out = append(out, l.b.logs()...)
	out = append(out, l.d.logs()...)
	out = append(out, l.e.logs()...)
	return append(out, l.c.logs()...)
}

// watchLogs prints, if t fails, the end of what every log got during t.
func (l *lab) watchLogs(t *testing.T) {
	start := map[string]int64{}
	for _, p := range l.logs() {
		if fi, err := os.Stat(p); err == nil {
			start[p] = fi.Size()
		}
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, p := range l.logs() {
			b, err := os.ReadFile(p)
			if err != nil || int64(len(b)) <= start[p] {
				continue
			}
			t.Logf("---- %s (last lines written during %s) ----\n%s", strings.TrimPrefix(p, l.dir+"/"), t.Name(),
				lastLines(b[start[p]:], 40))
		}
	})
}

// token returns a unique message body.
func (l *lab) token(what string) string {
	return fmt.Sprintf("%s #%d (pid %d)", what, l.seq.Add(1), os.Getpid())
}

// login logs acct in with resource res, logged out when t ends.
func (l *lab) login(t *testing.T, acct Account, res string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := Login(ctx, acct.User+"/"+res, acct, res, l.clients)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// want is one stanza a scenario waits for, on one client.
type want struct {
	c     *Client
	what  string
	match func(*Element) bool
}

// await waits for the first of several stanzas, on one or more clients,
// and reports which came (its index) and what it was. Stanzas that match
// none stay in their client's backlog for later waits.
func await(t testing.TB, d time.Duration, wants ...want) (int, *Element) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		for i, w := range wants {
			if el := w.c.take(w.match); el != nil {
				return i, el
			}
		}
		cases := []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(time.After(time.Until(deadline)))}}
		var from []*Client
		for _, w := range wants {
			if !contains(from, w.c) {
				from = append(from, w.c)
				cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(w.c.in)})
			}
		}
		i, v, ok := reflect.Select(cases)
		if i == 0 {
			var whats, seen []string
			for _, w := range wants {
				whats = append(whats, w.c.Name+": "+w.what)
			}
			for _, c := range from {
				for _, el := range c.backlog {
					seen = append(seen, c.Name+" got "+el.String())
				}
			}
			t.Fatalf("none of [%s] within %v; stanzas seen meanwhile:\n\t%s", strings.Join(whats, "; "), d,
				strings.Join(seen, "\n\t"))
		}
		c := from[i-1]
		if !ok {
			t.Fatalf("%s: stream ended: %v", c.Name, c.err)
		}
		c.backlog = append(c.backlog, v.Interface().(*Element))
	}
}

func contains(cs []*Client, c *Client) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

// expect waits for one stanza on one client.
func expect(t testing.TB, c *Client, what string, match func(*Element) bool) *Element {
	t.Helper()
	_, el := await(t, wait, want{c, what, match})
	return el
}
